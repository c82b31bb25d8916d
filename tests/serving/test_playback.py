"""Playback metadata and signed HLS delivery over real HTTP: tier rules, grants, tampering, traversal."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from serving import playback
from serving.security import hls_signing


def play(client: httpx.Client, lake: Any, sub: str, tier: str, **params: str) -> dict:
    media_id = lake.media[0]
    response = client.get(f"/media/{media_id}/playback", params=params, headers=lake.auth(sub, tier))
    assert response.status_code == 200, response.text
    return response.json()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    return parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), **changes})).geturl()


def test_playback_gives_a_signed_master_and_what_goes_around_it(
    client: httpx.Client, sample_lake: Any
) -> None:
    body = play(client, sample_lake, "viewer-premium", "premium")
    media_id = sample_lake.media[0]
    assert body["master_url"].startswith(f"/hls/{media_id}/master.m3u8?")
    assert body["expires_at"] > time.time() + 3000
    assert [(r["rung"], r["codec"]) for r in body["renditions"]] == [
        ("360p", "h264"),
        ("720p", "h264"),
        ("720p", "hevc"),
        ("2160p", "h264"),
    ]
    assert [c["title"] for c in body["chapters"]] == ["Low tide", "High tide"]
    trickplay = body["trickplay"]
    assert trickplay["url"] == f"/images/{media_id}/trickplay/trickplay.vtt" and trickplay["time_s"] == 2.0
    sprite = client.get(trickplay["url"]).text.splitlines()[-1].split("#")[0]
    assert client.get(f"/images/{media_id}/trickplay/{sprite}").content == b"sprites"
    assert client.get(body["poster_url"]).content == f"poster of {media_id}".encode()
    [track] = body["subtitles"]
    assert track["lang"] == "en"
    assert client.get(track["url"]).text.startswith("WEBVTT")


def test_free_tier_and_web_device_filter_the_renditions(client: httpx.Client, sample_lake: Any) -> None:
    free = play(client, sample_lake, "viewer-free", "free")
    assert [r["rung"] for r in free["renditions"]] == ["360p", "720p", "720p"]
    web = play(client, sample_lake, "viewer-web", "premium", device="web")
    assert {r["codec"] for r in web["renditions"]} == {"h264"}  # no HEVC in browsers' MediaSource


def test_playback_errors(client: httpx.Client, sample_lake: Any) -> None:
    headers = sample_lake.auth("viewer-errors")
    assert client.get("/media/0123456789abcdef/playback", headers=headers).status_code == 404
    assert client.get("/media/NOT-AN-ID/playback", headers=headers).status_code == 422
    bad_device = client.get(
        f"/media/{sample_lake.media[0]}/playback", params={"device": "toaster"}, headers=headers
    )
    assert bad_device.status_code == 422
    assert client.get(f"/media/{sample_lake.media[0]}/playback").status_code == 401


def test_master_lists_the_tiers_variants_with_the_grant_on_every_uri(
    client: httpx.Client, sample_lake: Any
) -> None:
    premium = client.get(play(client, sample_lake, "viewer-p2", "premium")["master_url"])
    assert premium.status_code == 200
    assert premium.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert "h264_2160p.m3u8?" in premium.text
    free_master = play(client, sample_lake, "viewer-f2", "free")["master_url"]
    text = client.get(free_master).text
    assert "2160p" not in text and "3840x2160" not in text
    grant = urlsplit(free_master).query
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris == [f"{name}.m3u8?{grant}" for name in ("h264_360p", "h264_720p", "hevc_720p")]
    assert f'URI="audio_aac.m3u8?{grant}"' in text and f'URI="subs_en.m3u8?{grant}"' in text


def test_a_device_master_lists_only_the_variants_the_device_decodes(
    client: httpx.Client, sample_lake: Any
) -> None:
    """The device narrows the tier's variants (browsers' MediaSource has no HEVC); it grants nothing."""
    web_master = play(client, sample_lake, "viewer-dev", "free", device="web")["master_url"]
    assert dict(parse_qsl(urlsplit(web_master).query))["device"] == "web"
    text = client.get(web_master).text
    uris = [line.split("?")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert uris == ["h264_360p.m3u8", "h264_720p.m3u8"]
    assert "device=" not in text  # the variant playlists carry the grant alone
    apple = client.get(play(client, sample_lake, "viewer-dev", "free", device="apple")["master_url"]).text
    assert "hevc_720p.m3u8?" in apple and "2160p" not in apple
    assert client.get(with_query(web_master, device="toaster")).status_code == 422


def test_segments_play_through_the_signed_media_playlist(client: httpx.Client, sample_lake: Any) -> None:
    master_url = play(client, sample_lake, "viewer-seg", "free")["master_url"]
    base = master_url.rsplit("/", 1)[0]
    [variant] = [
        line for line in client.get(master_url).text.splitlines() if line.startswith("h264_720p.m3u8")
    ]
    media = client.get(f"{base}/{variant}")
    assert media.status_code == 200
    init, *segments = [line.split('"')[1] if "URI=" in line else line for line in media.text.splitlines()
                       if "URI=" in line or (line and not line.startswith("#"))]  # fmt: skip
    assert client.get(f"{base}/{init}").content == b"init h264_720p"
    segment = client.get(f"{base}/{segments[0]}")
    assert segment.status_code == 200 and segment.content == b"segment 0 of h264_720p"


def test_a_free_user_cannot_fetch_2160p_even_by_name(client: httpx.Client, sample_lake: Any) -> None:
    master_url = play(client, sample_lake, "viewer-f3", "free")["master_url"]
    base, grant = master_url.rsplit("/", 1)[0], urlsplit(master_url).query
    for name in ("h264_2160p.m3u8", "h264_2160p_init.mp4", "h264_2160p_0000.m4s"):
        response = client.get(f"{base}/{name}?{grant}")
        assert response.status_code == 403, name
    premium = play(client, sample_lake, "viewer-p3", "premium")["master_url"]
    assert client.get(f"{base}/h264_2160p_0000.m4s?{urlsplit(premium).query}").status_code == 200


def test_signed_urls_fail_when_path_expiry_user_or_tier_change(
    client: httpx.Client, sample_lake: Any
) -> None:
    master_url = play(client, sample_lake, "viewer-sig", "free")["master_url"]
    segment = master_url.replace("master.m3u8", "h264_360p_0000.m4s")
    assert client.get(segment).status_code == 200
    fields = dict(parse_qsl(urlsplit(segment).query))
    other_item = segment.replace(sample_lake.media[0], sample_lake.media[1])
    tampered = [
        other_item,
        with_query(segment, exp=str(int(fields["exp"]) + 3600)),
        with_query(segment, uid="someone-else"),
        with_query(segment, tier="premium"),
        with_query(segment, sig=fields["sig"][:-2] + "AA"),
        segment.split("?")[0],
    ]
    for url in tampered:
        assert client.get(url).status_code == 403, url


def test_an_expired_grant_is_refused(client: httpx.Client, sample_lake: Any) -> None:
    secret = hls_signing.hls_secret(sample_lake.settings)
    grant = playback.grant(sample_lake.media[0], "viewer-old", "free", secret, ttl_s=-1)
    response = client.get(f"/hls/{sample_lake.media[0]}/h264_360p_0000.m4s?{grant.query}")
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]


def test_a_bearer_token_must_be_the_signed_users(client: httpx.Client, sample_lake: Any) -> None:
    master_url = play(client, sample_lake, "viewer-own", "free")["master_url"]
    assert client.get(master_url, headers=sample_lake.auth("viewer-own", "free")).status_code == 200
    assert client.get(master_url, headers=sample_lake.auth("viewer-thief", "free")).status_code == 403


@pytest.mark.parametrize(
    "path",
    ["..%2Fsecret.txt", "%2e%2e/secret.txt", "..%2F..%2F..%2Fetc%2Fpasswd", ".hidden", "a%5C..%5Csecret.txt"],
)
def test_path_traversal_is_refused(client: httpx.Client, sample_lake: Any, path: str) -> None:
    master_url = play(client, sample_lake, "viewer-dots", "premium")["master_url"]
    base, grant = master_url.rsplit("/", 1)[0], urlsplit(master_url).query
    # A raw target: httpx would otherwise resolve the dots itself before sending.
    request = client.build_request("GET", "/")
    request.url = request.url.copy_with(raw_path=f"{base}/{path}?{grant}".encode())
    response = client.send(request)
    assert response.status_code in (403, 404), response.text
    assert "outside the package" not in response.text


@pytest.mark.parametrize(
    "path", ["..%2Fsecret.txt", "%2e%2e/hls/master.m3u8", "trickplay/..%2F..%2Fsecret.txt"]
)
def test_image_paths_cannot_leave_the_images_folder(
    client: httpx.Client, sample_lake: Any, path: str
) -> None:
    request = client.build_request("GET", "/")
    request.url = request.url.copy_with(raw_path=f"/images/{sample_lake.media[0]}/{path}".encode())
    response = client.send(request)
    assert response.status_code in (403, 404), response.text
    assert "outside the package" not in response.text and "#EXTM3U" not in response.text


def test_unknown_package_file_is_404(client: httpx.Client, sample_lake: Any) -> None:
    master_url = play(client, sample_lake, "viewer-404", "premium")["master_url"]
    base, grant = master_url.rsplit("/", 1)[0], urlsplit(master_url).query
    assert client.get(f"{base}/h264_360p_9999.m4s?{grant}").status_code == 404
    assert client.get(f"/images/{sample_lake.media[0]}/nothing.jpg").status_code == 404
