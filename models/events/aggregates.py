"""Aggregates over view events, in Polars (lazy, so large event tables stream)."""

from __future__ import annotations

import polars as pl


def sessions(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per playback session: who, what, when it started, how far it got, if it finished."""
    return events.group_by("session_id").agg(
        pl.col("media_id").first(),
        pl.col("user_id").first(),
        pl.col("ts").min().alias("started_at"),
        pl.col("position_s").max().alias("watched_s"),
        (pl.col("event_type") == "complete").any().alias("completed"),
    )


def hourly_stats(events: pl.LazyFrame) -> pl.LazyFrame:
    """Views (sessions started), exact unique viewers, watch time and completion per title-hour."""
    return (
        sessions(events)
        .with_columns(pl.col("started_at").dt.truncate("1h").alias("hour"))
        .group_by("media_id", "hour")
        .agg(
            pl.len().cast(pl.Int64).alias("views"),
            pl.col("user_id").n_unique().cast(pl.Int64).alias("unique_viewers"),
            pl.col("watched_s").sum().alias("watch_time_s"),
            pl.col("watched_s").mean().alias("avg_watch_time_s"),
            pl.col("completed").mean().alias("completion_rate"),
        )
        # parallel sums add in any order; rounding keeps re-runs bit-identical (idempotent upserts)
        .with_columns(pl.col("watch_time_s", "avg_watch_time_s", "completion_rate").round(6))
        .sort("media_id", "hour")
    )
