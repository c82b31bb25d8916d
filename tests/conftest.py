"""Shared fixtures: the whole asset graph materialized once per session on the sample library."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.settings import Settings, get_settings


@pytest.fixture(scope="session")
def pipeline_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A temp data dir with the sample library ingested and every asset materialized."""
    from pipelines.cli import materialize_all, seed_samples

    data_dir = tmp_path_factory.mktemp("lake")
    saved = {k: os.environ.get(k) for k in ("STREAMLAKE_DATA_DIR", "DAGSTER_HOME")}
    os.environ["STREAMLAKE_DATA_DIR"] = str(data_dir)
    settings = get_settings()
    seed_samples(settings)
    # the MovieLens-100K evaluation (minutes of tuning) is covered by its own tests and by `make demo`
    assert materialize_all(settings, evaluation=False), "the sample library did not materialize cleanly"
    yield settings
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture()
def lake(tmp_path: Path) -> Settings:
    """An empty lake in a temp dir, for unit tests of table code."""
    return get_settings(data_dir=tmp_path)
