"""Schedules: hourly aggregates, daily training."""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import hourly_stats_job, training_job

hourly_stats_schedule = dg.ScheduleDefinition(
    job=hourly_stats_job, cron_schedule="5 * * * *", execution_timezone="UTC"
)
daily_training_schedule = dg.ScheduleDefinition(
    job=training_job, cron_schedule="30 3 * * *", execution_timezone="UTC"
)
