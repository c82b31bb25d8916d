"""`make serve` over the lake the real pipeline produced: the API answers from its snapshots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import polars as pl
import pytest

from models.lake.tables import read_table
from models.recsys.registry import champion_version
from models.settings import REPO_ROOT, Settings
from serving.run import free_port
from serving.security import tokens

STARTUP_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def api(pipeline_lake: Settings) -> Iterator[httpx.Client]:
    """`python -m serving.run` (what `make serve` runs) in its own process on a free port."""
    port = free_port()
    env = {
        **os.environ,
        "STREAMLAKE_DATA_DIR": str(pipeline_lake.data_dir),
        "STREAMLAKE_SERVE_PORT": str(port),
    }
    env.pop("RAY_ADDRESS", None)
    log_path = pipeline_lake.data_dir / "serve.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.run"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not come up"
            time.sleep(1)
        yield client
    finally:
        client.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_health_names_the_published_versions(api: httpx.Client, pipeline_lake: Settings) -> None:
    body = api.get("/health").json()
    assert body["model_version"] == champion_version(pipeline_lake)
    assert body["catalog_version"] is not None


def _as(pipeline_lake: Settings, user: str, tier: str = "premium") -> dict[str, str]:
    """The bearer header the server accepts: signed with the key it finds in the same data dir."""
    return {"Authorization": f"Bearer {tokens.issue(user, tier, tokens.api_secret(pipeline_lake))}"}


def test_media_shows_renditions_and_subtitles(api: httpx.Client, pipeline_lake: Settings) -> None:
    items = read_table(pipeline_lake, "media_items")
    speech = items.filter(pl.col("source_uri").str.ends_with("/speech_weather.mp4"))["media_id"][0]
    assert api.get(f"/media/{speech}").status_code == 401, "no token, no data"
    body = api.get(f"/media/{speech}", headers=_as(pipeline_lake, "viewer")).json()
    assert body["title"].startswith("Spoken")
    assert body["renditions"][0]["codec"] == "h264"
    assert (pipeline_lake.packaged / body["master_playlist"]).is_file()
    assert sorted(s["format"] for s in body["subtitles"]) == ["srt", "webvtt"]
    missing = api.get("/media/0123456789abcdef", headers=_as(pipeline_lake, "viewer"))
    assert missing.status_code == 404
    assert missing.json()["detail"] == "unknown media_id '0123456789abcdef'"


def test_recommendations_come_from_the_champion(api: httpx.Client, pipeline_lake: Settings) -> None:
    user = read_table(pipeline_lake, "view_events")["user_id"].sort()[0]
    body = api.get(f"/recommendations/{user}", params={"k": 3}, headers=_as(pipeline_lake, user)).json()
    assert body["source"] == "champion"
    assert body["model_version"] == champion_version(pipeline_lake)
    catalog = set(read_table(pipeline_lake, "api_catalog")["media_id"])
    assert 1 <= len(body["items"]) <= 3 and {i["media_id"] for i in body["items"]} <= catalog
    stranger = api.get("/recommendations/somebody-new", headers=_as(pipeline_lake, "somebody-new")).json()
    assert stranger["source"] == "cold_start" and stranger["items"]
