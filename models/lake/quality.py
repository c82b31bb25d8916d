"""Great Expectations suites for lake tables, run as blocking asset checks by the pipeline."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.media.probe import MAX_DIMENSION, MAX_FPS

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class QualityReport:
    success: bool
    evaluated: int
    failures: list[str]


def _media_items_suite(gx):  # -> gx.ExpectationSuite
    e = gx.expectations
    suite = gx.ExpectationSuite(name="media_items")
    for expectation in (
        e.ExpectColumnValuesToNotBeNull(column="media_id"),
        e.ExpectColumnValuesToBeUnique(column="media_id"),
        e.ExpectColumnValuesToMatchRegex(column="media_id", regex=r"^[0-9a-f]{16}$"),
        e.ExpectColumnValuesToBeBetween(column="duration_s", min_value=0, strict_min=True),
        e.ExpectColumnValuesToBeBetween(column="width", min_value=16, max_value=MAX_DIMENSION),
        e.ExpectColumnValuesToBeBetween(column="height", min_value=16, max_value=MAX_DIMENSION),
        e.ExpectColumnValuesToBeBetween(column="fps", min_value=0, max_value=MAX_FPS, strict_min=True),
        e.ExpectColumnValuesToNotBeNull(column="video_codec"),
    ):
        suite.add_expectation(expectation)
    return suite


def validate_media_items(frame: pd.DataFrame) -> QualityReport:
    """Run the media_items suite; failures name the expectation, column and unexpected count."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("lake")
        .add_dataframe_asset("media_items")
        .add_batch_definition_whole_dataframe("snapshot")
    )
    result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(
        _media_items_suite(gx)
    )
    failures = [
        f"{r.expectation_config.type}({r.expectation_config.kwargs.get('column')}): "
        f"{r.result.get('unexpected_count', '?')} unexpected"
        for r in result.results
        if not r.success
    ]
    return QualityReport(bool(result.success), len(result.results), failures)
