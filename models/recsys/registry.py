"""Train, evaluate and register recommenders in MLflow; the `champion` alias is what serving loads.

mlflow is imported inside the functions: importing it costs seconds, and callers such as the
Dagster code location import this module just to build definitions.

One MLflow experiment per dataset (`streamlake-recs/platform`, `streamlake-recs/ml100k`) and one
registered model per dataset (the platform's is `settings.registered_model`, the one serving
loads; others get a `-<dataset>` suffix), each with its own `champion` alias. Every run carries
the protocol sentence, seed, k, dataset hash (all rows), split hash (train and test) and code
version. A tuned model's run is the parent of one child run per trial (validation metrics,
prefixed `val_`); its own metrics are the test metrics of the refitted winner.

Idempotence: every registered version carries a fingerprint tag (model name and params, or the
tuning search for a tuned model, dataset and split hashes, k, seed, protocol, extra params; not
the code version). train_and_log reuses a version with the same fingerprint instead of fitting
and registering again, so re-running training on unchanged data returns the existing version
(TrainedRun.reused is True) rather than piling up identical ones; reuse=False forces a fit.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import polars as pl

from models.recsys.base import Recommender
from models.recsys.evaluation import Protocol, Split, fit_and_evaluate, random_per_user
from models.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from models.recsys.tuning import Trial, Tuner

EXPERIMENT_PREFIX = "streamlake-recs"
PLATFORM = "platform"
ML100K = "ml100k"
CHAMPION = "champion"
DEFAULT_TEST_FRACTION = 0.25
FINGERPRINT_TAG = "streamlake.fingerprint"
ROLE_TAG = "streamlake.role"  # "model" on a model's run, "trial" on a tuning child run
# Pinned explicitly: letting MLflow infer requirements reloads the model in a subprocess (slow).
REQUIREMENTS = ("mlflow", "cloudpickle", "numpy", "pandas", "polars", "scipy")


def experiment_name(dataset: str) -> str:
    return f"{EXPERIMENT_PREFIX}/{dataset}"


def registered_model_name(settings: Settings, dataset: str = PLATFORM) -> str:
    """The platform's model is the one serving loads; other datasets get their own name."""
    return settings.registered_model if dataset == PLATFORM else f"{settings.registered_model}-{dataset}"


@dataclass(frozen=True)
class TrainedRun:
    run_id: str
    model_version: str
    metrics: dict[str, float]
    reused: bool = False
    model: str = ""
    params: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0  # tuning + final fit + evaluation + logging, in this call


@dataclass(frozen=True)
class Champion:
    """The registered model behind the `champion` alias, loaded as pyfunc."""

    version: str
    model: Any = field(repr=False)

    @property
    def recommender(self) -> Recommender:
        """The fitted recommender inside the pyfunc model."""
        return self.model.unwrap_python_model().recommender

    @property
    def known_users(self) -> frozenset[str]:
        """Users the champion was fitted on: the API sends everyone else to the cold-start list."""
        return self.recommender.known_users

    def recommend(self, user_ids: list[str], k: int) -> pl.DataFrame:
        """Top-k per user (user_id, rank, media_id, score), unknown users get popular items.

        Asks the recommender inside the pyfunc directly: the same answer as `model.predict`
        (tests/unit/test_recsys.py holds them equal) without its schema enforcement and two pandas
        round trips, about 5 ms that the API would otherwise pay on every request.
        """
        return self.recommender.recommend(user_ids, k)

    def rank(self, user_ids: list[str], k: int) -> pl.DataFrame:
        """Top-k per user with nothing excluded, for scoring against a history other than the one
        the model was fitted on (models.monitoring.drift removes each viewer's own)."""
        return self.recommender.recommend(user_ids, k, exclude_seen=False)


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


def _experiment_id(client: MlflowClient, settings: Settings, dataset: str) -> str:
    name = experiment_name(dataset)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = (settings.mlflow_artifacts.resolve() / name).as_uri()
    return client.create_experiment(name, artifact_location=location, tags={"dataset": dataset})


def _reusable_version(client: MlflowClient, name: str, fingerprint: str) -> Any | None:
    """The newest registered version whose fingerprint tag matches, if any."""
    versions = client.search_model_versions(f"name = '{name}'")
    matching = [v for v in versions if v.tags.get(FINGERPRINT_TAG) == fingerprint]
    return max(matching, key=lambda v: int(v.version), default=None)


def _fingerprint(params: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def train_and_log(
    model: Recommender,
    train: pl.DataFrame,
    test: pl.DataFrame,
    settings: Settings,
    k: int = 10,
    extra_params: dict[str, object] | None = None,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    protocol: Protocol | None = None,
    dataset: str = PLATFORM,
    reuse: bool = True,
) -> TrainedRun:
    """Fit, evaluate on test, log params/metrics/hashes/seed/code version and register a pyfunc model.

    protocol names how train/test were made (default: per-user random with test_fraction,
    settings.seed and k); the split itself was made by the caller. Returns the reused version when
    an identical one exists (see module doc); `model` is then left unfitted, so load the version
    rather than calling model.recommend.
    """
    protocol = protocol or random_per_user(test_fraction, settings.seed, k)
    identity = {"model": model.name, **{f"model.{key}": value for key, value in model.params().items()}}
    return _log_model_run(
        settings,
        dataset,
        model.name,
        identity,
        Split(train, test, protocol),
        lambda _: model,
        extra_params,
        reuse,
    )


def tune_and_log(
    tuner: Tuner,
    split: Split,
    settings: Settings,
    extra_params: dict[str, object] | None = None,
    *,
    dataset: str = PLATFORM,
    reuse: bool = True,
) -> TrainedRun:
    """Search tuner's space on validation rows carved from split.train (a child run per trial),
    refit the winner on all of split.train, score it once on split.test and register it."""
    if tuner.protocol != split.protocol:
        raise ValueError(f"the tuner validates under {tuner.protocol}, the split came from {split.protocol}")
    name = tuner.entry.name

    def make(log_trial: Callable[[Trial], None]) -> Recommender:
        best, _ = tuner.search(split.train, log_trial)
        return tuner.entry.build(best, tuner.context)

    identity = {"model": name, **tuner.describe()}
    return _log_model_run(settings, dataset, name, identity, split, make, extra_params, reuse)


def _log_model_run(
    settings: Settings,
    dataset: str,
    name: str,
    identity: dict[str, object],
    split: Split,
    make_model: Callable[[Callable[[Trial], None]], Recommender],
    extra_params: dict[str, object] | None,
    reuse: bool,
) -> TrainedRun:
    import mlflow

    from models.recsys.pyfunc import SIGNATURE, RecommenderModel

    started = time.perf_counter()
    with _tracking(settings) as client:
        registered = registered_model_name(settings, dataset)
        params = {
            **identity,
            **(extra_params or {}),
            **split.protocol.params(),
            "dataset": dataset,
            "dataset_hash": split.dataset_hash,
            "split_hash": split.split_hash,
        }
        fingerprint = _fingerprint(params)
        existing = _reusable_version(client, registered, fingerprint) if reuse else None
        if existing is not None:
            run = client.get_run(existing.run_id)
            return TrainedRun(
                existing.run_id,
                str(existing.version),
                dict(run.data.metrics),
                reused=True,
                model=name,
                params=dict(run.data.params),
                wall_seconds=time.perf_counter() - started,
            )

        experiment_id = _experiment_id(client, settings, dataset)
        provenance = _provenance(split, dataset)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name} {split.protocol.name}") as run:
            mlflow.set_tags({**provenance, ROLE_TAG: "model", "model": name})

            def log_trial(trial: Trial) -> None:
                with mlflow.start_run(
                    experiment_id=experiment_id, run_name=f"{name} trial {trial.index}", nested=True
                ):
                    mlflow.set_tags({**provenance, ROLE_TAG: "trial", "model": name})
                    mlflow.log_params(
                        {
                            "model": name,
                            **{f"model.{key}": value for key, value in trial.params.items()},
                            **split.protocol.params(),
                            "trial": trial.index,
                            "validation": f"carved from train: {split.protocol.describe()}",
                            "dataset_hash": split.dataset_hash,
                            "code_version": provenance["code_version"],
                        }
                    )
                    mlflow.log_metrics(
                        {f"val_{key}": value for key, value in trial.metrics.items()}
                        | {"train_seconds": trial.train_seconds}
                    )

            searching = time.perf_counter()
            model = make_model(log_trial)
            tuning_seconds = time.perf_counter() - searching
            evaluation = fit_and_evaluate(model, split)
            chosen = {f"model.{key}": value for key, value in model.params().items()}
            logged = {
                **params,
                **chosen,
                "train_hash": split.train_hash,
                "test_hash": split.test_hash,
                "train_rows": split.train.height,
                "test_rows": split.test.height,
                "code_version": evaluation.code_version,
            }
            mlflow.log_params({key: _param(value) for key, value in logged.items()})
            scores = {
                **evaluation.metrics,
                "train_seconds": evaluation.train_seconds,
                "tuning_seconds": tuning_seconds,
            }
            mlflow.log_metrics(scores)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=RecommenderModel(model),
                signature=SIGNATURE,
                input_example=pd.DataFrame(
                    {"user_id": split.train["user_id"].head(1).to_list(), "k": [split.protocol.k]}
                ),
                pip_requirements=[f"{dist}=={installed_version(dist)}" for dist in REQUIREMENTS],
            )
        version = _register(
            client,
            registered,
            info,
            {
                FINGERPRINT_TAG: fingerprint,
                "dataset_hash": split.dataset_hash,
                "protocol": split.protocol.name,
            },
        )
        return TrainedRun(
            run.info.run_id,
            version,
            scores,
            model=name,
            params={key: _param(value) for key, value in logged.items()},
            wall_seconds=time.perf_counter() - started,
        )


def _provenance(split: Split, dataset: str) -> dict[str, str]:
    """Tags every run of this split carries (and the results table filters on)."""
    from models.recsys.evaluation import code_version

    return {
        "dataset": dataset,
        "protocol": split.protocol.describe(),
        "protocol_name": split.protocol.name,
        "seed": str(split.protocol.seed),
        "dataset_hash": split.dataset_hash,
        "code_version": code_version(),
    }


def _param(value: object) -> str:
    """MLflow params are strings; lists and dicts as compact JSON."""
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict | tuple) else str(value)


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


@dataclass(frozen=True)
class _Measured:
    version: str
    value: float
    protocol: str | None
    held_out: str | None  # the split hash: which train/test rows the value was measured on


def _measure(client: MlflowClient, name: str, version: str, metric: str) -> _Measured:
    run_id = client.get_model_version(name, version).run_id
    run = client.get_run(run_id)
    value = run.data.metrics.get(metric)
    if value is None:
        raise LookupError(f"{name} v{version} (run {run_id}) has no metric {metric!r}")
    params = run.data.params
    return _Measured(
        version, value, params.get("protocol"), params.get("split_hash") or params.get("dataset_hash")
    )


def _champion_version(client: MlflowClient, name: str) -> str | None:
    """The version behind the alias, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as err:
        if err.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def promote_if_better(
    settings: Settings,
    version: str,
    metric: str = "ndcg_at_10",
    dataset: str = PLATFORM,
    *,
    replace_incomparable: bool = False,
) -> bool:
    """Move `champion` to version when there is none or the candidate is strictly better.

    Ties keep the current champion: a re-trained equal model is no reason to flip serving. Scores
    are compared only when both were measured on the same held-out rows (same protocol and split
    hash); a champion measured on other data (yesterday's events) is replaced only when
    replace_incomparable is set, as promote_best does for the best of a fresh training round.
    """
    with _tracking(settings) as client:
        name = registered_model_name(settings, dataset)
        candidate = _measure(client, name, version, metric)
        current = _champion_version(client, name)
        if current is not None:
            if current == version:
                return False
            held = _measure(client, name, current, metric)
            comparable = (held.protocol, held.held_out) == (candidate.protocol, candidate.held_out)
            if comparable and candidate.value <= held.value:
                return False
            if not comparable and not replace_incomparable:
                return False
        client.set_registered_model_alias(name, CHAMPION, version)
        return True


@dataclass(frozen=True)
class Promotion:
    best: str  # the best candidate of the round
    promoted: bool
    champion: str | None  # the version behind the alias afterwards
    scores: dict[str, float]  # candidate version -> metric


def promote_best(
    settings: Settings, versions: Sequence[str], metric: str = "ndcg_at_10", dataset: str = PLATFORM
) -> Promotion:
    """Offer the best of one training round (all measured on the same held-out rows) to the alias.

    The best candidate must beat a champion measured on the same rows; a champion measured on
    other rows cannot be compared, so the round's best (which had to beat the round's baselines)
    replaces it.
    """
    if not versions:
        raise ValueError("no candidate versions")
    with _tracking(settings) as client:
        name = registered_model_name(settings, dataset)
        measured = [_measure(client, name, v, metric) for v in dict.fromkeys(versions)]
    rows = {(m.protocol, m.held_out) for m in measured}
    if len(rows) > 1:
        raise ValueError(f"candidates {list(versions)} were measured on different held-out rows: {rows}")
    best = max(measured, key=lambda m: (m.value, -int(m.version)))
    promoted = promote_if_better(settings, best.version, metric, dataset, replace_incomparable=True)
    return Promotion(
        best.version, promoted, champion_version(settings, dataset), {m.version: m.value for m in measured}
    )


def load_champion(settings: Settings, dataset: str = PLATFORM) -> Champion:
    """Load the champion as pyfunc; LookupError when no version holds the alias yet.

    Loads models:/name/<version> for the version the alias resolved to, not models:/name@champion,
    so a promotion landing in between cannot pair one version number with another's model.
    """
    import mlflow

    with _tracking(settings) as client:
        name = registered_model_name(settings, dataset)
        version = _champion_version(client, name)
        if version is None:
            raise LookupError(f"registered model {name!r} has no {CHAMPION!r} alias at {settings.mlflow_uri}")
        return Champion(version, mlflow.pyfunc.load_model(f"models:/{name}/{version}"))


def champion_version(settings: Settings, dataset: str = PLATFORM) -> str | None:
    """The version behind `champion`, or None: a cheap probe, unlike loading the model.

    A local sqlite store that does not exist yet means nothing is registered; the probe does not
    create it (creating the store is training's job, not the API's).
    """
    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None
    from mlflow import MlflowClient

    return _champion_version(MlflowClient(uri, uri), registered_model_name(settings, dataset))


def results(settings: Settings, dataset: str) -> pl.DataFrame:
    """The newest model run per (model, protocol) in the dataset's experiment, for the results table.

    Columns: model, protocol_name, protocol, seed, dataset_hash, code_version, run_id, params
    (JSON of model.* params), tuned (JSON list of the searched params), end_time, and every metric.
    """
    with _tracking(settings) as client:
        experiment = client.get_experiment_by_name(experiment_name(dataset))
        if experiment is None:
            return pl.DataFrame()
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'model' and attributes.status = 'FINISHED'",
            order_by=["attributes.end_time DESC"],
            max_results=5000,
        )
    rows = []
    for run in runs:
        params = run.data.params
        rows.append(
            {
                "model": params.get("model", ""),
                "protocol_name": params.get("protocol_name", ""),
                "protocol": params.get("protocol", ""),
                "seed": params.get("seed", ""),
                "dataset_hash": params.get("dataset_hash", ""),
                "code_version": params.get("code_version", ""),
                "run_id": run.info.run_id,
                "end_time": run.info.end_time,
                "params": json.dumps(
                    {k.removeprefix("model."): v for k, v in sorted(params.items()) if k.startswith("model.")}
                ),
                "tuned": json.dumps(sorted(json.loads(params.get("tuning.space", "{}")))),
                **run.data.metrics,
            }
        )
    if not rows:
        return pl.DataFrame()
    frame = pl.DataFrame(rows, infer_schema_length=None)
    newest = frame.sort("end_time", descending=True).unique(["model", "protocol_name"], keep="first")
    return newest.sort("protocol_name", "model")
