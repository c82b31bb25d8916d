"""Fixtures for tests that call the real Serve API over HTTP on loopback.

`sample_lake` builds a small published lake (api_catalog with HLS packages on disk, recs_topk, an
MLflow champion, search and similarity sources, chapters, trickplay) and says what it holds, and
issues bearer tokens for it; `api_url` serves whatever lake `serving_settings` points at. A test that
produced its lake with the real pipeline overrides `serving_settings` and reuses `api_url`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
import pytest
import ray
from ray import serve

from models.analysis.text_embeddings import BUNDLED_MODEL_NAME, embed_texts
from models.lake.schemas import ALL_TABLES
from models.lake.tables import upsert
from models.recsys.itemknn import ItemKNN
from models.recsys.registry import promote_if_better, train_and_log
from models.settings import Settings, get_settings
from serving.run import free_port, init_ray, start
from serving.security import tokens
from serving.tracing import CONSOLE_FILE_ENV, EXPORTER_ENV

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

STARTUP_TIMEOUT_S = 60.0

MEDIA = [f"{n:016x}" for n in range(0xA0, 0xA6)]
NOT_IN_CATALOG = "ffffffffffffffff"
# (title, description, genres, duration_s) per item: distinct topics, so search and content
# similarity have a right answer.
ITEMS = [
    ("Ocean Waves", "surf and waves crashing on a sandy beach", ["nature", "documentary"], 120.0),
    ("Mountain Bike Race", "riders race bicycles down a steep mountain trail", ["sports"], 300.0),
    ("Cooking Pasta", "a chef cooks fresh pasta with tomato sauce in a kitchen", ["food"], 600.0),
    ("City at Night", "neon lights and traffic in a big city after dark", ["documentary"], 90.0),
    ("Deep Sea Creatures", "fish and strange animals living on the ocean floor", ["nature"], 1800.0),
    ("Jazz Concert", "a live jazz band plays saxophone and piano on stage", ["music"], 2400.0),
]
TITLES = {mid: item[0] for mid, item in zip(MEDIA, ITEMS, strict=True)}
# The ladder every item has: (rung, codec, width, height, bitrate); 2160p is premium-only.
LADDER = [
    ("360p", "h264", 640, 360, 800_000),
    ("720p", "h264", 1280, 720, 2_500_000),
    ("720p", "hevc", 1280, 720, 1_600_000),
    ("2160p", "h264", 3840, 2160, 16_000_000),
]
SEGMENTS = 2
# co_watch edges (media_a < media_b, weight)
CO_WATCH = [(MEDIA[0], MEDIA[4], 3.0), (MEDIA[0], MEDIA[1], 1.0), (MEDIA[2], MEDIA[5], 2.0)]
CHAPTERS = [(0, 0.0, 60.0, "Low tide"), (1, 60.0, 120.0, "High tide")]

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


def rendition_name(codec: str, rung: str) -> str:
    return f"{codec}_{rung}"


def catalog_row(media_id: str, title: str, description: str, duration_s: float) -> dict:
    return {
        "media_id": media_id,
        "title": title,
        "description": description,
        "tags": ["demo"],
        "duration_s": duration_s,
        "width": 3840,
        "height": 2160,
        "master_playlist": f"{media_id}/hls/master.m3u8",
        "poster": f"{media_id}/images/poster.jpg",
        "renditions": [
            {
                "rung": rung,
                "codec": codec,
                "width": w,
                "height": h,
                "bitrate": b,
                "playlist_path": f"{media_id}/hls/{rendition_name(codec, rung)}.m3u8",
            }
            for rung, codec, w, h, b in LADDER
        ],
        "subtitles": [{"lang": "en", "format": "webvtt", "path": f"{media_id}/subtitles/en.vtt"}],
        "shot_count": 3,
    }


def media_playlist(name: str) -> str:
    segments = "".join(f"#EXTINF:4.000,\n{name}_{i:04d}.m4s\n" for i in range(SEGMENTS))
    return (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        f'#EXT-X-MAP:URI="{name}_init.mp4"\n{segments}#EXT-X-ENDLIST\n'
    )


def write_package(packaged: Path, media_id: str) -> None:
    """An HLS package as models/media/hls.py lays it out, with placeholder media bytes."""
    folder = packaged / media_id / "hls"
    folder.mkdir(parents=True)
    master = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Main",DEFAULT=YES,URI="audio_aac.m3u8"',
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",URI="subs_en.m3u8"',
    ]
    for rung, codec, w, h, b in LADDER:
        name = rendition_name(codec, rung)
        master += [f'#EXT-X-STREAM-INF:BANDWIDTH={b},RESOLUTION={w}x{h},AUDIO="aud"', f"{name}.m3u8"]
    (folder / "master.m3u8").write_text("\n".join(master) + "\n")
    for name in [rendition_name(codec, rung) for rung, codec, *_ in LADDER] + ["audio_aac"]:
        (folder / f"{name}.m3u8").write_text(media_playlist(name))
        (folder / f"{name}_init.mp4").write_bytes(f"init {name}".encode())
        for i in range(SEGMENTS):
            (folder / f"{name}_{i:04d}.m4s").write_bytes(f"segment {i} of {name}".encode())
    (folder / "subs_en.m3u8").write_text("#EXTM3U\n#EXTINF:120.000,\nsubs_en.vtt\n#EXT-X-ENDLIST\n")
    (folder / "subs_en.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:02.000\nhello\n")
    (packaged / media_id / "secret.txt").write_text("outside the package")
    images = packaged / media_id / "images"
    (images / "trickplay").mkdir(parents=True)
    (images / "poster.jpg").write_bytes(b"poster of " + media_id.encode())
    (images / "trickplay" / "sprite_000.jpg").write_bytes(b"sprites")
    (images / "trickplay" / "trickplay.vtt").write_text(
        "WEBVTT\n\n00:00.000 --> 00:02.000\nsprite_000.jpg#xywh=0,0,160,90\n"
    )


def put(settings: Settings, name: str, rows: list[dict]) -> None:
    """Upsert rows that name only some of the table's columns; the rest are null."""
    columns = ALL_TABLES[name].schema.names
    upsert(settings, name, [{column: row.get(column) for column in columns} for row in rows])


def lake_tables(settings: Settings) -> None:
    """Everything besides the catalog that the API reads: search sources, similarity, playback extras."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    items = [
        {"media_id": mid, "title": t, "description": d, "tags": ["demo"], "duration_s": s, "status": "ready"}
        for mid, (t, d, _, s) in zip(MEDIA, ITEMS, strict=True)
    ]
    put(settings, "media_items", items)
    content = [
        {"media_id": mid, "genres": g, "duration_s": s, "available_at": now}
        for mid, (_, _, g, s) in zip(MEDIA, ITEMS, strict=True)
    ]
    put(settings, "media_content", content)
    texts = [f"{t}. {d}" for t, d, _, _ in ITEMS]
    vectors = embed_texts(texts)
    embeddings = [
        {"media_id": mid, "model": BUNDLED_MODEL_NAME, "text": text, "embedding": vector.tolist()}
        for mid, text, vector in zip(MEDIA, texts, vectors, strict=True)
    ]
    put(settings, "text_embeddings", embeddings)
    put(
        settings,
        "co_watch",
        [{"media_a": a, "media_b": b, "viewers": 1, "weight": w} for a, b, w in CO_WATCH],
    )
    put(
        settings,
        "chapters",
        [
            {"media_id": MEDIA[0], "chapter_idx": i, "start_s": s, "end_s": e, "title": t}
            for i, s, e, t in CHAPTERS
        ],
    )
    trickplay = {"kind": "trickplay", "path": f"{MEDIA[0]}/images/trickplay/trickplay.vtt", "width": 160}
    put(settings, "thumbnails", [{"media_id": MEDIA[0], **trickplay, "height": 90, "time_s": 2.0}])


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
    titles: dict[str, str]

    def token(self, sub: str, tier: str = "premium", ttl_s: int = 3600) -> str:
        return tokens.issue(sub, tier, tokens.api_secret(self.settings), ttl_s=ttl_s)

    def auth(self, sub: str = "tester", tier: str = "premium") -> dict[str, str]:
        """Headers of a caller: a fresh sub per test keeps rate-limit buckets apart."""
        return {"Authorization": f"Bearer {self.token(sub, tier)}"}


def build_sample_lake(data_dir: Path) -> SampleLake:
    """A published lake in data_dir: 6 catalog items with HLS packages, a cold-start list, an ItemKNN
    champion, search sources, embeddings, co-watch edges, chapters and a trickplay map (also what
    bench/bench_serving.py serves)."""
    settings = get_settings(data_dir=data_dir)
    rows = [catalog_row(mid, t, d, s) for mid, (t, d, _, s) in zip(MEDIA, ITEMS, strict=True)]
    upsert(settings, "api_catalog", rows)
    for mid in MEDIA:
        write_package(settings.packaged, mid)
    lake_tables(settings)
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
    return SampleLake(settings, MEDIA, WATCHED, COLD_START, NOT_IN_CATALOG, TITLES)


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> SampleLake:
    return build_sample_lake(tmp_path_factory.mktemp("serving-data"))


@pytest.fixture(scope="session")
def serving_settings(sample_lake: SampleLake) -> Settings:
    return sample_lake.settings


@pytest.fixture(scope="session")
def reload_interval_s() -> float:
    """Short, so a reload test waits little; long enough to keep the pollers quiet."""
    return 1.0


@pytest.fixture(scope="session")
def spans_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the served app's replicas append their spans (the console exporter, one JSON line each)."""
    return tmp_path_factory.mktemp("spans") / "spans.jsonl"


@pytest.fixture(scope="session")
def api_url(serving_settings: Settings, reload_interval_s: float, spans_file: Path) -> Iterator[str]:
    """Ray (local, 2 CPUs, no dashboard) and Serve on a free loopback port; the app's base URL.

    Tracing is on, to spans_file: Ray's workers inherit the environment it is started with.
    """
    os.environ.update({EXPORTER_ENV: "console", CONSOLE_FILE_ENV: str(spans_file)})
    settings = serving_settings.model_copy(update={"serve_host": "127.0.0.1", "serve_port": free_port()})
    init_ray(settings, num_cpus=2)
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
