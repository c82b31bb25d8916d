"""Schedules: hourly aggregates, daily training, and a drift report half a day after training."""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import hourly_stats_job, monitoring_job, training_job

hourly_stats_schedule = dg.ScheduleDefinition(
    job=hourly_stats_job, cron_schedule="5 * * * *", execution_timezone="UTC"
)
daily_training_schedule = dg.ScheduleDefinition(
    job=training_job, cron_schedule="30 3 * * *", execution_timezone="UTC"
)
# Half a day after the nightly training: a drifted day is retrained (drift_retraining_sensor)
# before the next nightly run rather than served on for a whole day.
daily_drift_schedule = dg.ScheduleDefinition(
    job=monitoring_job, cron_schedule="30 15 * * *", execution_timezone="UTC"
)
