"""The beacon simulator's network model: an over-ambitious ladder hurts the constrained devices."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from assets.common import StreamlakeResource
from assets.qoe import playback_beacons
from assets.qoe import qoe_hourly as qoe_hourly_asset
from models.events.ingest import BEACON_SCHEMA, ingest_events, validate_beacon
from models.events.simulator import EPOCH, SimulationConfig, simulate_events, simulate_users
from models.lake.schemas import RENDITIONS
from models.lake.tables import read_table, upsert
from models.qoe.metrics import qoe_hourly
from models.qoe.network import simulate_beacons
from models.settings import get_settings

START = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
# title "sane" starts at 400 kb/s; "greedy" starts at 6 Mb/s, above a typical phone's throughput
LADDERS = pl.DataFrame(
    {
        "media_id": ["sane"] * 4 + ["greedy"] * 3,
        "bitrate": [400_000, 1_000_000, 2_500_000, 5_000_000, 6_000_000, 10_000_000, 16_000_000],
        "width": [426, 640, 1280, 1920, 1280, 1920, 3840],
        "height": [240, 360, 720, 1080, 720, 1080, 2160],
    }
)


def _sessions(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session_id": [f"s{i:05d}" for i in range(n)],
            "user_id": [f"u{i % 50}" for i in range(n)],
            "media_id": ["sane", "greedy"] * (n // 2),
            "device": [("android", "ios", "tv", "web")[(i // 2) % 4] for i in range(n)],
            "tier": "free",
            "started_at": START,
            "watched_s": [60.0 + i % 600 for i in range(n)],
        }
    )


def test_an_over_ambitious_ladder_scores_worse_where_bandwidth_is_short() -> None:
    beacons = simulate_beacons(_sessions(4000), LADDERS, seed=7)
    scores = {
        (media, device): score
        for media, device, score in qoe_hourly(beacons.lazy())
        .collect()
        .select("media_id", "device_class", "qoe_score")
        .iter_rows()
    }
    mobile_gap = scores["sane", "mobile"] - scores["greedy", "mobile"]
    tv_gap = scores["sane", "tv"] - scores["greedy", "tv"]
    assert mobile_gap > 15, scores
    assert mobile_gap > tv_gap + 10, scores


def test_beacons_are_valid_deterministic_and_independent_of_the_other_sessions() -> None:
    sessions = _sessions(400)
    beacons = simulate_beacons(sessions, LADDERS, seed=7)
    assert beacons.schema == BEACON_SCHEMA and beacons["event_id"].is_unique().all()
    assert all(validate_beacon(row, START.replace(year=2027))[0] for row in beacons.head(300).to_dicts())
    assert set(beacons["event_type"]) >= {
        "load_start",
        "first_frame",
        "rendition_switch",
        "rebuffer_end",
        "view_end",
    }
    half = simulate_beacons(sessions.head(100), LADDERS, seed=7)
    assert half.equals(beacons.filter(pl.col("session_id").is_in(sessions.head(100)["session_id"].implode())))
    assert not simulate_beacons(sessions, LADDERS, seed=8).equals(beacons)


def test_assets_write_beacons_once_and_qoe_per_device_class(tmp_path: Path) -> None:
    """playback_beacons then qoe_hourly over a lake holding simulated view events and a ladder."""
    settings = get_settings(data_dir=tmp_path)
    config = SimulationConfig(n_users=40, days=1)
    titles = {"media_id": ["sane", "greedy"], "duration_s": [300.0, 300.0], "tags": [["x"], ["y"]]}
    events = simulate_events(pl.DataFrame(titles), simulate_users(config), config)
    ingest_events(settings, events, EPOCH + timedelta(days=2))
    rungs = LADDERS.with_columns(kind=pl.lit("video"), codec=pl.lit("h264"), rung=pl.format("r{}", "height"))
    missing = [pl.lit(None).alias(f.name) for f in RENDITIONS.schema if f.name not in rungs.columns]
    upsert(settings, "renditions", rungs.with_columns(missing))
    resources = {"streamlake": StreamlakeResource(data_dir=str(tmp_path))}
    for _ in range(2):  # the second run is a replay: nothing new
        assert dg.materialize([playback_beacons, qoe_hourly_asset], resources=resources).success
    beacons = read_table(settings, "playback_beacons")
    assert beacons.height > 0 and beacons["event_id"].is_unique().all()
    qoe = read_table(settings, "qoe_hourly")
    assert set(qoe["device_class"]) <= {"mobile", "desktop", "tv"}
    assert qoe["qoe_score"].is_between(0, 100).all()
