"""Model drift: how far the latest window of viewing moved from the window before it, and how well
the served champion ranks what viewers watched next.

PSI (population stability index) per feature is sum((a - e) * ln(a / e)) over bins, e the
reference window's shares and a the latest window's, each clipped below at EPSILON so that an
empty bin scores finitely instead of infinitely. Numeric features are binned at the reference
window's deciles (repeated edges merged, so a discrete feature gets fewer bins); categorical ones
(which title a session played) per category. The usual reading: below 0.1 stable, 0.1 to 0.25 a
moderate shift worth watching, above 0.25 a significant one (the blocking check's default).

Both windows have the same length and end at the newest event (not wall-clock now), so per-user
counts compare like with like and a re-run over the same events gives the same numbers. A session
belongs to the window it started in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import polars as pl

from models.events.aggregates import sessions, user_stats
from models.recsys.metrics import ndcg_at_k
from models.recsys.registry import Champion

STABLE = 0.1  # below: no meaningful shift
SHIFTED = 0.25  # above: a significant shift (the default threshold of the drift check)
EPSILON = 1e-4
BINS = 10
K = 10
SCORE_SAMPLE = 1000  # users per window whose champion scores are compared (seeded sample)
Kind = Literal["numeric", "categorical"]
# Per-viewer features from models.events.aggregates.user_stats: name in the report -> column.
USER_FEATURES = {
    "user_sessions": "sessions",
    "user_watch_time_s": "watch_time_s",
    "user_completion_rate": "completion_rate",
}


def psi_from_shares(expected: np.ndarray, actual: np.ndarray, eps: float = EPSILON) -> float:
    """sum((a - e) * ln(a / e)) over bins whose shares are given, each share at least eps."""
    e = np.clip(np.asarray(expected, dtype=np.float64), eps, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), eps, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(reference: np.ndarray, latest: np.ndarray, bins: int = BINS, eps: float = EPSILON) -> float:
    """PSI over the reference sample's quantile bins (open-ended outer bins catch new extremes)."""
    reference, latest = np.asarray(reference, dtype=np.float64), np.asarray(latest, dtype=np.float64)
    if reference.size == 0 or latest.size == 0:
        raise ValueError("PSI needs values in both windows")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    n_bins = edges.size + 1
    shares = [
        np.bincount(np.searchsorted(edges, x, side="right"), minlength=n_bins) / x.size
        for x in (reference, latest)
    ]
    return psi_from_shares(shares[0], shares[1], eps)


def categorical_psi(reference: Sequence[str], latest: Sequence[str], eps: float = EPSILON) -> float:
    """PSI over categories: each one's share of the reference and of the latest window."""
    if len(reference) == 0 or len(latest) == 0:
        raise ValueError("PSI needs values in both windows")
    counts = (
        pl.concat(
            [
                pl.DataFrame({"value": list(reference), "window": "reference"}),
                pl.DataFrame({"value": list(latest), "window": "latest"}),
            ]
        )
        .group_by("value", "window")
        .len()
        .pivot("window", index="value", values="len")
        .fill_null(0)
        .sort("value")  # a fixed summation order: re-runs give bit-identical rows
    )
    expected, actual = (counts[w].to_numpy() / counts[w].sum() for w in ("reference", "latest"))
    return psi_from_shares(expected, actual, eps)


def status(psi: float) -> str:
    """stable (< 0.1), moderate (0.1 to 0.25) or shifted (> 0.25)."""
    return "stable" if psi < STABLE else "moderate" if psi <= SHIFTED else "shifted"


@dataclass(frozen=True)
class Windows:
    """[reference_start, latest_start) and [latest_start, latest_end): equal lengths, back to back."""

    reference_start: datetime
    latest_start: datetime
    latest_end: datetime

    @classmethod
    def ending_at_newest(cls, events: pl.DataFrame, length: timedelta) -> Windows:
        """Two windows of `length`, the latest ending just after the newest event."""
        if events.is_empty():
            raise ValueError("no view events to measure drift on")
        end: datetime = events.select(pl.col("ts").max()).item() + timedelta(microseconds=1)
        return cls(end - 2 * length, end - length, end)

    def split(self, events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """(reference, latest, history): events of the sessions started in each window, and of
        every session started before the latest window (what the champion could have known)."""
        started = sessions(events.lazy()).select("session_id", "started_at").collect()
        events = events.join(started, on="session_id")
        at = pl.col("started_at")
        reference = events.filter(at >= self.reference_start, at < self.latest_start)
        latest = events.filter(at >= self.latest_start, at < self.latest_end)
        history = events.filter(at < self.latest_start)
        return reference.drop("started_at"), latest.drop("started_at"), history.drop("started_at")


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: Kind
    psi: float
    reference_n: int
    latest_n: int

    @property
    def status(self) -> str:
        return status(self.psi)


def window_features(events: pl.DataFrame) -> dict[str, pl.Series]:
    """One window's features: per-viewer sessions, watch time and completion rate (the user_stats
    aggregate over the window) and the title of every session (item popularity)."""
    per_user = user_stats(events.lazy()).collect()
    played = sessions(events.lazy()).select("media_id").drop_nulls().collect()
    return {
        **{name: per_user[column].drop_nulls() for name, column in USER_FEATURES.items()},
        "item_views": played["media_id"],
    }


def feature_drift(reference: pl.DataFrame, latest: pl.DataFrame, bins: int = BINS) -> list[FeatureDrift]:
    """PSI of every window feature between two windows of events."""
    before, after = window_features(reference), window_features(latest)
    drifts = []
    for name in before:
        kind: Kind = "categorical" if before[name].dtype == pl.String else "numeric"
        if kind == "categorical":
            psi = categorical_psi(before[name].to_list(), after[name].to_list())
        else:
            psi = numeric_psi(before[name].to_numpy(), after[name].to_numpy(), bins)
        drifts.append(FeatureDrift(name, kind, psi, before[name].len(), after[name].len()))
    return drifts


def _sample(users: pl.Series, n: int, seed: int) -> list[str]:
    """At most n distinct users, sorted first so the sample depends only on the set and the seed."""
    distinct = users.drop_nulls().unique().sort()
    return distinct.sample(min(n, distinct.len()), seed=seed).sort().to_list()


def score_drift(
    champion: Champion, reference: pl.DataFrame, latest: pl.DataFrame, seed: int, bins: int = BINS, k: int = K
) -> FeatureDrift:
    """PSI of the champion's top-k scores for a seeded sample of each window's viewers."""
    scores = [
        champion.recommend(_sample(window["user_id"], SCORE_SAMPLE, seed), k)["score"].to_numpy()
        for window in (reference, latest)
    ]
    psi = numeric_psi(scores[0], scores[1], bins)
    return FeatureDrift("champion_score", "numeric", psi, scores[0].size, scores[1].size)


@dataclass(frozen=True)
class OnlineNdcg:
    ndcg: float
    users: int  # viewers with history before the window who started a new title in it


def online_ndcg(ranked: pl.DataFrame, history: pl.DataFrame, latest: pl.DataFrame, k: int = K) -> OnlineNdcg:
    """NDCG@k of a ranking against the titles each viewer started for the first time in the latest
    window, for viewers seen before it.

    ranked (user_id, rank, media_id) is the champion's ranking with nothing excluded; the titles a
    viewer started before the window are removed here and the rest re-ranked, so the top-k is the
    list the viewer would have been served from their history before the window.
    """
    seen = history.select("user_id", "media_id").unique()
    truth = (
        latest.select("user_id", "media_id")
        .unique()
        .join(seen.select("user_id").unique(), on="user_id", how="semi")
        .join(seen, on=["user_id", "media_id"], how="anti")
    )
    served = (
        ranked.join(seen, on=["user_id", "media_id"], how="anti")
        .sort("user_id", "rank")
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id"))
        .filter(pl.col("rank") <= k)
    )
    return OnlineNdcg(ndcg_at_k(truth, served, k), truth["user_id"].n_unique())


def champion_online_ndcg(
    champion: Champion, history: pl.DataFrame, latest: pl.DataFrame, k: int = K
) -> OnlineNdcg:
    """online_ndcg of the served champion: ranked deep enough that k titles survive each viewer's
    history."""
    users = latest.join(history, on="user_id", how="semi")["user_id"].unique().sort().to_list()
    if not users:
        return OnlineNdcg(0.0, 0)
    most_seen: int = (
        history.group_by("user_id").agg(pl.col("media_id").n_unique()).select(pl.col("media_id").max()).item()
    )
    return online_ndcg(champion.rank(users, k + most_seen), history, latest, k)


@dataclass(frozen=True)
class DriftReport:
    windows: Windows
    features: list[FeatureDrift]
    online: OnlineNdcg | None  # None without a champion
    model_version: str | None

    @property
    def max_psi(self) -> float:
        return max(f.psi for f in self.features)

    def over(self, threshold: float) -> list[str]:
        """Features whose PSI exceeds the threshold: what fails the drift check."""
        return [f.feature for f in self.features if f.psi > threshold]

    def rows(self) -> list[dict[str, object]]:
        """The model_drift table's rows: one per feature, the evaluation's window and NDCG on each."""
        return [
            {
                "feature": f.feature,
                "latest_end": self.windows.latest_end,
                "kind": f.kind,
                "psi": round(f.psi, 6),
                "status": f.status,
                "reference_start": self.windows.reference_start,
                "latest_start": self.windows.latest_start,
                "reference_n": f.reference_n,
                "latest_n": f.latest_n,
                "online_ndcg_at_10": None if self.online is None else round(self.online.ndcg, 6),
                "online_users": None if self.online is None else self.online.users,
                "model_version": self.model_version,
            }
            for f in self.features
        ]


def drift_report(
    events: pl.DataFrame,
    length: timedelta,
    champion: Champion | None = None,
    seed: int = 42,
    bins: int = BINS,
) -> DriftReport:
    """Feature PSI between the two windows ending at the newest event; with a champion, also its
    score PSI and online NDCG@10 on the latest window."""
    windows = Windows.ending_at_newest(events, length)
    reference, latest, history = windows.split(events)
    if reference.is_empty() or latest.is_empty():
        raise ValueError(
            f"drift needs sessions in both windows of {length}: {reference.height} events in "
            f"[{windows.reference_start}, {windows.latest_start}), {latest.height} after"
        )
    features = feature_drift(reference, latest, bins)
    if champion is None:
        return DriftReport(windows, features, None, None)
    features.append(score_drift(champion, reference, latest, seed, bins))
    return DriftReport(windows, features, champion_online_ndcg(champion, history, latest), champion.version)
