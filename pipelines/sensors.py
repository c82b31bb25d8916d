"""Sensors: the inbox watcher (new files become media partitions), the catalog refresh, and
retraining when the model drift check fails."""

import dagster as dg

from assets.common import StreamlakeResource, media_partitions
from assets.monitoring import DRIFT_CHECK
from models.lake.tables import open_table
from models.media.library import admit, stored_ids
from pipelines.jobs import analytics_job, media_job, training_job

SETTLE_S = 5.0  # a file untouched this long is taken as fully written


@dg.sensor(job=media_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def inbox_sensor(context: dg.SensorEvaluationContext, streamlake: StreamlakeResource) -> dg.SensorResult:
    """Hash and move settled inbox files into the library; one partition and one run per new item."""
    settings = streamlake.settings()
    settings.ensure_dirs()
    admit(settings.inbox, settings.library, min_age_s=SETTLE_S, quarantine_dir=settings.quarantine_dir)
    known = set(context.instance.get_dynamic_partitions(media_partitions.name))
    new = [key for key in stored_ids(settings.library) if key not in known]  # also heals a failed tick
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=key, run_key=key) for key in new],
        dynamic_partitions_requests=[media_partitions.build_add_request(new)] if new else [],
    )


IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _in_flight(context: dg.SensorEvaluationContext, *jobs: str) -> dg.SkipReason | None:
    """A reason to wait while any of these jobs has a run queued or going, else None."""
    for job in jobs:
        if context.instance.get_runs(filters=dg.RunsFilter(job_name=job, statuses=IN_FLIGHT), limit=1):
            return dg.SkipReason(f"{job} runs in flight; waiting for them to finish")
    return None


@dg.sensor(job=analytics_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def catalog_refresh_sensor(
    context: dg.SensorEvaluationContext, streamlake: StreamlakeResource
) -> dg.RunRequest | dg.SkipReason:
    """Once media runs have settled, refresh events, features, models and API snapshots.

    One analytics run per new media_items version, and none while media runs are in flight or
    another analytics run is going: a batch of uploads gives one refresh, and concurrent
    refreshes never race on the MLflow registry or the Feast registry.
    """
    table = open_table(streamlake.settings(), "media_items")
    if table is None:
        return dg.SkipReason("no media ingested yet")
    version = str(table.version())
    if context.cursor == version:
        return dg.SkipReason(f"catalog unchanged since media_items v{version}")
    if busy := _in_flight(context, "media_job", "analytics_job"):
        return busy
    context.update_cursor(version)
    return dg.RunRequest(run_key=f"catalog-v{version}")


@dg.sensor(job=training_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def drift_retraining_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Request training_job when the latest model_drift check failed: once per failing evaluation.

    The cursor holds the id of the check evaluation already acted on, so a failed check asks for
    one retrain however many ticks see it, and only a new failing evaluation asks again. It waits
    while analytics or training runs are in flight: they train too, and must not race this one on
    the MLflow registry.
    """
    record = context.instance.get_latest_asset_check_evaluation_record(DRIFT_CHECK)
    evaluation = record.evaluation if record else None  # None while the check is only planned
    if record is None or evaluation is None or evaluation.passed:
        return dg.SkipReason("the latest drift check did not fail")
    if context.cursor == str(record.id):
        return dg.SkipReason(f"retraining already requested for drift evaluation {record.id}")
    if busy := _in_flight(context, "analytics_job", "training_job"):
        return busy
    context.update_cursor(str(record.id))
    return dg.RunRequest(run_key=f"drift-{record.id}", tags={"streamlake/trigger": "model_drift"})
