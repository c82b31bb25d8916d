"""Train, evaluate and register recommenders in MLflow; the `champion` alias is what serving loads.

mlflow is imported inside the functions: importing it costs seconds, and callers such as the
Dagster code location import this module just to build definitions.

Idempotence: every registered version carries a fingerprint tag (model name and params, dataset
hash, k, seed, protocol, extra params). train_and_log reuses a version with the same fingerprint
instead of fitting and registering again, so re-running training on unchanged data returns the
existing version (TrainedRun.reused is True) rather than piling up identical ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from models.recsys import metrics
from models.recsys.base import Recommender
from models.recsys.data import dataset_hash
from models.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "streamlake-recs"
CHAMPION = "champion"
DEFAULT_TEST_FRACTION = 0.25
FINGERPRINT_TAG = "streamlake.fingerprint"
# Pinned explicitly: letting MLflow infer requirements reloads the model in a subprocess (slow).
REQUIREMENTS = ("mlflow", "cloudpickle", "numpy", "pandas", "polars", "scipy")


@dataclass(frozen=True)
class TrainedRun:
    run_id: str
    model_version: str
    metrics: dict[str, float]
    reused: bool = False


@dataclass(frozen=True)
class Champion:
    """The registered model behind the `champion` alias, loaded as pyfunc."""

    version: str
    model: Any = field(repr=False)

    @property
    def known_users(self) -> frozenset[str]:
        """Users the champion was fitted on: the API sends everyone else to the cold-start list."""
        return self.model.unwrap_python_model().recommender.known_users

    def recommend(self, user_ids: list[str], k: int) -> pl.DataFrame:
        """Top-k per user (user_id, rank, media_id, score), unknown users get popular items."""
        request = pd.DataFrame({"user_id": user_ids, "k": np.full(len(user_ids), k, dtype=np.int64)})
        return pl.from_pandas(self.model.predict(request)).with_columns(pl.col("rank").cast(pl.Int32))


def protocol(test_fraction: float, seed: int) -> str:
    """The evaluation protocol, stated with every result (DESIGN §6)."""
    test_pct = round(test_fraction * 100)
    return f"per-user random {100 - test_pct}/{test_pct}, seed {seed}, seen removed, all items ranked"


def evaluate(model: Recommender, train: pl.DataFrame, test: pl.DataFrame, k: int) -> dict[str, float]:
    """Rank all unseen items for every test user; coverage is over the train+test catalogue."""
    recs = model.recommend(test["user_id"].unique().sort().to_list(), k, exclude_seen=True)
    n_items = pl.concat([train["media_id"], test["media_id"]]).n_unique()
    return {
        f"ndcg_at_{k}": metrics.ndcg_at_k(test, recs, k),
        f"precision_at_{k}": metrics.precision_at_k(test, recs, k),
        f"recall_at_{k}": metrics.recall_at_k(test, recs, k),
        f"map_at_{k}": metrics.map_at_k(test, recs, k),
        "coverage": metrics.coverage(recs, n_items),
    }


@contextmanager
def _tracking(settings: Settings) -> Iterator[MlflowClient]:
    """Point MLflow (fluent API and a client) at the settings' store for one block.

    mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into the environment, which Settings
    reads as an override: left in place, one lake's store would leak into the next Settings.
    """
    import mlflow

    if settings.mlflow_uri.startswith("sqlite:"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)
    try:
        yield mlflow.MlflowClient(settings.mlflow_uri, settings.mlflow_uri)
    finally:
        # Only the environment is restored: resetting MLflow's own default would point later
        # fluent calls at ./mlflow.db in whatever directory the process runs from.
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _experiment_id(client: MlflowClient, settings: Settings) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    location = (settings.mlflow_artifacts.resolve() / EXPERIMENT).as_uri()
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def _reusable_version(client: MlflowClient, name: str, fingerprint: str) -> Any | None:
    """The newest registered version whose fingerprint tag matches, if any."""
    versions = client.search_model_versions(f"name = '{name}'")
    matching = [v for v in versions if v.tags.get(FINGERPRINT_TAG) == fingerprint]
    return max(matching, key=lambda v: int(v.version), default=None)


def train_and_log(
    model: Recommender,
    train: pl.DataFrame,
    test: pl.DataFrame,
    settings: Settings,
    k: int = 10,
    extra_params: dict[str, object] | None = None,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> TrainedRun:
    """Fit, evaluate on test, log params/metrics/hashes/seed and register a pyfunc model.

    test_fraction only names the protocol; the split itself was made by the caller with
    settings.seed. Returns the reused version when an identical one exists (see module doc);
    `model` is then left unfitted, so load the version rather than calling model.recommend.
    """
    import mlflow

    from models.recsys.pyfunc import SIGNATURE, RecommenderModel

    with _tracking(settings) as client:
        train_hash, test_hash = dataset_hash(train), dataset_hash(test)
        data_hash = hashlib.sha256(f"{train_hash}:{test_hash}".encode()).hexdigest()
        stated = protocol(test_fraction, settings.seed)
        params = {
            "model": model.name,
            **{f"model.{key}": value for key, value in model.params().items()},
            **(extra_params or {}),
            "k": k,
            "seed": settings.seed,
            "protocol": stated,
            "dataset_hash": data_hash,
        }
        fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
        existing = _reusable_version(client, settings.registered_model, fingerprint)
        if existing is not None:
            run = client.get_run(existing.run_id)
            return TrainedRun(existing.run_id, str(existing.version), dict(run.data.metrics), reused=True)

        model.fit(train)
        scores = evaluate(model, train, test, k)
        with mlflow.start_run(experiment_id=_experiment_id(client, settings), run_name=model.name) as run:
            mlflow.log_params(
                {
                    **params,
                    "train_hash": train_hash,
                    "test_hash": test_hash,
                    "train_rows": train.height,
                    "test_rows": test.height,
                }
            )
            mlflow.set_tags({"protocol": stated, "dataset_hash": data_hash, "model": model.name})
            mlflow.log_metrics(scores)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=RecommenderModel(model),
                signature=SIGNATURE,
                input_example=pd.DataFrame({"user_id": train["user_id"].head(1).to_list(), "k": [k]}),
                pip_requirements=[f"{dist}=={installed_version(dist)}" for dist in REQUIREMENTS],
            )
        version = _register(
            client, settings.registered_model, info, {FINGERPRINT_TAG: fingerprint, "dataset_hash": data_hash}
        )
        return TrainedRun(run.info.run_id, version, scores)


def _register(client: MlflowClient, name: str, info: Any, tags: dict[str, str]) -> str:
    """Register the logged model with its tags in one call (fluent registration prints to stderr)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    created = client.create_model_version(
        name, source=info.model_uri, run_id=info.run_id, tags=tags, model_id=info.model_id
    )
    return str(created.version)


def _version_metric(client: MlflowClient, name: str, version: str, metric: str) -> float:
    run_id = client.get_model_version(name, version).run_id
    value = client.get_run(run_id).data.metrics.get(metric)
    if value is None:
        raise LookupError(f"{name} v{version} (run {run_id}) has no metric {metric!r}")
    return value


def _champion_version(client: MlflowClient, name: str) -> str | None:
    """The version behind the alias, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as err:
        if err.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def promote_if_better(settings: Settings, version: str, metric: str = "ndcg_at_10") -> bool:
    """Move `champion` to version when there is none or the candidate is strictly better.

    Ties keep the current champion: a re-trained equal model is no reason to flip serving.
    """
    with _tracking(settings) as client:
        name = settings.registered_model
        candidate = _version_metric(client, name, version, metric)
        current = _champion_version(client, name)
        if current is not None and (
            current == version or candidate <= _version_metric(client, name, current, metric)
        ):
            return False
        client.set_registered_model_alias(name, CHAMPION, version)
        return True


def load_champion(settings: Settings) -> Champion:
    """Load the champion as pyfunc; LookupError when no version holds the alias yet.

    Loads models:/name/<version> for the version the alias resolved to, not models:/name@champion,
    so a promotion landing in between cannot pair one version number with another's model.
    """
    import mlflow

    with _tracking(settings) as client:
        name = settings.registered_model
        version = _champion_version(client, name)
        if version is None:
            raise LookupError(f"registered model {name!r} has no {CHAMPION!r} alias at {settings.mlflow_uri}")
        return Champion(version, mlflow.pyfunc.load_model(f"models:/{name}/{version}"))


def champion_version(settings: Settings) -> str | None:
    """The version behind `champion`, or None: a cheap probe, unlike loading the model.

    A local sqlite store that does not exist yet means nothing is registered; the probe does not
    create it (creating the store is training's job, not the API's).
    """
    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None
    from mlflow import MlflowClient

    return _champion_version(MlflowClient(uri, uri), settings.registered_model)
