"""Attacks on the real Serve app over HTTP: forged, expired and misdirected HLS grants, tampered
bearer tokens, path traversal in every path parameter, oversized and hostile request bodies, and
injection attempts in /search. Each must be refused with the right status, or be harmless: never a
5xx, never the bytes of a file outside the package (sentinels are planted beside and above it).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import jwt
import pytest

from models.lake.tables import open_table
from serving import playback
from serving.security import hls_signing, tokens

pytestmark = pytest.mark.faults

SENTINEL = "FAULTS-SENTINEL-7f3a"  # planted above the package root; no response may carry it
LEAKS = (SENTINEL, "outside the package", "root:x:0:0")
USER = "attacker"
TIER = "premium"  # its bucket holds every request of this module
CHUNK = 1 << 20


@dataclass(frozen=True)
class Target:
    """What the attacks aim at: an item, a valid grant and token for USER, the lake behind them."""

    media_id: str
    other_media_id: str
    grant: str  # the query string of a valid signed URL for media_id
    token: str
    lake: Any
    catalog_version: int


Send = Callable[[httpx.Client, Target], httpx.Response]


@dataclass(frozen=True)
class Attack:
    category: str
    name: str
    send: Send
    allowed: frozenset[int]


def raw(method: str, target: Callable[[Target], str], **kwargs: Any) -> Send:
    """A request whose path goes out byte for byte (httpx would resolve dots and re-encode)."""

    def send(client: httpx.Client, t: Target) -> httpx.Response:
        request = client.build_request(method, "/", **kwargs)
        request.url = request.url.copy_with(raw_path=target(t).encode())
        headers = kwargs.get("headers", {"Authorization": f"Bearer {t.token}"})
        request.headers.update(headers)
        return client.send(request, follow_redirects=True)  # a dot-segment redirect is followed

    return send


def with_token(token: Callable[[Target], str]) -> Send:
    """GET /media/{id} with a bearer token built from the good one."""
    return lambda client, t: client.get(f"/media/{t.media_id}", headers={"Authorization": token(t)})


def hls(path: str, query: Callable[[Target], str] = lambda t: t.grant, media: str = "media_id") -> Send:
    return raw("GET", lambda t: f"/hls/{getattr(t, media)}/{path}?{query(t)}")


def _query(**changes: str) -> Callable[[Target], str]:
    return lambda t: urlencode({**dict(parse_qsl(t.grant)), **changes})


def _flip(text: str) -> str:
    return text[:-2] + ("AA" if text[-2:] != "AA" else "BB")


def _segment(token: str, index: int, change: Callable[[dict], dict]) -> str:
    """The token with one JWT part (0 header, 1 claims) decoded, changed and re-encoded, unsigned anew."""
    parts = token.split(".")
    padded = parts[index] + "=" * (-len(parts[index]) % 4)
    decoded = change(json.loads(base64.urlsafe_b64decode(padded)))
    parts[index] = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    return ".".join(parts)


def _signed(t: Target, claims: dict, algorithm: str = "HS256") -> str:
    """A token signed with the API's real key but claims of the attacker's choosing."""
    now = int(time.time())
    secret = tokens.api_secret(t.lake.settings)
    return "Bearer " + jwt.encode({"iat": now, "exp": now + 600, **claims}, secret, algorithm=algorithm)


def _expired_grant(t: Target) -> str:
    return playback.grant(t.media_id, USER, TIER, hls_signing.hls_secret(t.lake.settings), ttl_s=-5).query


REFUSED = frozenset({403})
UNAUTHORIZED = frozenset({401})
NOT_SERVED = frozenset({400, 403, 404, 422})
REJECTED_BODY = frozenset({413, 422})
MALFORMED_BODY = frozenset({400, 422})
HARMLESS = frozenset({200, 422})

SIGNATURES = [
    ("forged signature", hls("master.m3u8", lambda t: _query(sig=_flip(dict(parse_qsl(t.grant))["sig"]))(t))),
    ("no signature", hls("master.m3u8", _query(sig=""))),
    ("expired grant", hls("master.m3u8", _expired_grant)),
    ("expiry pushed forward", hls("master.m3u8", lambda t: _query(exp=str(int(time.time()) + 86_400))(t))),
    ("another user's grant", hls("master.m3u8", _query(uid="somebody-else"))),
    ("tier raised to an unsigned one", hls("master.m3u8", _query(tier="platinum"))),
    ("grant for another item", hls("master.m3u8", media="other_media_id")),
    (
        "grant with a thief's bearer token",
        lambda c, t: c.get(
            f"/hls/{t.media_id}/master.m3u8?{t.grant}",
            headers={"Authorization": _signed(t, {"sub": "thief", "tier": TIER})},
        ),
    ),
    ("oversized grant", hls("master.m3u8", lambda t: t.grant + "&pad=" + "x" * 5000)),
    ("too many query fields", hls("master.m3u8", lambda t: t.grant + "&a=1" * 20)),
]
TOKENS = [
    ("signature flipped", with_token(lambda t: "Bearer " + _flip(t.token))),
    (
        "claims edited, old signature",
        with_token(lambda t: "Bearer " + _segment(t.token, 1, lambda c: c | {"sub": "admin"})),
    ),
    (
        "alg none",
        with_token(
            lambda t: "Bearer " + _segment(t.token, 0, lambda h: h | {"alg": "none"}).rsplit(".", 1)[0] + "."
        ),
    ),
    ("HS512 with the real key", with_token(lambda t: _signed(t, {"sub": USER, "tier": TIER}, "HS512"))),
    ("another key", with_token(lambda t: "Bearer " + tokens.issue(USER, TIER, b"k" * 32))),
    ("expired", with_token(lambda t: "Bearer " + t.lake.token(USER, ttl_s=-30))),
    ("traversal in sub", with_token(lambda t: _signed(t, {"sub": "../../etc/passwd", "tier": TIER}))),
    ("tier missing", with_token(lambda t: _signed(t, {"sub": USER}))),
    ("sub not a string", with_token(lambda t: _signed(t, {"sub": 7, "tier": TIER}))),
    ("truncated", with_token(lambda t: "Bearer " + t.token[: len(t.token) // 2])),
    ("oversized", with_token(lambda t: "Bearer " + "a" * 5000)),
    ("wrong scheme", with_token(lambda t: "Basic " + t.token)),
]
# Each path is tried in every route that takes one; none may leave the package.
TRAVERSALS = [
    "../secret.txt",
    "..%2fsecret.txt",
    "%2e%2e/secret.txt",
    "%2e%2e%2f%2e%2e%2ffaults-sentinel.txt",
    "..%2F..%2F..%2F..%2Ffaults-sentinel.txt",
    "%252e%252e%252fsecret.txt",
    "..%5c..%5csecret.txt",
    "....//....//secret.txt",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "master.m3u8%00.jpg",
    "trickplay/..%2f..%2f..%2fsecret.txt",
    "%c0%ae%c0%ae/secret.txt",
]
ROUTES = {
    "/hls/{id}/{path}": lambda p: lambda t: f"/hls/{t.media_id}/{p}?{t.grant}",
    "/images/{id}/{path}": lambda p: lambda t: f"/images/{t.media_id}/{p}",
    "/media/{id}": lambda p: lambda t: f"/media/{p}",
    "/media/{id}/playback": lambda p: lambda t: f"/media/{p}/playback",
    "/hls/{id}/... (id)": lambda p: lambda t: f"/hls/{p}/master.m3u8?{t.grant}",
    "/static/{name}": lambda p: lambda t: f"/static/{p}",
    "/recommendations/{user_id}": lambda p: lambda t: f"/recommendations/{p}",
}


def _events(t: Target, n: int = 1, **changes: Any) -> dict[str, Any]:
    row = {
        "event_id": "attack-0",
        "user_id": USER,
        "media_id": t.media_id,
        "session_id": "attack",
        "event_type": "play",
        "position_s": 0.0,
        "ts": "2026-01-01T00:00:00Z",
    }
    return {"events": [row | {"event_id": f"attack-{i}"} | changes for i in range(n)]}


def post_events(body: Callable[[Target], bytes], chunked: bool = False) -> Send:
    def send(client: httpx.Client, t: Target) -> httpx.Response:
        content = body(t)
        payload: Any = (
            iter([content[i : i + CHUNK] for i in range(0, len(content), CHUNK)]) if chunked else content
        )
        headers = {"Authorization": f"Bearer {t.token}", "Content-Type": "application/json"}
        return client.post("/events", content=payload, headers=headers, timeout=60)

    return send


def _json(make: Callable[[Target], Any]) -> Callable[[Target], bytes]:
    return lambda t: json.dumps(make(t)).encode()


BODIES = [
    ("1,001 events", post_events(_json(lambda t: _events(t, 1001)))),
    ("an 8 MiB event_id", post_events(_json(lambda t: _events(t, event_id="x" * (8 << 20))))),
    (
        "a 12 MiB field in each of 4 rows",
        post_events(_json(lambda t: _events(t, 4, device="d" * (12 << 20)))),
    ),
    ("16 MiB of whitespace", post_events(lambda t: b" " * (16 << 20) + json.dumps(_events(t)).encode())),
    (
        "8 MiB chunked, no length",
        post_events(lambda t: b" " * (8 << 20) + json.dumps(_events(t)).encode(), chunked=True),
    ),
]
MALFORMED = [
    (
        "nesting 100,000 deep",
        post_events(lambda t: b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"),
    ),
    ("not JSON", post_events(lambda t: b"\xff\xfe{events")),
]


def search(q: str, **params: Any) -> Send:
    return lambda client, t: client.get(
        "/search", params={"q": q, **params}, headers={"Authorization": f"Bearer {t.token}"}
    )


INJECTIONS = [
    ("SQL in q", search("'; DROP TABLE api_catalog; --")),
    ("boolean SQL in q", search("ocean' OR '1'='1")),
    ("Delta predicate in q", search("media_id = 'x' OR 1 = 1")),
    ("regex in q", search(".*(a+)+$[")),
    ("format string in q", search("{0.__class__} %s %n")),
    ("NUL in q", search("ocean\x00; rm -rf /")),
    ("q over the limit", search("a" * 300)),
    ("SQL in genre", search("ocean", genre=["nature' OR '1'='1", "x'); DELETE FROM t; --"])),
    ("regex in genre", search("ocean", genre=[".*"])),
    ("expression in duration", search("ocean", min_duration_s="1; DROP TABLE x")),
    ("NaN duration", search("ocean", min_duration_s="nan")),
    ("infinite duration", search("ocean", max_duration_s="1e309")),
    ("too many genres", search("ocean", genre=[f"g{i}" for i in range(50)])),
]

ATTACKS = (
    [Attack("hls signatures", name, send, REFUSED) for name, send in SIGNATURES]
    + [Attack("bearer tokens", name, send, UNAUTHORIZED) for name, send in TOKENS]
    + [
        Attack("path traversal", f"{route} {path}", raw("GET", make(path)), NOT_SERVED)
        for route, make in ROUTES.items()
        for path in TRAVERSALS
    ]
    + [Attack("oversized bodies", name, send, REJECTED_BODY) for name, send in BODIES]
    + [Attack("malformed bodies", name, send, MALFORMED_BODY) for name, send in MALFORMED]
    + [Attack("search injection", name, send, HARMLESS) for name, send in INJECTIONS]
)


@pytest.fixture(scope="module")
def target(client: httpx.Client, sample_lake: Any) -> Target:
    """A valid grant and token for USER; the sentinel planted in the data dir, above the packages."""
    (sample_lake.settings.packaged.parent / "faults-sentinel.txt").write_text(SENTINEL)
    (sample_lake.settings.packaged / "faults-sentinel.txt").write_text(SENTINEL)
    media_id, other = sample_lake.media[0], sample_lake.media[1]
    token = sample_lake.token(USER, TIER)
    response = client.get(f"/media/{media_id}/playback", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    grant = urlsplit(response.json()["master_url"]).query
    assert client.get(f"/hls/{media_id}/master.m3u8?{grant}").status_code == 200, "the good grant works"
    catalog = open_table(sample_lake.settings, "api_catalog")
    assert catalog is not None
    return Target(media_id, other, grant, token, sample_lake, catalog.version())


@pytest.mark.parametrize("attack", ATTACKS, ids=[f"{a.category}: {a.name}" for a in ATTACKS])
def test_attack_is_refused_or_harmless(
    client: httpx.Client, target: Target, faults: Any, attack: Attack
) -> None:
    response = attack.send(client, target)
    status, text = response.status_code, response.text
    leaked = [marker for marker in LEAKS if marker in text]
    ok = status in attack.allowed and not leaked
    faults.record(attack.category, survived=ok, note=f"{attack.name}: {status} {text[:120]!r}")
    assert not leaked, f"{attack.name}: response carries {leaked}"
    assert status in attack.allowed, (
        f"{attack.name}: {status} {response.headers.get('location')} {text[:300]}"
    )


def test_the_catalog_and_search_still_answer_after_the_attacks(
    client: httpx.Client, target: Target, faults: Any
) -> None:
    """Injection attempts changed nothing: the catalog's version stands, search still finds."""
    catalog = open_table(target.lake.settings, "api_catalog")
    hits = search("ocean waves")(client, target)
    ok = hits.status_code == 200 and hits.json()["items"]
    ok = ok and catalog is not None and catalog.version() == target.catalog_version
    faults.record("search injection", survived=bool(ok), note=f"search after attacks: {hits.status_code}")
    assert ok
