"""The Dagster UI explains itself: every asset says what it is, whose it is and where it belongs,
every check says what it checks; and the drift loop is wired so it cannot feed itself."""

from __future__ import annotations

import dagster as dg
import pytest

from pipelines.definitions import defs

GRAPH = defs.resolve_asset_graph()


@pytest.mark.parametrize("key", sorted(GRAPH.get_all_asset_keys()), ids=dg.AssetKey.to_user_string)
def test_every_asset_has_a_description_group_and_owner(key: dg.AssetKey) -> None:
    node = GRAPH.get(key)
    assert node.description and node.description.strip(), f"{key} has no description"
    assert node.group_name != "default", f"{key} has no group"
    assert node.owners, f"{key} has no owner"
    assert node.kinds, f"{key} has no kinds"


@pytest.mark.parametrize("key", sorted(GRAPH.asset_check_keys), ids=dg.AssetCheckKey.to_user_string)
def test_every_asset_check_has_a_description(key: dg.AssetCheckKey) -> None:
    spec = GRAPH.get_check_spec(key)
    assert spec.description and spec.description.strip(), f"{key} has no description"


def test_aggregates_carry_a_freshness_policy() -> None:
    for name in ("hourly_stats", "user_stats", "co_watch"):
        assert GRAPH.get(dg.AssetKey(name)).freshness_policy is not None, name


def test_drift_is_checked_and_retrains_without_feeding_itself() -> None:
    from assets.monitoring import DRIFT_CHECK

    assert GRAPH.get_check_spec(DRIFT_CHECK).blocking
    drift = dg.AssetKey("model_drift")
    selected = {
        name: defs.resolve_job_def(name).asset_layer.selected_asset_keys
        for name in ("analytics_job", "monitoring_job", "training_job")
    }
    assert drift in selected["analytics_job"], "make demo (analytics_job) materializes the drift report"
    assert drift in selected["monitoring_job"]
    assert drift not in selected["training_job"], "the retrain the sensor requests must not re-measure drift"
    assert defs.resolve_sensor_def("drift_retraining_sensor").job_name == "training_job"
    assert defs.resolve_schedule_def("monitoring_job_schedule").job_name == "monitoring_job"
