"""Monitoring: drift of the recommender's inputs and scores, and the served champion's online
NDCG@10, checked against a PSI threshold; the logic lives in models.monitoring.drift."""

from datetime import timedelta

import dagster as dg

from assets.common import StreamlakeResource, markdown_table, table_asset, write_metadata
from models.lake import tables
from models.monitoring.drift import SHIFTED, STABLE, drift_report
from models.recsys.registry import champion_version, load_champion

DRIFT_CHECK_NAME = "psi_below_threshold"
DRIFT_CHECK = dg.AssetCheckKey(dg.AssetKey("model_drift"), DRIFT_CHECK_NAME)
TIME_FORMAT = "%Y-%m-%d %H:%M"


class DriftParams(dg.Config):
    window_h: float = 24.0  # each window's length; the latest one ends at the newest event
    bins: int = 10  # quantile bins of the reference window for numeric features


@table_asset(
    "monitoring",
    {"polars", "mlflow"},
    deps=["view_events", "champion_model"],
    check_specs=[
        dg.AssetCheckSpec(
            DRIFT_CHECK_NAME,
            asset="model_drift",
            blocking=True,
            description="Fails when any feature's PSI between the two windows exceeds "
            "STREAMLAKE_DRIFT_PSI_THRESHOLD (default 0.25, a significant shift); "
            "drift_retraining_sensor then requests training_job.",
        )
    ],
)
def model_drift(streamlake: StreamlakeResource, config: DriftParams) -> dg.MaterializeResult:
    """PSI of per-viewer sessions, watch time and completion rate, of title popularity and of the
    champion's top-10 scores between the latest window of view events and the equal window before
    it, plus the champion's online NDCG@10 on the latest window (each viewer's new titles against
    the top-10 from their history before it). One row per feature and evaluation, kept as history."""
    settings = streamlake.settings()
    champion = load_champion(settings) if champion_version(settings) else None
    report = drift_report(
        tables.read_table(settings, "view_events"),
        timedelta(hours=config.window_h),
        champion,
        seed=settings.seed,
        bins=config.bins,
    )
    result = tables.upsert(settings, "model_drift", report.rows())
    threshold = settings.drift_psi_threshold
    over = report.over(threshold)
    windows = report.windows
    reference_window = f"{windows.reference_start:{TIME_FORMAT}} to {windows.latest_start:{TIME_FORMAT}} UTC"
    online = (
        {"online_ndcg_at_10": round(report.online.ndcg, 4), "online_users": report.online.users}
        if report.online
        else {}
    )
    return dg.MaterializeResult(
        metadata=write_metadata(
            result,
            psi=markdown_table(
                ["feature", "kind", "PSI", "status", "reference n", "latest n"],
                (
                    (f.feature, f.kind, f"{f.psi:.4f}", f.status, f.reference_n, f.latest_n)
                    for f in report.features
                ),
            ),
            max_psi=round(report.max_psi, 4),
            threshold=threshold,
            reading=f"PSI < {STABLE} stable, {STABLE}-{SHIFTED} moderate, > {SHIFTED} shifted",
            reference_window=reference_window,
            latest_window=f"{windows.latest_start:{TIME_FORMAT}} to {windows.latest_end:{TIME_FORMAT}} UTC",
            model_version=report.model_version or "no champion yet",
            **online,
        ),
        check_results=[
            dg.AssetCheckResult(
                check_name=DRIFT_CHECK_NAME,
                passed=not over,
                metadata={
                    "max_psi": round(report.max_psi, 4),
                    "threshold": threshold,
                    "over_threshold": ", ".join(over) or "none",
                },
            )
        ],
    )
