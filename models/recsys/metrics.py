"""Top-k ranking metrics with one signature: (truth, recs, k), binary relevance, polars joins.

truth has user_id, media_id (the held-out items); recs has user_id, rank, media_id. Every user
in truth counts (one with no recommendations scores 0); users without truth are left out. Each
metric is 0.0 when truth is empty.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def _per_user(truth: pl.DataFrame, recs: pl.DataFrame, k: int) -> pl.DataFrame:
    """One row per truth user: n_truth, hits, dcg, idcg and the AP@k numerator."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    relevant = truth.select("user_id", "media_id").unique()
    top = recs.filter(pl.col("rank") <= k).group_by("user_id", "media_id").agg(pl.col("rank").min())
    hits = (
        top.join(relevant, on=["user_id", "media_id"], how="semi")
        .sort("user_id", "rank")
        .with_columns(nth_hit=pl.int_range(1, pl.len() + 1).over("user_id"))
        .group_by("user_id")
        .agg(
            hits=pl.len(),
            dcg=(1.0 / (pl.col("rank") + 1).cast(pl.Float64).log(2)).sum(),
            ap=(pl.col("nth_hit") / pl.col("rank")).sum(),
        )
    )
    ideal = pl.DataFrame(
        {"n_ideal": np.arange(1, k + 1), "idcg": np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))}
    )
    return (
        relevant.group_by("user_id")
        .agg(n_truth=pl.len())
        .with_columns(n_ideal=pl.min_horizontal("n_truth", pl.lit(k)).cast(pl.Int64))
        .join(ideal, on="n_ideal")
        .join(hits, on="user_id", how="left")
        .fill_null(0)
    )


def _mean(truth: pl.DataFrame, recs: pl.DataFrame, k: int, per_user: pl.Expr) -> float:
    users = _per_user(truth, recs, k)
    return float(users.select(per_user.mean()).item()) if users.height else 0.0


def ndcg_at_k(truth: pl.DataFrame, recs: pl.DataFrame, k: int = 10) -> float:
    """Mean DCG@k / ideal DCG over min(|truth|, k) hits."""
    return _mean(truth, recs, k, pl.col("dcg") / pl.col("idcg"))


def precision_at_k(truth: pl.DataFrame, recs: pl.DataFrame, k: int = 10) -> float:
    """Mean hits / k (a short list is not forgiven)."""
    return _mean(truth, recs, k, pl.col("hits") / k)


def recall_at_k(truth: pl.DataFrame, recs: pl.DataFrame, k: int = 10) -> float:
    """Mean hits / |truth|."""
    return _mean(truth, recs, k, pl.col("hits") / pl.col("n_truth"))


def map_at_k(truth: pl.DataFrame, recs: pl.DataFrame, k: int = 10) -> float:
    """Mean average precision, each user's sum of precision@hit-rank over min(|truth|, k)."""
    return _mean(truth, recs, k, pl.col("ap") / pl.col("n_ideal"))


def coverage(recs: pl.DataFrame, n_items: int) -> float:
    """Share of the catalogue that appears in anyone's list: low means popularity collapse."""
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    return recs["media_id"].n_unique() / n_items
