"""Training: every catalog recommender on the platform's own events, tracked in MLflow, the champion
chosen on held-out NDCG@10. Scheduled daily (training_job); the logic lives in models.recsys."""

import dagster as dg
import polars as pl

from assets.common import OWNER, StreamlakeResource, frame_schema, markdown_table
from models.lake import tables
from models.recsys import catalog
from models.recsys.data import dataset_hash
from models.recsys.evaluation import random_per_user
from models.recsys.registry import DEFAULT_TEST_FRACTION, PLATFORM, promote_best
from models.recsys.tuning import default_metric, train_catalog

# Trials per model on the platform's validation split: small, so the daily run and the demo stay quick.
PLATFORM_TRIALS = 4
PROTOCOL_K = 10


@dg.asset(
    group_name="training",
    deps=["view_events", "feast_online_features"],
    kinds={"feast", "polars"},
    owners=[OWNER],
)
def platform_training_set(streamlake: StreamlakeResource) -> dg.Output[pl.DataFrame]:
    """Interactions from view_events with exposure-discounted weights from a Feast point-in-time
    training set (each item's viewers in the last complete hour before the viewer started it);
    see models.recsys.catalog.platform_training_set."""
    settings = streamlake.settings()
    frame = catalog.platform_training_set(settings, tables.read_table(settings, "view_events"))
    return dg.Output(
        frame,
        metadata={
            "dagster/row_count": frame.height,
            "dagster/column_schema": frame_schema(frame),
            "users": frame["user_id"].n_unique(),
            "items": frame["media_id"].n_unique(),
            "exposure_feature": catalog.EXPOSURE_FEATURE,
            "exposure_alpha": catalog.EXPOSURE_ALPHA,
            "rows_with_exposure": int((frame["exposure"] > 0).sum()),
            "mean_weight_discount": round(float((frame["weight"] / frame["raw_weight"]).mean() or 1.0), 4),
            "dataset_hash": dataset_hash(frame),
        },
    )


def _model_asset(entry: catalog.Entry) -> dg.AssetsDefinition:
    deps = ["text_embeddings"] if entry.content else []

    @dg.asset(
        name=f"{entry.name}_model",
        group_name="training",
        deps=deps,
        kinds={"mlflow"},
        owners=[OWNER],
        description=f"{entry.description.capitalize()}: tuned on a validation split carved from the "
        "platform's training part (MLflow child runs), refitted, scored on held-out NDCG@10 and "
        "registered as a pyfunc model. The output value is the registered version.",
    )
    def _train(streamlake: StreamlakeResource, platform_training_set: pl.DataFrame) -> dg.Output[str | None]:
        settings = streamlake.settings()
        split = random_per_user(DEFAULT_TEST_FRACTION, settings.seed, PROTOCOL_K).split(platform_training_set)
        embeddings = catalog.platform_item_embeddings(settings) if entry.content else None
        runs = train_catalog(
            settings,
            PLATFORM,
            split,
            [entry],
            item_embeddings=embeddings,
            max_trials=PLATFORM_TRIALS,
            quick=True,
        )
        if not runs:  # a content model without item embeddings (no text_embeddings yet)
            return dg.Output(None, metadata={"skipped": "no text_embeddings to build item embeddings from"})
        run = runs[0]
        return dg.Output(
            run.model_version,
            metadata={
                "mlflow_run_id": run.run_id,
                "model_version": run.model_version,
                "reused": run.reused,
                **{name: round(value, 4) for name, value in run.metrics.items()},
                "protocol": split.protocol.describe(),
                "seed": split.protocol.seed,
                "dataset_hash": split.dataset_hash,
                "train_rows": split.train.height,
                "test_rows": split.test.height,
            },
        )

    return _train


MODEL_ASSETS = [_model_asset(entry) for entry in catalog.available()]
MODEL_INPUTS = {f"{entry.name}_model": dg.AssetIn() for entry in catalog.available()}


@dg.asset(group_name="training", ins=MODEL_INPUTS, kinds={"mlflow"}, owners=[OWNER])
def champion_model(streamlake: StreamlakeResource, **versions: str | None) -> dg.MaterializeResult:
    """Move the `champion` alias to the round's best model only when it beats the current champion's
    held-out NDCG@10 (measured on the same rows; a champion from other data is replaced)."""
    settings = streamlake.settings()
    candidates = {name.removesuffix("_model"): v for name, v in versions.items() if v is not None}
    metric = default_metric(random_per_user(DEFAULT_TEST_FRACTION, settings.seed, PROTOCOL_K))
    result = promote_best(settings, list(candidates.values()), metric=metric, dataset=PLATFORM)
    rows = sorted(
        ((name, v, round(result.scores[v], 4)) for name, v in candidates.items()), key=lambda r: -r[2]
    )
    return dg.MaterializeResult(
        metadata={
            "champion_version": result.champion,
            "best_candidate": result.best,
            "promoted": result.promoted,
            "candidates": markdown_table(["model", "version", metric], rows),
        }
    )
