"""Event aggregates: hand-computed user_stats and co_watch, Polars == Spark on simulated events,
and the Spark bridge reading only a Delta table's current snapshot."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl
import pytest

from models.events.aggregates import AGGREGATES, aggregate, co_watch, user_stats
from models.events.simulator import SimulationConfig, simulate_events, simulate_users
from models.lake import tables
from models.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T0 = datetime(2026, 11, 1, 10, 15, tzinfo=UTC)
COLUMNS = ["event_id", "user_id", "media_id", "session_id", "event_type", "position_s", "ts"]


def _events(sessions: list[tuple[str | None, str, str, timedelta, float, bool]]) -> pl.LazyFrame:
    """Two events per (user, media, session, start offset, watched seconds, completed)."""
    rows = []
    for user, media, session, start, watched, completed in sessions:
        begin = T0 + start
        rows.append((f"{session}-0", user, media, session, "play", 0.0, begin))
        end = "complete" if completed else "pause"
        rows.append((f"{session}-1", user, media, session, end, watched, begin + timedelta(seconds=watched)))
    return pl.DataFrame(rows, schema=COLUMNS, orient="row").lazy()


def test_user_stats_by_hand() -> None:
    events = _events(
        [
            ("u1", "a", "s1", timedelta(0), 10.0, True),
            ("u1", "a", "s2", timedelta(hours=2), 4.5, False),
            ("u1", "b", "s3", timedelta(hours=5), 7.25, True),
            ("u2", "b", "s4", timedelta(hours=1), 3.0, False),
            (None, "b", "s5", timedelta(hours=1), 3.0, False),  # no viewer: no row
        ]
    )
    stats = user_stats(events).collect(engine="streaming")
    assert stats.rows() == [
        ("u1", 3, 2, 21.75, round(2 / 3, 6), T0 + timedelta(hours=5, seconds=7.25)),
        ("u2", 1, 1, 3.0, 0.0, T0 + timedelta(hours=1, seconds=3)),
    ]
    assert stats.columns == ["user_id", "sessions", "titles", "watch_time_s", "completion_rate", "last_seen"]


def test_co_watch_by_hand() -> None:
    events = _events(
        [
            ("u1", "a", "s1", timedelta(0), 5.0, True),
            ("u1", "b", "s2", timedelta(hours=1), 5.0, True),
            ("u1", "c", "s3", timedelta(hours=30), 5.0, True),  # 29 h after b, 30 h after a: outside
            ("u1", "a", "s4", timedelta(hours=29), 5.0, True),  # a rewatch: u1's a still starts at 0 h
            ("u2", "a", "s5", timedelta(0), 5.0, True),
            ("u2", "b", "s6", timedelta(hours=24), 5.0, True),  # exactly the window: inside
            ("u3", "c", "s7", timedelta(hours=50), 5.0, True),
            ("u3", "b", "s8", timedelta(hours=48), 5.0, True),
        ]
    )
    # audiences: a {u1, u2} = 2, b {u1, u2, u3} = 3, c {u1, u3} = 2
    assert co_watch(events).collect(engine="streaming").rows() == [
        ("a", "b", 2, round(2 / math.sqrt(2 * 3), 6)),
        ("b", "c", 1, round(1 / math.sqrt(3 * 2), 6)),
    ]
    wide = co_watch(events, window_h=30).collect(engine="streaming")
    assert wide.filter(media_a="a", media_b="c").rows() == [("a", "c", 1, round(1 / math.sqrt(2 * 2), 6))]
    assert wide.filter(media_a="b", media_b="c")["viewers"].to_list() == [2]


def test_aggregates_of_an_empty_lake_are_empty_tables(lake: Settings) -> None:
    frames = aggregate(lake)
    assert list(frames) == list(AGGREGATES)
    for name, frame in frames.items():
        assert frame.is_empty()
        assert frame.schema == pl.from_arrow(tables.ALL_TABLES[name].schema.empty_table()).schema


# --- Spark: one local[2] session for the module (about 15 s to start) ---------------------------


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    if shutil.which("java") is None:
        pytest.skip("no Java runtime on PATH, local Spark cannot start: apt-get install default-jre-headless")
    pytest.importorskip("pyspark", reason="pyspark[connect] is not installed")
    from models.events.spark_aggregates import spark_session

    session = spark_session(None)
    yield session
    session.stop()


def _simulated(lake: Settings) -> pl.DataFrame:
    catalog = pl.DataFrame(
        {
            "media_id": [f"m{i:02d}" for i in range(30)],
            "duration_s": [5.0 + 3 * i for i in range(30)],
            "tags": [[f"t{i % 5}"] for i in range(30)],
        }
    )
    config = SimulationConfig(n_users=60, days=2)
    events = simulate_events(catalog, simulate_users(config), config)
    odd = events.head(4).with_columns(  # a viewer-less session and a session with unknown event types
        event_id=pl.format("odd-{}", pl.int_range(4)),
        session_id=pl.Series(["odd-1", "odd-1", "odd-2", "odd-2"]),
        user_id=pl.Series([None, None, "u00001", "u00001"], dtype=pl.String),
        event_type=pl.Series(["play", "pause", None, None], dtype=pl.String),
    )
    tables.insert_new(lake, "view_events", pl.concat([events, odd]))
    return events


def test_spark_and_polars_aggregates_are_identical(spark: SparkSession, lake: Settings) -> None:
    _simulated(lake)
    ours = aggregate(lake, "polars", window_h=12)
    theirs = aggregate(lake, "spark", window_h=12)
    for name in AGGREGATES:
        assert ours[name].height > 10, name
        assert ours[name].schema == theirs[name].schema, name
        assert ours[name].equals(theirs[name]), name  # both sorted by the table's key


def test_spark_reads_the_current_snapshot_and_writes_back_through_delta_rs(
    spark: SparkSession, lake: Settings
) -> None:
    from models.events import spark_aggregates as sa

    events = _simulated(lake)  # v0
    first_sessions = events["session_id"].unique().sort().head(5).to_list()
    tables.delete_where_in(lake, "view_events", "session_id", first_sessions)  # rewrites files
    current = tables.read_table(lake, "view_events")
    assert current.height < events.height + 4

    read = sa.read_delta(spark, lake, "view_events")
    assert read.count() == current.height
    assert read.where(read.session_id.isin(first_sessions)).count() == 0
    folder = spark.read.parquet(tables.table_uri(lake, "view_events"))  # what DESIGN §6 forbids
    assert folder.count() > current.height, "the folder still holds the deleted rows' old files"

    polars_stats = aggregate(lake)
    for name, spark_stats in (("hourly_stats", sa.hourly_stats(read)), ("user_stats", sa.user_stats(read))):
        tables.replace_rows(lake, name, polars_stats[name])
        version = tables.open_table(lake, name).version()  # type: ignore[union-attr]
        again = sa.write_delta(lake, name, spark_stats)
        assert (again.rows_written, again.version) == (0, version), f"{name}: Spark's rows are Polars'"

    sa.write_delta(lake, "user_stats", sa.user_stats(read).limit(10))  # replace: overwrite down to 10 rows
    assert sa.read_delta(spark, lake, "user_stats").count() == 10
