"""Aggregates over view events, in Polars (lazy, so large event tables stream).

models/events/spark_aggregates.py computes the same frames in Spark; both must give identical
rows, so every choice here that an engine could make differently is pinned down:
- a session's title and viewer are the smallest value seen (not the first, which depends on
  row order in a parallel or streaming group-by);
- nulls: distinct counts ignore them, sums of nothing are 0, a session without a `complete`
  event is not completed;
- floats are rounded half-to-even to 6 dp (Spark: rint(x * 1e6) / 1e6, the same arithmetic);
- averages are not engine means (their summation order differs, and a mean near a rounding tie
  then rounds apart) but the rounded sum over an integer count, both identical everywhere;
so re-runs and either engine give bit-identical rows, and upserts commit nothing.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from models.lake import tables
from models.lake.schemas import ALL_TABLES
from models.settings import Settings

DECIMALS = 6
AGGREGATES = ("hourly_stats", "user_stats", "co_watch")
Engine = Literal["polars", "spark"]


def sessions(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per playback session: who, what, when it started and ended, how far it got, if it finished."""
    return events.group_by("session_id").agg(
        pl.col("media_id").min(),
        pl.col("user_id").min(),
        pl.col("ts").min().alias("started_at"),
        pl.col("ts").max().alias("ended_at"),
        pl.col("position_s").max().alias("watched_s"),
        (pl.col("event_type") == "complete").any().alias("completed"),
    )


def _ratio(total: str, count: str) -> pl.Expr:
    """total / count, null where count is 0 (a mean with no values)."""
    return pl.when(pl.col(count) > 0).then(pl.col(total) / pl.col(count)).round(DECIMALS)


def hourly_stats(events: pl.LazyFrame) -> pl.LazyFrame:
    """Views (sessions started), exact unique viewers, watch time and completion per title-hour."""
    return (
        sessions(events)
        .with_columns(pl.col("started_at").dt.truncate("1h").alias("hour"))
        .group_by("media_id", "hour")
        .agg(
            pl.len().cast(pl.Int64).alias("views"),
            pl.col("user_id").drop_nulls().n_unique().cast(pl.Int64).alias("unique_viewers"),
            pl.col("watched_s").sum().round(DECIMALS).alias("watch_time_s"),
            pl.col("watched_s").count().alias("timed"),
            pl.col("completed").sum().alias("completions"),
        )
        .select(
            "media_id",
            "hour",
            "views",
            "unique_viewers",
            "watch_time_s",
            _ratio("watch_time_s", "timed").alias("avg_watch_time_s"),
            _ratio("completions", "views").alias("completion_rate"),
        )
        .sort("media_id", "hour")
    )


def user_stats(events: pl.LazyFrame) -> pl.LazyFrame:
    """Per viewer: sessions, distinct titles, watch time, share of sessions finished, last event time."""
    return (
        sessions(events)
        .filter(pl.col("user_id").is_not_null())
        .group_by("user_id")
        .agg(
            pl.len().cast(pl.Int64).alias("sessions"),
            pl.col("media_id").drop_nulls().n_unique().cast(pl.Int64).alias("titles"),
            pl.col("watched_s").sum().round(DECIMALS).alias("watch_time_s"),
            pl.col("completed").sum().alias("completions"),
            pl.col("ended_at").max().alias("last_seen"),
        )
        .select(
            "user_id",
            "sessions",
            "titles",
            "watch_time_s",
            _ratio("completions", "sessions").alias("completion_rate"),
            "last_seen",
        )
        .sort("user_id")
    )


def window_us(window_h: float) -> int:
    """The co-watch window in whole microseconds, so both engines compare the same integers."""
    return round(window_h * 3_600_000_000)


def co_watch(events: pl.LazyFrame, window_h: float = 24) -> pl.LazyFrame:
    """Title pairs (media_a < media_b) that one viewer started within window_h hours of each other.

    Each viewer counts once per title, at their first start of it: events are reduced to
    (user, media, first_start) before the per-user self-join, so the join grows with titles per
    viewer, not with sessions or events. The window is inclusive: |first_a - first_b| <= window_h.

    viewers = distinct viewers with the pair; weight = viewers / sqrt(viewers_a * viewers_b), where
    viewers_x counts everyone who watched x at all: the cosine similarity of the two titles' viewer
    sets, restricted to co-watches inside the window (1.0: the same audience, always together).
    """
    firsts = (
        sessions(events)
        .drop_nulls(["user_id", "media_id", "started_at"])
        .group_by("user_id", "media_id")
        .agg(pl.col("started_at").min().alias("first_start"))
    )
    audience = firsts.group_by("media_id").agg(pl.len().cast(pl.Int64).alias("n"))
    pairs = (
        firsts.join(firsts, on="user_id", suffix="_b")
        .filter(
            pl.col("media_id") < pl.col("media_id_b"),
            (pl.col("first_start") - pl.col("first_start_b")).dt.total_microseconds().abs()
            <= window_us(window_h),
        )
        .group_by(media_a="media_id", media_b="media_id_b")
        .agg(pl.len().cast(pl.Int64).alias("viewers"))
    )
    return (
        pairs.join(audience.rename({"media_id": "media_a", "n": "n_a"}), on="media_a")
        .join(audience.rename({"media_id": "media_b", "n": "n_b"}), on="media_b")
        .select(
            "media_a",
            "media_b",
            "viewers",
            (pl.col("viewers") / (pl.col("n_a") * pl.col("n_b")).sqrt()).round(DECIMALS).alias("weight"),
        )
        .sort("media_a", "media_b")
    )


def scan_events(settings: Settings) -> pl.LazyFrame:
    """view_events' current snapshot, lazily: its file URIs only (DESIGN §6), never the folder."""
    files = tables.snapshot_files(settings, "view_events")
    if not files:
        return pl.LazyFrame(schema=as_table("view_events", pl.DataFrame()).schema)
    return pl.scan_parquet(files, storage_options=settings.storage_options or None)


def as_table(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with exactly the table's columns and dtypes (an empty frame: an empty table)."""
    if frame.width == 0:
        empty = pl.from_arrow(ALL_TABLES[name].schema.empty_table())
        assert isinstance(empty, pl.DataFrame)
        return empty
    conformed = pl.from_arrow(tables.conform(frame, ALL_TABLES[name]))
    assert isinstance(conformed, pl.DataFrame)
    return conformed


def aggregate(settings: Settings, engine: Engine = "polars", window_h: float = 24) -> dict[str, pl.DataFrame]:
    """hourly_stats, user_stats and co_watch of view_events, shaped as their tables; not written.

    Polars runs them on the streaming engine; "spark" runs the same aggregates through Spark
    (Spark Connect when settings.spark_remote is set) and returns identical frames.
    """
    if engine == "spark":
        from models.events import spark_aggregates

        return spark_aggregates.aggregate(settings, window_h)
    events = scan_events(settings)
    plans = [hourly_stats(events), user_stats(events), co_watch(events, window_h)]
    frames = pl.collect_all(plans, engine="streaming")
    return {name: as_table(name, frame) for name, frame in zip(AGGREGATES, frames, strict=True)}
