"""Model drift: PSI against hand-computed cases, online NDCG by hand, the blocking check on
simulated windows (shifted and not), and the retraining sensor asking once per failing check."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import polars as pl
import pytest

from assets.common import StreamlakeResource
from assets.monitoring import DRIFT_CHECK, model_drift
from models.events.simulator import SimulationConfig, simulate_events, simulate_users
from models.lake import tables
from models.monitoring.drift import (
    EPSILON,
    Windows,
    categorical_psi,
    drift_report,
    numeric_psi,
    online_ndcg,
    psi_from_shares,
    status,
)
from models.recsys.base import Recommender
from models.recsys.data import interactions_from_events
from models.recsys.metrics import ndcg_at_k
from models.recsys.popularity import TopPop
from models.recsys.registry import Champion
from models.settings import get_settings
from pipelines.definitions import defs
from pipelines.jobs import training_job
from pipelines.sensors import drift_retraining_sensor

# (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
HALVES_TO_QUARTERS = 0.25 * math.log(2) + 0.25 * math.log(1.5)


def test_psi_from_shares_by_hand() -> None:
    assert psi_from_shares(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(HALVES_TO_QUARTERS)
    assert psi_from_shares(np.array([0.2, 0.3, 0.5]), np.array([0.2, 0.3, 0.5])) == 0.0
    # an empty reference bin counts as EPSILON, not zero: finite, and large
    empty = psi_from_shares(np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    assert empty == pytest.approx(-0.5 * math.log(0.5) + (0.5 - EPSILON) * math.log(0.5 / EPSILON))


def test_numeric_psi_bins_at_reference_deciles() -> None:
    reference = np.arange(100.0)
    assert numeric_psi(reference, reference.copy()) == 0.0
    # everything in the top decile: nine bins go from 0.1 to EPSILON, the last from 0.1 to 1
    top = numeric_psi(reference, np.arange(90.0, 100.0))
    assert top == pytest.approx(9 * (EPSILON - 0.1) * math.log(EPSILON / 0.1) + 0.9 * math.log(10))
    # a two-valued feature: repeated decile edges collapse to two populated bins
    ones_twos = numeric_psi(np.repeat([1.0, 2.0], 50), np.repeat([1.0, 2.0], [25, 75]))
    assert ones_twos == pytest.approx(HALVES_TO_QUARTERS)
    with pytest.raises(ValueError, match="both windows"):
        numeric_psi(reference, np.array([]))


def test_categorical_psi_by_hand() -> None:
    assert categorical_psi(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(HALVES_TO_QUARTERS)
    new_title = categorical_psi(["a", "a"], ["a", "c"])
    assert new_title == pytest.approx(-0.5 * math.log(0.5) + (0.5 - EPSILON) * math.log(0.5 / EPSILON))


def test_status_thresholds() -> None:
    assert [status(p) for p in (0.05, 0.1, 0.25, 0.26)] == ["stable", "moderate", "moderate", "shifted"]


def test_online_ndcg_serves_from_history_before_the_window() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    history = pl.DataFrame({"user_id": ["u1"], "media_id": ["a"], "ts": [t0]})
    latest = pl.DataFrame({"user_id": ["u1", "u1", "u2"], "media_id": ["b", "c", "a"], "ts": [t0] * 3})
    ranked = pl.DataFrame({"user_id": ["u1"] * 4, "rank": [1, 2, 3, 4], "media_id": ["a", "b", "d", "c"]})
    result = online_ndcg(ranked, history, latest, k=2)
    # u1 already watched a: served b, d; new titles b, c. u2 has no history: not counted.
    assert result.users == 1
    assert result.ndcg == pytest.approx(1.0 / (1.0 + 1.0 / math.log2(3)))


CATALOG = pl.DataFrame(
    {
        "media_id": [f"m{i:03d}" for i in range(30)],
        "duration_s": [20.0 + 7 * i for i in range(30)],
        "tags": [[("drama", "comedy", "documentary")[i % 3]] for i in range(30)],
    }
)
USERS = 200
DAY = SimulationConfig(n_users=USERS, days=1, sessions_per_user=3.0)


def _steady() -> pl.DataFrame:
    """Two days of one viewing process: each day's sessions are a different draw of the same one."""
    config = SimulationConfig(n_users=USERS, days=2, sessions_per_user=6.0)
    return simulate_events(CATALOG, simulate_users(config), config)


def _shifted() -> pl.DataFrame:
    """A day like DAY, then a day for the same viewers with flatter popularity and most sessions
    finished (the same hashed draws, so only the config's change moves anything)."""
    users = simulate_users(DAY)
    changed = SimulationConfig(n_users=USERS, days=1, sessions_per_user=3.0, zipf_a=0.5, completion_rate=0.9)
    second = simulate_events(CATALOG, users, changed).with_columns(
        pl.col("ts") + timedelta(days=1), pl.col("event_id") + "-2", pl.col("session_id") + "-2"
    )
    return pl.concat([simulate_events(CATALOG, users, DAY), second])


def _lake(tmp_path: Path, name: str, events: pl.DataFrame) -> StreamlakeResource:
    settings = get_settings(data_dir=tmp_path / name)
    tables.upsert(settings, "view_events", events)
    return StreamlakeResource(data_dir=str(settings.data_dir))


class _Served:
    """What Champion wraps (an MLflow pyfunc model), around a fitted recommender."""

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender

    def unwrap_python_model(self) -> _Served:
        return self

    def predict(self, request: pd.DataFrame) -> pd.DataFrame:
        return self.recommender.recommend(request["user_id"].tolist(), int(request["k"].max())).to_pandas()


def test_a_champion_fitted_on_the_history_scores_online_as_it_would_be_served() -> None:
    """Fitted on exactly the events before the window, the champion's own seen-item exclusion is
    the history's: online NDCG@10 must equal NDCG@10 of its served lists against the new titles."""
    events = _steady()
    _, latest, history = Windows.ending_at_newest(events, timedelta(days=1)).split(events)
    champion = Champion("7", _Served(TopPop().fit(interactions_from_events(history))))
    report = drift_report(events, timedelta(days=1), champion)
    assert report.features[-1].feature == "champion_score" and report.model_version == "7"
    truth = latest.join(history, on=["user_id", "media_id"], how="anti").join(
        history, on="user_id", how="semi"
    )
    served = champion.recommend(truth["user_id"].unique().to_list(), 10)
    assert report.online is not None and report.online.users == truth["user_id"].n_unique() > 0
    assert report.online.ndcg == pytest.approx(ndcg_at_k(truth, served, 10))
    assert {row["online_ndcg_at_10"] for row in report.rows()} == {round(report.online.ndcg, 6)}


def _drift_check_passed(instance: dg.DagsterInstance, streamlake: StreamlakeResource) -> bool:
    result = dg.materialize(
        [model_drift], instance=instance, resources={"streamlake": streamlake}, raise_on_error=False
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.asset_check_key == DRIFT_CHECK
    return evaluation.passed


def test_drift_check_and_retraining_sensor(tmp_path: Path) -> None:
    steady, shifted = _lake(tmp_path, "steady", _steady()), _lake(tmp_path, "shifted", _shifted())
    with dg.instance_for_test() as instance:
        assert _drift_check_passed(instance, steady)
        rows = tables.read_table(get_settings(data_dir=steady.data_dir), "model_drift")
        assert set(rows["feature"]) == {
            "user_sessions",
            "user_watch_time_s",
            "user_completion_rate",
            "item_views",
        }
        assert (rows["psi"] < 0.25).all() and rows["online_ndcg_at_10"].is_null().all()  # no champion
        context = dg.build_sensor_context(instance=instance)
        assert isinstance(drift_retraining_sensor(context), dg.SkipReason)

        assert not _drift_check_passed(instance, shifted)
        training = instance.create_run_for_job(defs.resolve_job_def("training_job"))  # queued: wait
        waiting = drift_retraining_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
        assert isinstance(waiting, dg.SkipReason) and "training_job runs in flight" in str(
            waiting.skip_message
        )
        instance.report_run_canceled(training)
        context = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        request = drift_retraining_sensor(context)
        assert isinstance(request, dg.RunRequest) and request.run_key
        assert drift_retraining_sensor.job_name == training_job.name
        again = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        assert isinstance(drift_retraining_sensor(again), dg.SkipReason), "one request per failing evaluation"

        assert not _drift_check_passed(instance, shifted)  # a new failing evaluation asks again
        context = dg.build_sensor_context(instance=instance, cursor=again.cursor)
        second = drift_retraining_sensor(context)
        assert isinstance(second, dg.RunRequest) and second.run_key != request.run_key
