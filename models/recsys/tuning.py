"""A small, honest hyper-parameter search: candidates are scored on a validation split carved from
the training part with the same protocol, never on the test part.

The search is MLflow-free: each trial goes to a `log_trial` callback, which registry.tune_and_log
turns into a nested child run of the model's run. The best candidate (highest validation metric;
ties keep the earlier candidate, and the defaults come first) is then refitted on the whole
training part by the caller and scored once on test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from models.recsys.catalog import (
    BASELINES,
    ENTRIES,
    BuildContext,
    Entry,
    available,
    embeddings_hash,
    ml100k_interactions,
    ml100k_item_embeddings,
)
from models.recsys.evaluation import COLD_PREFIX, Protocol, Split, evaluate
from models.settings import Settings

if TYPE_CHECKING:
    from models.recsys.registry import TrainedRun


@dataclass(frozen=True)
class Trial:
    index: int
    params: dict[str, object]
    metrics: dict[str, float]
    train_seconds: float


TrialLogger = Callable[[Trial], None]


@dataclass(frozen=True)
class Tuner:
    """Grid (or seeded sample of it) over entry.space, judged on `metric` of a validation split.

    protocol is the outer protocol: validation rows are carved from train by protocol.split with
    the same seed (per-user random share, the last train interaction, or held-out items).
    """

    entry: Entry
    protocol: Protocol
    metric: str = "ndcg_at_10"
    max_trials: int = 8
    context: BuildContext = field(default_factory=BuildContext)

    def candidates(self) -> list[dict[str, object]]:
        return self.entry.candidates(self.max_trials, self.protocol.seed)

    def describe(self) -> dict[str, object]:
        """What identifies the search (the MLflow params and the idempotence fingerprint carry it)."""
        return {
            "tuning.space": {name: list(values) for name, values in self.entry.space.items()},
            "tuning.defaults": dict(self.entry.defaults),
            "tuning.max_trials": self.max_trials,
            "tuning.metric": self.metric,
            "tuning.validation": f"carved from train: {self.protocol.describe()}",
        }

    def search(self, train: pl.DataFrame, log_trial: TrialLogger | None = None) -> tuple[dict, list[Trial]]:
        """Fit every candidate on train minus validation; return the best params and every trial.

        A single candidate (no space) is returned without fitting anything.
        """
        candidates = self.candidates()
        if len(candidates) == 1:
            return candidates[0], []
        validation = self.protocol.split(train)
        trials = []
        for index, params in enumerate(candidates):
            model = self.entry.build(params, self.context)
            started = time.perf_counter()
            model.fit(validation.train)
            seconds = time.perf_counter() - started
            scores = evaluate(model, validation.train, validation.test, self.protocol)
            if self.metric not in scores:
                raise KeyError(f"tuning metric {self.metric!r} not among {sorted(scores)}")
            trial = Trial(index, dict(params), scores, seconds)
            trials.append(trial)
            if log_trial is not None:
                log_trial(trial)
        return best_trial(trials, self.metric).params, trials


def best_trial(trials: list[Trial], metric: str) -> Trial:
    """The trial with the highest metric; ties keep the earlier one (the defaults come first)."""
    if not trials:
        raise ValueError("no trials")
    return max(trials, key=lambda t: (t.metrics[metric], -t.index))


def default_metric(protocol: Protocol) -> str:
    """What tuning and the champion gate judge by: NDCG@k (cold_ NDCG@k under cold start)."""
    prefix = COLD_PREFIX if protocol.kind == "cold_start_items" else ""
    return f"{prefix}ndcg_at_{protocol.k}"


def train_catalog(
    settings: Settings,
    dataset: str,
    split: Split,
    entries: Sequence[Entry],
    *,
    item_embeddings: pl.DataFrame | None = None,
    max_trials: int = 8,
    extra_params: dict[str, object] | None = None,
    reuse: bool = True,
    quick: bool = False,
) -> list[TrainedRun]:
    """Tune, refit, score and register each entry on one split, in order, under one MLflow experiment.

    A hybrid is built on its collaborative half's tuned params when that entry ran before it in
    this call. Content entries are skipped when no item embeddings are given. quick applies each
    entry's quick overrides (fewer epochs) for the daily platform run.
    """
    from models.recsys.registry import tune_and_log

    metric = default_metric(split.protocol)
    tuned: dict[str, dict[str, object]] = {}
    runs = []
    for entry in entries:
        entry = entry.quickened() if quick else entry
        if entry.content and item_embeddings is None:
            continue
        context = BuildContext(
            seed=split.protocol.seed, item_embeddings=item_embeddings, params_of=dict(tuned)
        )
        tuner = Tuner(entry, split.protocol, metric=metric, max_trials=max_trials, context=context)
        params = dict(extra_params or {})
        if entry.content and item_embeddings is not None:
            params["item_embeddings_hash"] = embeddings_hash(item_embeddings)
        if entry.name == "hybrid":
            collaborative = str(entry.defaults.get("collaborative"))
            params["hybrid.collaborative_params"] = tuned.get(collaborative, {})
        run = tune_and_log(tuner, split, settings, params, dataset=dataset, reuse=reuse)
        tuned[entry.name] = entry.parse(run.params)
        runs.append(run)
    return runs


# Which catalog models each ML-100K protocol evaluates (those available here).
ML100K_MODELS: dict[str, tuple[str, ...]] = {
    "random_per_user": tuple(entry.name for entry in ENTRIES),
    "leave_last_out": (
        *BASELINES,
        "ease",
        *(entry.name for entry in ENTRIES if entry.sequential),
    ),
    "cold_start_items": ("toppop", "content", "hybrid"),
}
ML100K_TRIALS = 8


def ml100k_runs(
    settings: Settings,
    protocol: Protocol,
    *,
    names: Sequence[str] | None = None,
    max_trials: int = ML100K_TRIALS,
    reuse: bool = True,
) -> tuple[Split, list[TrainedRun]]:
    """Every (available) model the protocol evaluates on MovieLens-100K from the lake, logged to the
    `streamlake-recs/ml100k` experiment; import_ml100k must have run."""
    from models.datasets.movielens import load_ml100k
    from models.recsys.registry import ML100K

    _, items, ratings = load_ml100k(settings)
    split = protocol.split(ml100k_interactions(ratings))
    entries = available(names if names is not None else ML100K_MODELS[protocol.kind])
    runs = train_catalog(
        settings,
        ML100K,
        split,
        entries,
        item_embeddings=ml100k_item_embeddings(items),
        max_trials=max_trials,
        extra_params={"data": "MovieLens-100K, every rating an interaction weighted rating / 3.5"},
        reuse=reuse,
    )
    return split, runs
