"""Simulator determinism and the Polars aggregates on hand-made events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from models.analysis.asr import Segment
from models.analysis.subtitles import to_webvtt
from models.events.aggregates import hourly_stats
from models.events.simulator import SimulationConfig, simulate_events, simulate_users

CATALOG = pl.DataFrame(
    {
        "media_id": ["a" * 16, "b" * 16, "c" * 16],
        "duration_s": [5.0, 24.0, 4.0],
        "tags": [["x"], ["y"], ["x"]],
    }
)


def test_simulation_is_deterministic_and_ids_are_unique() -> None:
    config = SimulationConfig(n_users=30)
    users = simulate_users(config)
    first, second = simulate_events(CATALOG, users, config), simulate_events(CATALOG, users, config)
    assert first.equals(second)
    assert first["event_id"].n_unique() == first.height
    assert set(first["event_type"].unique()) <= {"play", "heartbeat", "pause", "complete"}
    other = simulate_events(CATALOG, users, SimulationConfig(n_users=30, seed=7))
    assert not other["event_id"].is_in(first["event_id"].implode()).any()


def test_sessions_stay_within_the_title() -> None:
    config = SimulationConfig(n_users=20)
    events = simulate_events(CATALOG, simulate_users(config), config).join(CATALOG, on="media_id")
    assert (events["position_s"] <= events["duration_s"]).all()


def test_hourly_stats_by_hand() -> None:
    t0 = datetime(2026, 11, 1, 10, 15, tzinfo=UTC)
    rows = [
        # session s1: u1 watches m to the end within 10:00
        ("e1", "u1", "m", "s1", "play", 0.0, t0),
        ("e2", "u1", "m", "s1", "complete", 5.0, t0 + timedelta(seconds=5)),
        # session s2: u1 again, stops at 2 s
        ("e3", "u1", "m", "s2", "play", 0.0, t0 + timedelta(minutes=10)),
        ("e4", "u1", "m", "s2", "pause", 2.0, t0 + timedelta(minutes=10, seconds=2)),
        # session s3: u2 in the next hour
        ("e5", "u2", "m", "s3", "play", 0.0, t0 + timedelta(hours=1)),
        ("e6", "u2", "m", "s3", "pause", 1.0, t0 + timedelta(hours=1, seconds=1)),
    ]
    events = pl.DataFrame(
        rows,
        schema=["event_id", "user_id", "media_id", "session_id", "event_type", "position_s", "ts"],
        orient="row",
    )
    stats = hourly_stats(events.lazy()).collect()
    assert stats.select("views", "unique_viewers", "watch_time_s", "completion_rate").rows() == [
        (2, 1, 7.0, 0.5),
        (1, 1, 1.0, 0.0),
    ]
    assert stats["avg_watch_time_s"].to_list() == pytest.approx([3.5, 1.0])


def test_webvtt_cues() -> None:
    vtt = to_webvtt([Segment(0, 0.0, 3.28, "Hello --> world"), Segment(1, 3661.5, 3662.0, "later")])
    assert vtt.splitlines()[:5] == ["WEBVTT", "", "1", "00:00:00.000 --> 00:00:03.280", "Hello -> world"]
    assert "01:01:01.500 --> 01:01:02.000" in vtt


def test_a_grown_catalog_replaces_superseded_sessions_and_keeps_real_events(lake) -> None:
    from models.events.store import record_simulated
    from models.lake.tables import read_table, upsert

    config = SimulationConfig(n_users=40)
    users = simulate_users(config)
    first = simulate_events(CATALOG, users, config)
    record_simulated(lake, first)
    real = first.head(1).with_columns(event_id=pl.lit("player-1"), session_id=pl.lit("player-session"))
    upsert(lake, "view_events", real)
    grown = pl.concat([CATALOG, pl.DataFrame({"media_id": ["d" * 16], "duration_s": [7.0], "tags": [["z"]]})])
    second = simulate_events(grown, users, config)
    kept = set(first["session_id"]) & set(second["session_id"])
    assert len(kept) > 0.5 * first["session_id"].n_unique(), "most sessions survive a new title"
    record_simulated(lake, second)
    table = read_table(lake, "view_events")
    assert (
        table.filter(pl.col("session_id") != "player-session")
        .sort("event_id")
        .equals(second.sort("event_id"))
    )
    assert table.filter(session_id="player-session").height == 1
    again = record_simulated(lake, second)
    assert again.accepted == 0 and again.write.rows_written == 0


def test_empty_catalog_simulates_nothing() -> None:
    config = SimulationConfig(n_users=5)
    assert simulate_events(CATALOG.head(0), simulate_users(config), config).is_empty()
