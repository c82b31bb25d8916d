"""QoE-aware ranking: demote titles that play badly on the caller's device class.

A recommender ranks by what a viewer would like; a title whose ladder stalls on phones is a
worse recommendation on a phone however well it matches. `demote` re-ranks a list by
score - weight * (1 - qoe / 100), with scores first min-max scaled to [0, 1] per user so that one
weight means the same for every model (0 leaves the order as it was). Titles with no QoE figure
for the class are not demoted (no evidence, no penalty). `evaluate_demotion` measures, on
simulated users, what that costs in NDCG@10 and gains in the expected QoE of the lists.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

from models.recsys.metrics import ndcg_at_k


def demote(recs: pl.DataFrame, qoe: pl.DataFrame, device_class: str, weight: float = 0.1) -> pl.DataFrame:
    """recs (user_id, rank, media_id, score) re-ranked for device_class, with rank renumbered
    from 1 and the adjusted (scaled) score; qoe has media_id, device_class, qoe_score (0-100)."""
    if weight < 0:
        raise ValueError(f"weight must be at least 0, got {weight}")
    penalty = qoe.filter(pl.col("device_class") == device_class).select(
        "media_id", (weight * (1.0 - pl.col("qoe_score") / 100.0)).alias("penalty")
    )
    low, high = pl.col("score").min().over("user_id"), pl.col("score").max().over("user_id")
    scaled = pl.when(high > low).then((pl.col("score") - low) / (high - low)).otherwise(1.0)
    return (
        recs.join(penalty, on="media_id", how="left")
        .with_columns((scaled - pl.col("penalty").fill_null(0.0)).alias("score"))
        .sort(["user_id", "score", "rank"], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").cast(recs.schema["rank"]).alias("rank"))
        .select(recs.columns)
    )


@dataclass(frozen=True)
class DemotionSetup:
    users: int = 500
    titles: int = 300
    candidates: int = 50  # the recommender's list that demotion re-ranks
    truth_per_user: int = 20
    factors: int = 8
    score_noise: float = 0.5  # the recommender's error, in true-affinity units
    bad_share: float = 0.2  # titles with an over-ambitious ladder: poor QoE on mobile
    seed: int = 42


def simulated_ranking(setup: DemotionSetup) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(truth, recs, qoe): held-out titles by true affinity, a noisy recommender's top candidates
    (scores min-max scaled per user to [0, 1]) and per title x class QoE, worse on mobile for
    the over-ambitious titles. Relevance does not depend on QoE, so demotion can only cost NDCG."""
    rng = np.random.default_rng(setup.seed)
    affinity = rng.normal(size=(setup.users, setup.factors)) @ rng.normal(size=(setup.factors, setup.titles))
    truth_idx = np.argsort(-(affinity + rng.gumbel(size=affinity.shape)), 1)[:, : setup.truth_per_user]
    scores = affinity + setup.score_noise * rng.normal(size=affinity.shape) * affinity.std()
    top = np.argsort(-scores, 1)[:, : setup.candidates]
    top_scores = np.take_along_axis(scores, top, 1)
    low, high = top_scores.min(1, keepdims=True), top_scores.max(1, keepdims=True)
    scaled = (top_scores - low) / np.where(high > low, high - low, 1.0)
    users = np.array([f"u{i:04d}" for i in range(setup.users)])
    titles = np.array([f"m{i:04d}" for i in range(setup.titles)])
    truth = pl.DataFrame(
        {"user_id": np.repeat(users, setup.truth_per_user), "media_id": titles[truth_idx].ravel()}
    )
    recs = pl.DataFrame(
        {
            "user_id": np.repeat(users, setup.candidates),
            "rank": np.tile(np.arange(1, setup.candidates + 1), setup.users),
            "media_id": titles[top].ravel(),
            "score": scaled.ravel(),
        }
    )
    bad = rng.random(setup.titles) < setup.bad_share
    base = rng.uniform(70, 95, setup.titles)
    qoe = pl.DataFrame(
        {
            "media_id": np.tile(titles, 3),
            "device_class": np.repeat(["mobile", "desktop", "tv"], setup.titles),
            "qoe_score": np.concatenate([np.where(bad, base * 0.3, base), base, base]).round(3),
        }
    )
    return truth, recs, qoe


def expected_qoe(recs: pl.DataFrame, qoe: pl.DataFrame, device_class: str, k: int = 10) -> float:
    """Mean qoe_score of the titles in the top-k lists, for viewers on device_class."""
    scores = qoe.filter(pl.col("device_class") == device_class).select("media_id", "qoe_score")
    top = recs.filter(pl.col("rank") <= k).join(scores, on="media_id", how="left")
    return float(top.select(pl.col("qoe_score").mean().fill_null(0.0)).item())


def evaluate_demotion(
    setup: DemotionSetup, weights: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.5), k: int = 10
) -> list[dict[str, float | str]]:
    """NDCG@k and expected QoE of the lists per device class and demotion weight (0: none)."""
    truth, recs, qoe = simulated_ranking(setup)
    rows: list[dict[str, float | str]] = []
    for device_class in ("mobile", "desktop", "tv"):
        for weight in weights:
            ranked = demote(recs, qoe, device_class, weight)
            rows.append(
                {
                    "device_class": device_class,
                    "weight": weight,
                    "ndcg_at_10": round(ndcg_at_k(truth, ranked, k), 4),
                    "expected_qoe": round(expected_qoe(ranked, qoe, device_class, k), 2),
                }
            )
    return rows
