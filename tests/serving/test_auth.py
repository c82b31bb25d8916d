"""Bearer tokens, per-tier rate limits, CORS and metrics over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from serving import run
from serving.security import tokens


@pytest.mark.parametrize("route", ["/media/00000000000000a0", "/search?q=ocean", "/recommendations/u1"])
def test_a_missing_token_is_401(client: httpx.Client, route: str) -> None:
    response = client.get(route)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_forged_expired_and_malformed_tokens_are_401(client: httpx.Client, sample_lake: Any) -> None:
    route = f"/media/{sample_lake.media[0]}"
    forged = tokens.issue("mallory", "premium", b"k" * 32)
    expired = sample_lake.token("late", ttl_s=-10)
    for value in (f"Bearer {forged}", f"Bearer {expired}", "Bearer not.a.token", f"Basic {forged}"):
        response = client.get(route, headers={"Authorization": value})
        assert response.status_code == 401, value
    assert "expired" in client.get(route, headers={"Authorization": f"Bearer {expired}"}).json()["detail"]


def test_a_tier_without_a_rate_is_403(client: httpx.Client, sample_lake: Any) -> None:
    response = client.get(f"/media/{sample_lake.media[0]}", headers=sample_lake.auth("vip", "platinum"))
    assert response.status_code == 403


def test_past_the_free_bucket_is_429_with_retry_after(client: httpx.Client, sample_lake: Any) -> None:
    headers = sample_lake.auth("bursty", "free")
    statuses = [client.get(f"/media/{sample_lake.media[0]}", headers=headers).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    refused = client.get(f"/media/{sample_lake.media[0]}", headers=headers)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 6  # 10 a minute: a token every 6 s
    other = client.get(f"/media/{sample_lake.media[0]}", headers=sample_lake.auth("calm", "free"))
    assert other.status_code == 200  # buckets are per user
    metrics = client.get("/metrics").text
    assert 'streamlake_rate_limited_total{tier="free"}' in metrics


def test_cors_lets_the_player_page_call_with_a_token(client: httpx.Client) -> None:
    preflight = client.options(
        "/search",
        headers={
            "Origin": "http://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


def test_metrics_has_latency_per_route_and_the_model_version(
    client: httpx.Client, sample_lake: Any, serving_settings: Any
) -> None:
    client.get(f"/media/{sample_lake.media[0]}", headers=sample_lake.auth("metered"))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'streamlake_request_seconds_count{method="GET",route="/media/{media_id}",status="200"}' in text
    version = client.get("/health").json()["model_version"]
    assert f'streamlake_model_info{{version="{version}"}} 1.0' in text


def test_the_runner_prints_a_token_the_api_accepts(
    client: httpx.Client,
    sample_lake: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STREAMLAKE_DATA_DIR", str(sample_lake.settings.data_dir))
    run.main(["--token", "by-hand", "free"])
    token = capsys.readouterr().out.strip()
    response = client.get(f"/media/{sample_lake.media[0]}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
