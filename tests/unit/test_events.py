"""Simulator determinism and the Polars aggregates on hand-made events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import chi2_contingency

from models.analysis.asr import Segment
from models.analysis.subtitles import to_webvtt
from models.events.aggregates import hourly_stats
from models.events.ingest import EVENT_TYPES
from models.events.simulator import (
    SimulationConfig,
    genres_from_labels,
    iter_events,
    simulate_events,
    simulate_users,
)

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
    assert set(first["event_type"].unique()) <= set(EVENT_TYPES)
    other = simulate_events(CATALOG, users, SimulationConfig(n_users=30, seed=7))
    assert not other["event_id"].is_in(first["event_id"].implode()).any()


def test_sessions_stay_within_the_title() -> None:
    config = SimulationConfig(n_users=20)
    events = simulate_events(CATALOG, simulate_users(config), config).join(CATALOG, on="media_id")
    assert (events["position_s"] <= events["duration_s"]).all()


def _genre_catalog(n: int = 60) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "media_id": [f"m{i:03d}" for i in range(n)],
            "duration_s": [30.0 + i for i in range(n)],
            "tags": [[f"g{i % 4}"] for i in range(n)],
        }
    )


def test_chunks_concatenate_to_the_whole_simulation() -> None:
    config = SimulationConfig(n_users=23)
    users = simulate_users(config)
    whole = simulate_events(_genre_catalog(), users, config)
    chunked = pl.concat(list(iter_events(_genre_catalog(), users, config, chunk_users=5)))
    assert whole.equals(chunked)


def test_popularity_is_skewed_and_taste_follows_genres() -> None:
    catalog = _genre_catalog()
    users = simulate_users(SimulationConfig(n_users=300))

    def sessions(taste: float) -> pl.DataFrame:
        config = SimulationConfig(n_users=300, sessions_per_user=20, taste_weight=taste)
        return simulate_events(catalog, users, config).unique("session_id").join(catalog, on="media_id")

    plays = sessions(0.0)["media_id"].value_counts()["count"].sort(descending=True)
    assert plays[0] > 5 * plays.median(), "Zipf: the top title far above the median title"

    def dependence(frame: pl.DataFrame) -> float:
        """Chi-square per degree of freedom of the viewer x genre table: about 1 if independent."""
        table = frame.explode("tags").pivot(
            "tags", index="user_id", values="media_id", aggregate_function="len"
        )
        counts = table.drop("user_id").fill_null(0).to_numpy()
        return float(
            chi2_contingency(counts[counts.sum(axis=1) > 0])[0] / np.prod(np.array(counts.shape) - 1)
        )

    assert dependence(sessions(0.0)) < 1.5 < 3.0 < dependence(sessions(2.0))


def test_seeks_move_the_position_not_the_clock() -> None:
    config = SimulationConfig(n_users=40, seek_rate=0.5)
    events = simulate_events(_genre_catalog(), simulate_users(config), config).sort("session_id", "ts")
    seeking = events.filter(
        pl.col("session_id").is_in(events.filter(event_type="seek")["session_id"].implode())
    )
    share = seeking["session_id"].n_unique() / events["session_id"].n_unique()
    assert 0.3 < share < 0.7
    steps = seeking.with_columns(
        dt=pl.col("ts").diff().over("session_id").dt.total_microseconds() / 1e6,
        dp=pl.col("position_s").diff().over("session_id"),
    ).filter(pl.col("event_type").is_in(["heartbeat", "seek"]))
    assert steps["dt"].drop_nulls().max() <= 2.0 + 1e-9, "heartbeats stay 2 s apart in wall-clock time"
    assert (steps.filter(event_type="seek")["dp"] != 2.0).all(), "a seek jumps"
    assert (events["position_s"] >= 0).all()


def test_genre_labels_extend_the_tags() -> None:
    catalog = pl.DataFrame({"media_id": ["a", "b"], "duration_s": [1.0, 2.0], "tags": [["x"], None]})
    labels = pl.DataFrame(
        {
            "media_id": ["a", "a", "b"],
            "kind": ["genre", "mood", "genre"],
            "label": ["drama", "calm", "news"],
        }
    )
    tags = genres_from_labels(catalog, labels).sort("media_id")["tags"].to_list()
    assert tags == [["x", "drama"], ["news"]]


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
    again = record_simulated(lake, iter_events(grown, users, config, chunk_users=7))
    assert again.accepted == 0 and again.write.rows_written == 0
    assert again.duplicates == second.height, "chunks replay the same events"
    assert read_table(lake, "view_events").height == table.height


def test_empty_catalog_simulates_nothing() -> None:
    config = SimulationConfig(n_users=5)
    assert simulate_events(CATALOG.head(0), simulate_users(config), config).is_empty()
