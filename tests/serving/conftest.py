"""Fixtures for tests that call the real Serve API over HTTP on loopback.

`sample_lake` builds a small published lake (api_catalog, recs_topk and an MLflow champion) and
says what it holds; `api_url` serves whatever lake `serving_settings` points at. A test that
produced its lake with the real pipeline overrides `serving_settings` and reuses `api_url`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import polars as pl
import pytest
import ray
from ray import serve

from models.lake.tables import upsert
from models.recsys.itemknn import ItemKNN
from models.recsys.registry import promote_if_better, train_and_log
from models.settings import Settings, get_settings, ray_runtime_env
from serving.run import start

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

STARTUP_TIMEOUT_S = 60.0

MEDIA = [f"{n:016x}" for n in range(0xA0, 0xA6)]
NOT_IN_CATALOG = "ffffffffffffffff"

# Who watched what (weight). u1..u4 are the champion's users; NOT_IN_CATALOG was watched but
# never published, so any recommendation of it must be dropped by the API.
WATCHED = {
    "u1": {MEDIA[0]: 3.0, MEDIA[1]: 2.0, MEDIA[2]: 1.0, NOT_IN_CATALOG: 1.0},
    "u2": {MEDIA[0]: 2.0, MEDIA[2]: 2.0, MEDIA[3]: 1.0, MEDIA[4]: 1.0},
    "u3": {MEDIA[1]: 1.0, MEDIA[3]: 2.0, MEDIA[4]: 2.0, NOT_IN_CATALOG: 2.0},
    "u4": {MEDIA[0]: 1.0, MEDIA[4]: 1.0, MEDIA[5]: 3.0, MEDIA[2]: 1.0},
}
# The published cold-start list, with an unpublished item that the API must skip.
COLD_START = [MEDIA[0], NOT_IN_CATALOG, MEDIA[4], MEDIA[2]]


def catalog_row(media_id: str, title: str) -> dict:
    return {
        "media_id": media_id,
        "title": title,
        "description": f"about {title}",
        "tags": ["demo"],
        "duration_s": 5.3,
        "width": 1280,
        "height": 720,
        "master_playlist": f"{media_id}/master.m3u8",
        "poster": f"{media_id}/poster.jpg",
        "renditions": [
            {
                "rung": r,
                "codec": "h264",
                "width": w,
                "height": h,
                "bitrate": b,
                "playlist_path": f"{media_id}/{r}/h264/index.m3u8",
            }
            for r, w, h, b in (("360p", 640, 360, 800_000), ("720p", 1280, 720, 2_500_000))
        ],
        "subtitles": [{"lang": "en", "format": "vtt", "path": f"{media_id}/subtitles/en.vtt"}],
        "shot_count": 3,
    }


def interactions() -> pl.DataFrame:
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        [
            {"user_id": user, "media_id": media, "weight": weight, "last_ts": ts}
            for user, items in WATCHED.items()
            for media, weight in items.items()
        ],
        schema={
            "user_id": pl.String,
            "media_id": pl.String,
            "weight": pl.Float64,
            "last_ts": pl.Datetime("us", "UTC"),
        },
    )


@dataclass(frozen=True)
class SampleLake:
    settings: Settings
    media: list[str]
    watched: dict[str, dict[str, float]]
    cold_start: list[str]
    not_in_catalog: str


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> SampleLake:
    """A published lake in a temp data dir: 6 catalog items, a cold-start list, an ItemKNN champion."""
    settings = get_settings(data_dir=tmp_path_factory.mktemp("serving-data"))
    upsert(settings, "api_catalog", [catalog_row(mid, f"Title {i}") for i, mid in enumerate(MEDIA)])
    # The API serves every user the champion knows, so the champion is fitted on all of them; the
    # held-out frame only has to exist for the registry's evaluation.
    train = interactions()
    run = train_and_log(ItemKNN(neighbours=5), train, train.head(4), settings)
    promote_if_better(settings, run.model_version)
    cold = [
        {"user_id": "*", "rank": rank, "media_id": mid, "score": 10.0 - rank, "model_version": "toppop-1"}
        for rank, mid in enumerate(COLD_START, start=1)
    ]
    upsert(settings, "recs_topk", cold)
    return SampleLake(settings, MEDIA, WATCHED, COLD_START, NOT_IN_CATALOG)


@pytest.fixture(scope="session")
def serving_settings(sample_lake: SampleLake) -> Settings:
    return sample_lake.settings


@pytest.fixture(scope="session")
def reload_interval_s() -> float:
    """Short, so a reload test waits little; long enough to keep the pollers quiet."""
    return 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def api_url(serving_settings: Settings, reload_interval_s: float) -> Iterator[str]:
    """Ray (local, 2 CPUs, no dashboard) and Serve on a free loopback port; the app's base URL."""
    settings = serving_settings.model_copy(update={"serve_host": "127.0.0.1", "serve_port": free_port()})
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env=ray_runtime_env())
    try:
        url = start(settings, reload_interval_s)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:  # serve.run returns once replicas are up; the proxy may need a moment more
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API at {url} did not answer /health in {STARTUP_TIMEOUT_S} s")
            time.sleep(0.2)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as http:
        yield http
