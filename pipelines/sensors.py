"""Sensors: the inbox watcher (new files become media partitions) and the catalog refresh."""

import dagster as dg

from assets.common import StreamlakeResource, media_partitions
from models.media.library import admit
from pipelines.jobs import analytics_job, media_job

SETTLE_S = 5.0  # a file untouched this long is taken as fully written


@dg.sensor(job=media_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def inbox_sensor(context: dg.SensorEvaluationContext, streamlake: StreamlakeResource) -> dg.SensorResult:
    """Hash and move settled inbox files into the library; one partition and one run per new item."""
    settings = streamlake.settings()
    settings.ensure_dirs()
    admitted = admit(settings.inbox, settings.library, min_age_s=SETTLE_S)
    known = set(context.instance.get_dynamic_partitions(media_partitions.name))
    new = sorted({item.media_id for item in admitted} - known)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=key, run_key=key) for key in new],
        dynamic_partitions_requests=[media_partitions.build_add_request(new)] if new else [],
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[media_job],
    request_job=analytics_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def catalog_refresh_sensor(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """After an item is processed, refresh events, features, models and API snapshots."""
    return dg.RunRequest(run_key=f"after-{context.dagster_run.run_id}")
