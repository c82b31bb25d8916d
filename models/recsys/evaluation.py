"""Evaluation protocols, named in every result, and the evaluator that applies them (DESIGN §6).

A `Protocol` says how interactions are split and how recommendations are scored; its `describe()`
string goes into every result dict and MLflow run, with the seed, the dataset hash and the code
version. Three kinds:

- `random_per_user` (the Microsoft Recommenders ML-100K protocol with the defaults): per-user
  stratified random split (75/25, seed 42), every item of the training catalogue ranked with the
  user's own training items removed, top-10, binary relevance.
- `leave_last_out` (sequential models): each user's latest interaction (by `last_ts`; ties broken
  by the greater media_id, so the split has no randomness) is the test row; users with a single
  interaction stay in train. Ranking as above.
- `cold_start_items`: a seeded fraction of the items is held out entirely (all their interactions
  go to test); each test user ranks only those new items (their warm items are not candidates) and
  is scored against their own test rows. A model that cannot score unseen items scores 0.

Everything is vectorised: splits and metrics are polars expressions over all users at once, the
models score blocks of users as matrices. `check_no_seen_items` fails an evaluation whose
recommendations repeat a user's training items, naming the users and items.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from typing import Literal

import numpy as np
import polars as pl

from models.recsys import metrics
from models.recsys.base import Recommender
from models.recsys.data import dataset_hash, split_per_user
from models.settings import REPO_ROOT

Kind = Literal["random_per_user", "leave_last_out", "cold_start_items"]
KINDS: tuple[Kind, ...] = ("random_per_user", "leave_last_out", "cold_start_items")
COLD_PREFIX = "cold_"
# How many offending (user, item) pairs a SeenItemLeak names.
LEAK_EXAMPLES = 5


@dataclass(frozen=True)
class Protocol:
    """How to split interactions and score a model; immutable, so a result cannot drift from it.

    fraction: per-user test share for random_per_user, item share for cold_start_items, unused
    for leave_last_out. seed: every random draw of the split (logged even where unused).
    """

    kind: Kind
    seed: int = 42
    fraction: float = 0.25
    k: int = 10

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown protocol {self.kind!r}; one of {KINDS}")
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must lie in (0, 1), got {self.fraction}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")

    @property
    def name(self) -> str:
        """A short id for tables and run names: random_per_user_75_25, leave_last_out, cold_start_items_10."""
        pct = round(self.fraction * 100)
        match self.kind:
            case "random_per_user":
                return f"random_per_user_{100 - pct}_{pct}"
            case "cold_start_items":
                return f"cold_start_items_{pct}"
        return self.kind

    def describe(self) -> str:
        """The sentence stated with every result."""
        pct = round(self.fraction * 100)
        ranked = f"all items ranked, the user's train items removed, top-{self.k}"
        match self.kind:
            case "random_per_user":
                return f"per-user random {100 - pct}/{pct}, seed {self.seed}, {ranked}"
            case "leave_last_out":
                return f"leave-last-out by last_ts (ties: greater media_id), seed {self.seed}, {ranked}"
        return (
            f"cold-start items: {pct}% of items held out entirely, seed {self.seed}, "
            f"only the held-out items ranked, top-{self.k}"
        )

    def split(self, interactions: pl.DataFrame) -> Split:
        """Train and test rows under this protocol; the same rows and seed give the same split."""
        match self.kind:
            case "random_per_user":
                train, test = split_per_user(interactions, self.fraction, self.seed)
            case "leave_last_out":
                train, test = split_leave_last_out(interactions)
            case _:
                train, test = split_cold_start_items(interactions, self.fraction, self.seed)
        return Split(train, test, self)

    def params(self) -> dict[str, object]:
        """What every MLflow run and result dict carries about the protocol."""
        return {"protocol": self.describe(), "protocol_name": self.name, "seed": self.seed, "k": self.k}


def random_per_user(test_fraction: float = 0.25, seed: int = 42, k: int = 10) -> Protocol:
    return Protocol("random_per_user", seed, test_fraction, k)


def leave_last_out(seed: int = 42, k: int = 10) -> Protocol:
    return Protocol("leave_last_out", seed, k=k)


def cold_start_items(item_fraction: float = 0.1, seed: int = 42, k: int = 10) -> Protocol:
    return Protocol("cold_start_items", seed, item_fraction, k)


# (a) The Microsoft Recommenders ML-100K protocol: stratified per-user 75/25, seed 42, top-10;
# (b) leave-last-out for sequential models; (c) cold start on 10% of the items.
ML100K_PROTOCOL = random_per_user(0.25, 42, 10)
ML100K_SEQUENTIAL_PROTOCOL = leave_last_out(42, 10)
ML100K_COLD_START_PROTOCOL = cold_start_items(0.1, 42, 10)


@dataclass(frozen=True)
class Split:
    """One protocol's train and test rows with their hashes (computed once, on first use)."""

    train: pl.DataFrame
    test: pl.DataFrame
    protocol: Protocol

    @functools.cached_property
    def train_hash(self) -> str:
        return dataset_hash(self.train)

    @functools.cached_property
    def test_hash(self) -> str:
        return dataset_hash(self.test)

    @functools.cached_property
    def dataset_hash(self) -> str:
        """The hash of all the rows (train + test): names the data, whatever the split."""
        return dataset_hash(pl.concat([self.train, self.test]))

    @property
    def split_hash(self) -> str:
        """Pins the split itself: sha256 of the train and test hashes."""
        return hashlib.sha256(f"{self.train_hash}:{self.test_hash}".encode()).hexdigest()


def split_leave_last_out(interactions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each user's latest interaction goes to test (ties: the greater media_id counts as later).

    Users with a single interaction stay wholly in train.
    """
    order = ["user_id", "last_ts", "media_id"]
    marked = interactions.sort(order).with_columns(
        _test=(pl.int_range(pl.len()).over("user_id") == pl.len().over("user_id") - 1)
        & (pl.len().over("user_id") > 1)
    )
    train = marked.filter(~pl.col("_test")).drop("_test").sort("user_id", "media_id")
    test = marked.filter(pl.col("_test")).drop("_test").sort("user_id", "media_id")
    return train, test


def split_cold_start_items(
    interactions: pl.DataFrame, item_fraction: float = 0.1, seed: int = 42
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold out round(n_items * item_fraction) items (at least one, never all) with every interaction.

    The draw runs over the sorted distinct media_ids, so it depends only on the item set and the seed.
    """
    items = interactions["media_id"].unique().sort()
    if items.len() < 2:
        raise ValueError("a cold-start split needs at least two items")
    n_cold = min(max(1, round(items.len() * item_fraction)), items.len() - 1)
    chosen = np.random.default_rng(seed).choice(items.len(), size=n_cold, replace=False)
    cold = items.gather(np.sort(chosen))
    is_cold = pl.col("media_id").is_in(cold.implode())
    ordered = interactions.sort("user_id", "media_id")
    return ordered.filter(~is_cold), ordered.filter(is_cold)


class SeenItemLeak(ValueError):
    """Recommendations repeat items from the user's training rows: the evaluation would be inflated."""


def check_no_seen_items(train: pl.DataFrame, recs: pl.DataFrame, limit: int = LEAK_EXAMPLES) -> None:
    """Raise SeenItemLeak naming users and items when any recommendation is a training interaction,
    or when a user's list names the same item twice."""
    pairs = ["user_id", "media_id"]
    leaked = recs.select(pairs).join(train.select(pairs).unique(), on=pairs, how="semi").sort(pairs)
    if leaked.height:
        examples = ", ".join(f"user {u!r}: item {m!r}" for u, m in leaked.head(limit).iter_rows())
        users = leaked["user_id"].n_unique()
        raise SeenItemLeak(
            f"{leaked.height} recommendations for {users} users repeat their training items "
            f"(e.g. {examples}); recommend with exclude_seen=True"
        )
    repeated = recs.select(pairs).filter(pl.struct(pairs).is_duplicated()).unique().sort(pairs)
    if repeated.height:
        examples = ", ".join(f"user {u!r}: item {m!r}" for u, m in repeated.head(limit).iter_rows())
        raise SeenItemLeak(f"{repeated.height} (user, item) pairs are recommended twice (e.g. {examples})")


def ranking_metrics(truth: pl.DataFrame, recs: pl.DataFrame, k: int, n_items: int) -> dict[str, float]:
    """NDCG, precision, recall and MAP at k over truth's users, and catalogue coverage."""
    return {
        f"ndcg_at_{k}": metrics.ndcg_at_k(truth, recs, k),
        f"precision_at_{k}": metrics.precision_at_k(truth, recs, k),
        f"recall_at_{k}": metrics.recall_at_k(truth, recs, k),
        f"map_at_{k}": metrics.map_at_k(truth, recs, k),
        "coverage": metrics.coverage(recs, n_items),
    }


def _catalogue(train: pl.DataFrame, test: pl.DataFrame) -> pl.Series:
    return pl.concat([train["media_id"], test["media_id"]]).unique()


def _rerank_within(recs: pl.DataFrame, candidates: pl.Series, k: int) -> pl.DataFrame:
    """Keep only candidate items and renumber each user's list 1..k in its original order."""
    return (
        recs.filter(pl.col("media_id").is_in(candidates.implode()))
        .sort("user_id", "rank")
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32))
        .filter(pl.col("rank") <= k)
    )


def evaluate(
    model: Recommender, train: pl.DataFrame, test: pl.DataFrame, protocol: Protocol
) -> dict[str, float]:
    """Score a fitted model on test under the protocol; raises SeenItemLeak on seen items.

    random_per_user / leave_last_out: every test user ranks all items with their train items
    removed; coverage is over the train+test catalogue. cold_start_items: the same users rank
    only the held-out items (metrics prefixed `cold_`, coverage over the held-out items).
    """
    k = protocol.k
    users = test["user_id"].unique().sort().to_list()
    catalogue = _catalogue(train, test)
    if protocol.kind != "cold_start_items":
        recs = model.recommend(users, k, exclude_seen=True)
        check_no_seen_items(train, recs)
        return ranking_metrics(test, recs, k, catalogue.len())
    # Ask for the whole catalogue, then keep the held-out items: candidates are the new items only.
    full = model.recommend(users, catalogue.len(), exclude_seen=True)
    check_no_seen_items(train, full)
    cold_items = test["media_id"].unique()
    recs = _rerank_within(full, cold_items, k)
    return {
        f"{COLD_PREFIX}{name}": value
        for name, value in ranking_metrics(test, recs, k, cold_items.len()).items()
    }


def _git(*args: str, timeout_s: float) -> str:
    """A git command's stripped output in the repository; raises when git fails or is missing."""
    run = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s, check=True
    )
    return run.stdout.strip()


@functools.cache
def code_version() -> str:
    """`git rev-parse HEAD` (+ '-dirty' when tracked files differ from it), else the package version."""
    try:
        commit = _git("rev-parse", "HEAD", timeout_s=10)
        dirty = _git("status", "--porcelain", "--untracked-files=no", timeout_s=30)
        return f"{commit}-dirty" if dirty else commit
    except (OSError, subprocess.SubprocessError):
        try:
            return f"streamlake {installed_version('streamlake')}"
        except PackageNotFoundError:
            return "unknown"


@dataclass(frozen=True)
class Evaluation:
    """One model under one protocol: everything a result row must say about where it came from."""

    model: str
    params: dict[str, object]
    protocol: Protocol
    dataset_hash: str
    split_hash: str
    code_version: str
    metrics: dict[str, float]
    train_seconds: float
    train_rows: int
    test_rows: int
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """A flat, JSON-ready result: protocol sentence, seed, k, hashes, code version, metrics."""
        return {
            "model": self.model,
            "params": dict(self.params),
            **self.protocol.params(),
            "dataset_hash": self.dataset_hash,
            "split_hash": self.split_hash,
            "code_version": self.code_version,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "train_seconds": round(self.train_seconds, 3),
            "metrics": {name: round(value, 6) for name, value in self.metrics.items()},
            **self.extra,
        }


def fit_and_evaluate(model: Recommender, split: Split) -> Evaluation:
    """Fit on split.train (timed), score on split.test under split.protocol."""
    started = time.perf_counter()
    model.fit(split.train)
    seconds = time.perf_counter() - started
    scores = evaluate(model, split.train, split.test, split.protocol)
    return Evaluation(
        model=model.name,
        params=model.params(),
        protocol=split.protocol,
        dataset_hash=split.dataset_hash,
        split_hash=split.split_hash,
        code_version=code_version(),
        metrics=scores,
        train_seconds=seconds,
        train_rows=split.train.height,
        test_rows=split.test.height,
    )
