"""Exploration at serving time: a model ranks only what it has evidence for, so new and rarely
shown items never collect the evidence. Each slot of a top-k list is, with probability epsilon,
handed to an item picked by Thompson sampling from a Beta posterior of its success rate
(e.g. completions / impressions). Items with few trials have wide posteriors and win the draw
often; proven items win on their mean; items proven poor rarely win.
"""

from __future__ import annotations

import numpy as np
import polars as pl

# Users whose Thompson draws are held at once: bounds the (users x pool) draw matrix.
USER_BLOCK = 1024


def thompson_picks(
    rng: np.random.Generator,
    pool: pl.DataFrame,
    exclude: np.ndarray,
    n_picks: int,
    prior: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """(pool indices, valid) per user, best draw first: (users x n_picks) each.

    exclude is a (users x pool) boolean mask of items a user must not get (already in the list).
    """
    successes = pool["successes"].to_numpy().astype(np.float64)
    failures = pool["trials"].to_numpy().astype(np.float64) - successes
    draws = rng.beta(prior[0] + successes, prior[1] + failures, size=exclude.shape)
    draws[exclude] = -np.inf
    picks = np.argsort(-draws, axis=1, kind="stable")[:, :n_picks]
    return picks, np.isfinite(np.take_along_axis(draws, picks, axis=1))


def explore(
    recs: pl.DataFrame,
    pool: pl.DataFrame,
    epsilon: float = 0.1,
    seed: int = 0,
    prior: tuple[float, float] = (1.0, 1.0),
) -> pl.DataFrame:
    """recs (user_id, rank, media_id, score) with explored slots swapped, plus `explored` (bool).

    pool lists the candidates with their evidence: media_id, trials, successes (0 <= successes <=
    trials). An explored slot keeps its rank and score, so the list's order and schema hold; only
    its media_id changes. A slot stays unexplored when the user's list already holds every pool
    item. The same inputs and seed give the same output.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    if ((pool["successes"] < 0) | (pool["successes"] > pool["trials"])).any():
        raise ValueError("pool needs 0 <= successes <= trials")
    if pool["media_id"].is_duplicated().any():
        raise ValueError("pool repeats a media_id")
    rng = np.random.default_rng(seed)
    slots = (
        recs.with_row_index("_row")
        .with_columns(_user=pl.col("user_id").rank("dense").cast(pl.Int64) - 1)
        .with_columns(_explore=pl.Series(rng.random(recs.height) < epsilon))
        .with_columns(_nth=pl.col("_explore").cast(pl.Int64).cum_sum().over("_user") - 1)
    )
    media = slots["media_id"].to_numpy().copy()
    explored = np.zeros(recs.height, dtype=bool)
    pool_index = pool.select("media_id").with_row_index("_item")
    listed = slots.join(pool_index, on="media_id").select("_user", "_item")
    wanted = slots.filter(pl.col("_explore"))
    n_users = slots["_user"].n_unique()
    for start in range(0, n_users, USER_BLOCK):
        stop = min(start + USER_BLOCK, n_users)
        block = wanted.filter(pl.col("_user").is_between(start, stop - 1))
        if block.is_empty():
            continue
        exclude = np.zeros((stop - start, pool.height), dtype=bool)
        in_block = listed.filter(pl.col("_user").is_between(start, stop - 1))
        exclude[in_block["_user"].to_numpy() - start, in_block["_item"].to_numpy()] = True
        picks, valid = thompson_picks(rng, pool, exclude, int(block["_nth"].max()) + 1, prior)
        users, nth, rows = (block[c].to_numpy() for c in ("_user", "_nth", "_row"))
        ok = nth < picks.shape[1]
        ok[ok] = valid[users[ok] - start, nth[ok]]
        media[rows[ok]] = pool["media_id"].to_numpy()[picks[users[ok] - start, nth[ok]]]
        explored[rows[ok]] = True
    return recs.with_columns(media_id=pl.Series(media, dtype=pl.String), explored=pl.Series(explored))


def evidence_from_hourly_stats(hourly: pl.DataFrame) -> pl.DataFrame:
    """Per title: trials (sessions started) and successes (sessions completed), from hourly_stats.

    completion_rate is rounded in the table, so successes are rounded back to whole sessions.
    """
    return (
        hourly.group_by("media_id")
        .agg(
            trials=pl.col("views").sum(),
            successes=(pl.col("views") * pl.col("completion_rate").fill_null(0.0)).round(0).sum(),
        )
        .select(
            "media_id",
            pl.col("trials").cast(pl.Int64),
            pl.min_horizontal("successes", "trials").cast(pl.Int64).alias("successes"),
        )
        .sort("media_id")
    )


def explore_ranking(
    ranked: pl.DataFrame, evidence: pl.DataFrame, k: int, epsilon: float, seed: int
) -> pl.DataFrame:
    """The top k of one user's ranking with slots explored among the rest of that ranking.

    ranked holds the candidates a model may show this user (unseen items, best first: user_id,
    rank, media_id, score); evidence gives trials and successes per media_id, and a candidate
    without any has none yet (0 of 0: the widest posterior). Exploring only within the ranking
    keeps watched and unknown items out of the list.
    """
    pool = (
        ranked.select("media_id")
        .join(evidence, on="media_id", how="left")
        .with_columns(pl.col("trials", "successes").fill_null(0))
    )
    return explore(ranked.sort("rank").head(k), pool, epsilon=epsilon, seed=seed)
