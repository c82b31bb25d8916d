"""Training: recommenders fitted on view events, tracked in MLflow, champion chosen on NDCG@10."""

import dagster as dg

from assets.common import OWNER, StreamlakeResource
from models.lake import tables
from models.recsys.base import Recommender
from models.recsys.data import interactions_from_events, split_per_user
from models.recsys.itemknn import ItemKNN
from models.recsys.popularity import TopPop
from models.recsys.registry import champion_version, promote_if_better, train_and_log


def _train(streamlake: StreamlakeResource, model: Recommender) -> dg.Output[str]:
    """Fit on a per-user split of the view events; the output value is the registered version."""
    settings = streamlake.settings()
    interactions = interactions_from_events(tables.read_table(settings, "view_events"))
    train, test = split_per_user(interactions, seed=settings.seed)
    run = train_and_log(model, train, test, settings)
    return dg.Output(
        run.model_version,
        metadata={
            "mlflow_run_id": run.run_id,
            "model_version": run.model_version,
            **{name: round(value, 4) for name, value in run.metrics.items()},
            "dagster/row_count": interactions.height,
            "train_rows": train.height,
            "test_rows": test.height,
            "seed": settings.seed,
        },
    )


@dg.asset(group_name="training", deps=["view_events"], kinds={"mlflow", "numpy"}, owners=[OWNER])
def toppop_model(streamlake: StreamlakeResource) -> dg.Output[str]:
    """Popularity baseline, logged and registered in MLflow with offline NDCG@10."""
    return _train(streamlake, TopPop())


@dg.asset(group_name="training", deps=["view_events"], kinds={"mlflow", "scipy"}, owners=[OWNER])
def itemknn_model(streamlake: StreamlakeResource) -> dg.Output[str]:
    """Item-item cosine k-NN with shrinkage, logged and registered in MLflow with offline NDCG@10."""
    return _train(streamlake, ItemKNN())


@dg.asset(group_name="training", kinds={"mlflow"}, owners=[OWNER])
def champion_model(
    streamlake: StreamlakeResource, toppop_model: str, itemknn_model: str
) -> dg.MaterializeResult:
    """Move the `champion` alias to a candidate only when it beats the current champion's NDCG@10."""
    settings = streamlake.settings()
    promoted = [version for version in (toppop_model, itemknn_model) if promote_if_better(settings, version)]
    return dg.MaterializeResult(
        metadata={"champion_version": champion_version(settings), "promoted": ", ".join(promoted) or "none"}
    )
