"""From raw view events to implicit-feedback interactions, their split and their fingerprint."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

INTERACTION_SCHEMA = {
    "user_id": pl.String,
    "media_id": pl.String,
    "weight": pl.Float64,
    "last_ts": pl.Datetime("us", "UTC"),
}


def interactions_from_events(events: pl.DataFrame) -> pl.DataFrame:
    """One row per (user_id, media_id) with an implicit-feedback weight.

    weight = sessions + completed sessions: every session that touched the item counts 1 (any
    event, so a lost 'play' still counts), and each session that reached 'complete' counts 1
    more. Counting sessions rather than events keeps long watches (many heartbeats) from
    drowning out breadth, while rewatches and completions still say "liked it".
    """
    completed = pl.col("session_id").filter(pl.col("event_type") == "complete").n_unique()
    return (
        events.group_by("user_id", "media_id")
        .agg(
            weight=(pl.col("session_id").n_unique() + completed).cast(pl.Float64),
            last_ts=pl.col("ts").max(),
        )
        .sort("user_id", "media_id")
        .cast(INTERACTION_SCHEMA)
    )


def split_per_user(
    interactions: pl.DataFrame, test_fraction: float = 0.25, seed: int = 42
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold out round(n * test_fraction) random items per user, at least one and never all.

    Users with one interaction stay wholly in train (nothing would be left to learn them from).
    The draw runs over rows sorted by (user_id, media_id), so the split depends only on the rows
    and the seed, not on their incoming order.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rows = interactions.sort("user_id", "media_id")
    draw = np.random.default_rng(seed).random(rows.height)
    n = pl.len().over("user_id")
    n_test = pl.when(n > 1).then(((n * test_fraction) + 0.5).floor().clip(1, n - 1)).otherwise(0)
    marked = rows.with_columns(_draw=draw).with_columns(
        _test=pl.col("_draw").rank("ordinal").over("user_id") <= n_test
    )
    train = marked.filter(~pl.col("_test")).drop("_draw", "_test")
    test = marked.filter(pl.col("_test")).drop("_draw", "_test")
    return train, test


def dataset_hash(interactions: pl.DataFrame) -> str:
    """sha256 over the rows sorted on every column (columns in name order): order-independent."""
    columns = sorted(interactions.columns)
    canonical = interactions.select(columns).sort(columns).write_csv()
    return hashlib.sha256(canonical.encode()).hexdigest()
