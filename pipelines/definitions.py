"""The Dagster code location: every asset, check, job, schedule and sensor of Streamlake."""

from __future__ import annotations

import dagster as dg

from assets import (
    analysis,
    content,
    datasets,
    events,
    features,
    ingest,
    monitoring,
    qoe,
    serving,
    training,
    transcode,
)
from models.settings import apply_offline_env
from pipelines.jobs import (
    analytics_job,
    hourly_stats_job,
    media_job,
    ml100k_evaluation_job,
    monitoring_job,
    training_job,
)
from pipelines.resources import resources
from pipelines.schedules import daily_drift_schedule, daily_training_schedule, hourly_stats_schedule
from pipelines.sensors import catalog_refresh_sensor, drift_retraining_sensor, inbox_sensor

apply_offline_env()

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [ingest, transcode, analysis, content, datasets, events, qoe, features, training, serving, monitoring]
    ),
    asset_checks=[ingest.media_items_expectations],
    jobs=[media_job, analytics_job, hourly_stats_job, training_job, ml100k_evaluation_job, monitoring_job],
    schedules=[hourly_stats_schedule, daily_training_schedule, daily_drift_schedule],
    sensors=[inbox_sensor, catalog_refresh_sensor, drift_retraining_sensor],
    resources=resources(),
)
