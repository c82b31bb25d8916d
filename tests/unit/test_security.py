"""The API's security building blocks: bearer tokens, signed HLS URLs, path safety, the Cedar tier
policy and per-tier token buckets."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import m3u8
import pytest

from models.settings import Settings, get_settings
from serving.security import MissingSecret, load_secret, tokens
from serving.security import hls_signing as hls
from serving.security.policy import allowed_renditions
from serving.security.rate_limit import Rate, RateLimiter, rate_limiter

SECRET = b"k" * 32
OTHER_SECRET = b"o" * 32
MEDIA, OTHER_MEDIA = "0123456789abcdef", "fedcba9876543210"
NOW = 1_800_000_000.0


# --- keys ---------------------------------------------------------------------------------------


def test_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, lake: Settings) -> None:
    monkeypatch.setenv("STREAMLAKE_API_SECRET", "s" * 40)
    assert load_secret("STREAMLAKE_API_SECRET", lake) == b"s" * 40
    monkeypatch.setenv("STREAMLAKE_API_SECRET", "short")
    with pytest.raises(MissingSecret, match="at least 32 bytes"):
        load_secret("STREAMLAKE_API_SECRET", lake)


def test_outside_the_local_profile_a_missing_secret_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STREAMLAKE_HLS_SECRET", raising=False)
    with pytest.raises(MissingSecret, match="STREAMLAKE_HLS_SECRET"):
        hls.hls_secret(get_settings(profile="cluster", data_dir=tmp_path))
    assert not any(tmp_path.iterdir())


def test_the_local_profile_keeps_a_private_random_secret_per_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STREAMLAKE_API_SECRET", raising=False)
    first, second = (get_settings(data_dir=tmp_path / name) for name in ("a", "b"))
    key = tokens.api_secret(first)
    assert len(key) >= 32 and tokens.api_secret(first) == key  # kept, not remade
    assert tokens.api_secret(second) != key
    path = tmp_path / "a" / "secrets" / "streamlake_api_secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == [path.name]  # no scratch file left behind
    path.chmod(0o644)
    with pytest.raises(MissingSecret, match="readable by other users"):
        tokens.api_secret(first)
    path.chmod(0o600)
    path.write_text("\n")
    with pytest.raises(MissingSecret, match="no usable key"):
        tokens.api_secret(first)


# --- bearer tokens ------------------------------------------------------------------------------


def test_tokens_round_trip() -> None:
    issued = int(time.time())
    claims = tokens.verify(tokens.issue("u-1", "premium", SECRET, ttl_s=600, now=issued), SECRET)
    assert claims == tokens.Claims(sub="u-1", tier="premium", issued_at=issued, expires_at=issued + 600)


def test_an_expired_token_is_rejected() -> None:
    token = tokens.issue("u1", "free", SECRET, ttl_s=60, now=time.time() - 120)
    with pytest.raises(tokens.TokenExpired):
        tokens.verify(token, SECRET)


def _with_claims(token: str, **changes: object) -> str:
    """The token with its payload edited and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited = base64.urlsafe_b64encode(json.dumps({**claims, **changes}).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{signature}"


def test_a_tampered_or_foreign_token_is_rejected() -> None:
    token = tokens.issue("u1", "free", SECRET)
    with pytest.raises(tokens.TokenTampered):
        tokens.verify(_with_claims(token, tier="premium"), SECRET)
    with pytest.raises(tokens.TokenTampered):
        tokens.verify(_with_claims(token, exp=int(time.time()) + 10**6), SECRET)
    with pytest.raises(tokens.TokenTampered):
        tokens.verify(token, OTHER_SECRET)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        "a.b.c",
        "x" * 10_000,
        jwt.encode({"sub": "u1", "tier": "premium", "iat": 1, "exp": 2**40}, SECRET * 2, algorithm="HS512"),
        jwt.encode({"sub": "u1", "tier": "premium", "iat": 1, "exp": 2**40}, None, algorithm="none"),
        jwt.encode({"sub": "u1", "iat": 1, "exp": 2**40}, SECRET, algorithm="HS256"),  # no tier
        jwt.encode({"sub": "u 1/..", "tier": "free", "iat": 1, "exp": 2**40}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "u1", "tier": ["premium"], "iat": 1, "exp": 2**40}, SECRET, algorithm="HS256"),
    ],
)
def test_malformed_tokens_are_rejected(token: str) -> None:
    with pytest.raises(tokens.TokenMalformed):
        tokens.verify(token, SECRET)


def test_bearer_header_parsing() -> None:
    assert tokens.bearer("Bearer abc.def.ghi") == "abc.def.ghi"
    assert tokens.bearer("bearer  abc ") == "abc"
    for header in (None, "", "Basic dTpw", "Bearer", "Bearer   "):
        with pytest.raises(tokens.TokenMalformed):
            tokens.bearer(header)


# --- signed HLS URLs ----------------------------------------------------------------------------


def test_a_signed_url_grants_its_user_the_whole_package_until_expiry() -> None:
    token = hls.sign(MEDIA, "u1", ttl_s=300, secret=SECRET, now=NOW)
    for path in ("master.m3u8", "720p.m3u8", "720p_0001.m4s", "subs/en.vtt"):
        hls.verify(f"/hls/{MEDIA}/{path}", token, "u1", SECRET, now=NOW + 299)


@pytest.mark.parametrize(
    ("path", "user", "secret", "now", "error"),
    [
        (f"/hls/{MEDIA}/a.m4s", "u1", SECRET, NOW + 300, hls.Expired),
        (f"/hls/{MEDIA}/a.m4s", "u2", SECRET, NOW, hls.WrongUser),
        (f"/hls/{MEDIA}/a.m4s", "u1", OTHER_SECRET, NOW, hls.Forged),
        (f"/hls/{OTHER_MEDIA}/a.m4s", "u1", SECRET, NOW, hls.Forged),  # signed for another item
        (f"/hls/{MEDIA}/../{OTHER_MEDIA}/a.m4s", "u1", SECRET, NOW, hls.BadPath),
        (f"/media/{MEDIA}/a.m4s", "u1", SECRET, NOW, hls.BadPath),
        (f"/hls/{MEDIA}/", "u1", SECRET, NOW, hls.BadPath),
    ],
)
def test_signed_urls_fail_off_their_path_user_key_or_time(
    path: str, user: str, secret: bytes, now: float, error: type[Exception]
) -> None:
    token = hls.sign(MEDIA, "u1", ttl_s=300, secret=SECRET, now=NOW)
    with pytest.raises(error):
        hls.verify(path, token, user, secret, now=now)


def test_forged_signature_fields_are_rejected() -> None:
    token = parse_qs(hls.sign(MEDIA, "u1", ttl_s=300, secret=SECRET, now=NOW))
    exp, sig = token["exp"][0], token["sig"][0]
    path = f"/hls/{MEDIA}/a.m4s"
    forged = [
        f"exp={int(exp) + 3600}&uid=u1&sig={sig}",  # extended expiry
        f"exp={exp}&uid=u1&sig={sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",
        f"exp={exp}&uid=u1",
        f"exp=-1&uid=u1&sig={sig}",
        f"exp=١٢٣&uid=u1&sig={sig}",  # Arabic-Indic digits: int() would take them
        f"exp={exp}&uid=u1&sig=é{sig}",
        "&".join(["a=b"] * 20),
        "x" * 10_000,
    ]
    for token_text in forged:
        with pytest.raises(hls.Forged):
            hls.verify(path, token_text, "u1", SECRET, now=NOW)


MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Main",LANGUAGE="und",DEFAULT=YES,AUTOSELECT=YES,URI="audio.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",URI="subs_en.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=1205600,RESOLUTION=640x360,CODECS="avc1.640015,mp4a.40.2",AUDIO="aud",SUBTITLES="subs"
360p.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=9000000,RESOLUTION=3840x2160,CODECS="av01.0.12M.08,mp4a.40.2",AUDIO="aud"
2160p_av1.m3u8?v=2
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="360p_iframes.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=500000
https://cdn.example.com/elsewhere.m3u8
"""
MEDIA_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="360p_init.mp4"
#EXTINF:2.000000,
360p_0000.m4s
#EXTINF:2.000000,
  360p_0001.m4s
#EXT-X-MAP:URI="360p_init2.mp4",BYTERANGE="720@0"
#EXTINF:0.200000,
360p_0002.m4s
#EXT-X-ENDLIST
"""


def _grants(uri: str, token: str) -> bool:
    query = parse_qs(urlsplit(uri).query)
    return all(query.get(key) == value for key, value in parse_qs(token).items())


def test_rewritten_playlists_carry_the_token_on_every_uri() -> None:
    token = hls.sign(MEDIA, "u1", ttl_s=300, secret=SECRET, now=NOW)
    master = m3u8.loads(hls.rewrite_playlist(MASTER, token))
    ours = [p.uri for p in master.playlists if not p.uri.startswith("https:")]
    uris = ours + [m.uri for m in master.media] + [p.uri for p in master.iframe_playlists]
    assert len(uris) == 5 and all(_grants(uri, token) for uri in uris)
    assert "2160p_av1.m3u8?v=2&exp=" in master.playlists[1].uri  # an existing query is kept
    assert master.playlists[2].uri == "https://cdn.example.com/elsewhere.m3u8"  # never leaked elsewhere

    media = m3u8.loads(hls.rewrite_playlist(MEDIA_PLAYLIST, token))
    uris = [s.uri for s in media.segments] + [s.init_section.uri for s in media.segments]
    assert len(media.segments) == 3 and all(_grants(uri, token) for uri in uris)
    assert media.segments[2].init_section.byterange == "720@0"
    for uri in uris:  # and the server accepts each URI the player will ask for
        path, query = uri.split("?")
        hls.verify(f"/hls/{MEDIA}/{path}", query, "u1", SECRET, now=NOW)


@pytest.mark.parametrize(
    "relative",
    [
        "..",
        "../x",
        "a/../../b",
        "%2e%2e/x",
        "%2E%2E%2Fetc%2Fpasswd",
        "..%2fx",
        "%252e%252e/x",
        "/etc/passwd",
        "a\\..\\b",
        "..\\x",
        "C:\\x",
        "",
        "a//b",
        "./a",
        "a/./b",
        ".hidden",
        "x\x00y",
        "..\u2215x",  # a Unicode division slash
        "/".join(["a"] * 20),
        "a" * 500,
    ],
)
def test_traversal_attempts_are_rejected(tmp_path: Path, relative: str) -> None:
    with pytest.raises(hls.BadPath):
        hls.safe_media_path(tmp_path, MEDIA, relative)


@pytest.mark.parametrize("media_id", ["..", "../../etc", "0123456789ABCDEF", "0123456789abcde", ""])
def test_media_ids_must_be_ours(tmp_path: Path, media_id: str) -> None:
    with pytest.raises(hls.BadPath):
        hls.safe_media_path(tmp_path, media_id, "master.m3u8")


def test_safe_paths_resolve_inside_the_package_and_not_through_symlinks(tmp_path: Path) -> None:
    package = tmp_path / MEDIA / "hls"
    package.mkdir(parents=True)
    assert (
        hls.safe_media_path(tmp_path, MEDIA, "720p/seg_0001.m4s") == package.resolve() / "720p/seg_0001.m4s"
    )
    (package / "escape").symlink_to(tmp_path.parent)
    with pytest.raises(hls.BadPath, match="outside"):
        hls.safe_media_path(tmp_path, MEDIA, "escape/secret.txt")


# --- tier policy --------------------------------------------------------------------------------

LADDER = [
    {"rung": "audio", "height": None},
    {"rung": "360p", "height": 360},
    {"rung": "1080p", "height": 1080},
    {"rung": "2160p", "height": 2160},
    {"rung": "4320p", "height": 4320},
]


def rungs(renditions: list[dict]) -> list[str]:
    return [r["rung"] for r in renditions]


def test_free_cannot_play_2160p_and_up() -> None:
    assert rungs(allowed_renditions("free", LADDER)) == ["audio", "360p", "1080p"]


def test_premium_plays_everything() -> None:
    assert allowed_renditions("premium", LADDER) == LADDER


@pytest.mark.parametrize("tier", ["", "gold", "Premium", 'premium"; permit(principal, action, resource);'])
def test_unknown_tiers_get_nothing(tier: str) -> None:
    assert allowed_renditions(tier, LADDER) == []


def test_no_renditions_asks_nothing() -> None:
    assert allowed_renditions("premium", []) == []


# --- rate limits --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_exactly_the_limit_passes_then_429_with_the_right_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    decisions = [limiter.check("u1", "free") for _ in range(11)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False]
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    refused = decisions[-1]
    assert (refused.retry_after_s, refused.remaining, refused.retry_after_header) == (6.0, 0, "6")
    clock.now = 5.5
    assert limiter.check("u1", "free").retry_after_s == 0.5
    clock.now = 6.0
    assert limiter.check("u1", "free").allowed
    assert limiter.check("u1", "free").retry_after_s == 6.0
    assert limiter.check("u2", "free").allowed  # buckets are per user


def test_premium_gets_its_own_rate() -> None:
    limiter = RateLimiter(clock=FakeClock())
    allowed = sum(limiter.check("p1", "premium").allowed for _ in range(1001))
    assert allowed == 1000
    assert limiter.check("p1", "premium").retry_after_s == pytest.approx(0.06)


def test_no_drift_over_many_refills() -> None:
    """A request every 0.3 s for ten minutes: the burst, then exactly one per 6 s, on the dot.

    Float arithmetic gets this wrong within a minute (0.3 s steps of 1/6 token/s do not add up to
    whole tokens in binary floating point: the refill at t = 54 s comes one tick late).
    """
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    allowed_at = []
    for tick in range(2_001):
        clock.now = tick * 3 / 10
        if limiter.check("u1", "free").allowed:
            allowed_at.append(tick)
    assert allowed_at == list(range(10)) + list(range(20, 2_001, 20))


def test_an_idle_bucket_refills_to_the_limit_only() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"free": Rate(3, window_s=1.0)}, clock=clock)
    assert [limiter.check("u1", "free").allowed for _ in range(4)] == [True, True, True, False]
    clock.now = 1000.0
    assert [limiter.check("u1", "free").allowed for _ in range(4)] == [True, True, True, False]


def test_unknown_tier_and_bad_rates_are_errors() -> None:
    with pytest.raises(KeyError):
        RateLimiter().check("u1", "gold")
    with pytest.raises(ValueError):
        Rate(0)


def test_buckets_stay_in_the_replica_unless_a_redis_is_named() -> None:
    """The shared (Redis) limiter is tested against a real redis-server in tests/cluster."""
    assert isinstance(rate_limiter(None), RateLimiter)
    with pytest.raises(ValueError, match="not a Redis connection string"):
        rate_limiter("no-port-here")


def test_concurrent_checks_never_overspend() -> None:
    limiter = RateLimiter({"free": Rate(500)}, clock=FakeClock())
    allowed = []

    def worker() -> None:
        allowed.append(sum(limiter.check("u1", "free").allowed for _ in range(200)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 500


def test_full_buckets_are_swept_out_past_the_key_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"free": Rate(2, window_s=1.0)}, clock=clock, max_keys=3)
    for user in ("a", "b", "c"):
        limiter.check(user, "free")
    clock.now = 1.0  # a, b, c are full again: dropping them changes no decision
    limiter.check("d", "free")
    assert len(limiter) == 1
    assert limiter.check("a", "free").remaining == 1  # a fresh full bucket, as before the sweep
