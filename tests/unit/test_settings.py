"""Profiles: local by default, every engine switched by its usual environment variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.settings import REPO_ROOT, get_settings


def test_local_defaults_keep_everything_under_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (
        "STREAMLAKE_DATA_DIR",
        "STREAMLAKE_LAKE_ROOT",
        "MLFLOW_TRACKING_URI",
        "RAY_ADDRESS",
        "SPARK_REMOTE",
    ):
        monkeypatch.delenv(key, raising=False)
    settings = get_settings()
    assert settings.profile == "local"
    assert settings.data_dir == REPO_ROOT / "data"
    assert settings.lake_root == str(REPO_ROOT / "data" / "lake")
    assert settings.mlflow_uri == f"sqlite:///{REPO_ROOT / 'data' / 'mlflow.db'}"
    assert (settings.ray_address, settings.spark_remote, settings.storage_options) == (None, None, {})


def test_cluster_engines_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMLAKE_PROFILE", "cluster")
    monkeypatch.setenv("STREAMLAKE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STREAMLAKE_LAKE_ROOT", "s3://media-lake/prod")
    monkeypatch.setenv("STREAMLAKE_LAKE_STORAGE_OPTIONS", '{"AWS_REGION": "eu-west-1"}')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    monkeypatch.setenv("SPARK_REMOTE", "sc://spark:15002")
    settings = get_settings()
    assert settings.profile == "cluster"
    assert settings.lake_root == "s3://media-lake/prod"
    assert settings.storage_options == {"AWS_REGION": "eu-west-1"}
    assert settings.mlflow_uri == "http://mlflow.internal:5000"
    assert (settings.ray_address, settings.spark_remote) == ("ray://head:10001", "sc://spark:15002")
    assert settings.media_root == tmp_path / "media"


def test_offline_variables_are_set_without_overriding_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    get_settings()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"


def test_unknown_profile_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLAKE_PROFILE", "prod-ish")
    with pytest.raises(ValueError, match="profile"):
        get_settings()
