"""Pipeline health read from the lake: transcode backlog, encode speed, ASR speed, events, drift,
viewers' quality of experience.

Pure functions over the Delta tables, Dagster-free, so the API (or any exporter) can report them.
Every figure moves only when one of `SOURCE_TABLES` gets a new Delta version: a caller probes
`source_versions` (one log read per table) and recomputes `pipeline_stats` only when they differ,
so a Prometheus scrape never scans the lake.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from models.lake.tables import open_table, read_table
from models.qoe.metrics import by_device_class
from models.settings import Settings

DRIFT_TABLE = "model_drift"  # written by assets/monitoring.py; nothing is reported before it exists
QOE_TABLE = "qoe_hourly"
SOURCE_TABLES = (
    "media_items",
    "renditions",
    "asr_runs",
    "view_events",
    "events_rejected",
    DRIFT_TABLE,
    QOE_TABLE,
)


@dataclass(frozen=True)
class PipelineStats:
    """One reading of the pipeline, tagged with the source table versions it was computed from."""

    versions: tuple[int | None, ...] = ()
    media_items: int = 0
    transcode_backlog: int = 0  # ingested items without one published video rendition
    encode_fps: dict[tuple[str, str], float] = field(default_factory=dict)  # (codec, encoder) -> mean
    asr_real_time_factor: dict[str, float] = field(default_factory=dict)  # backend -> mean
    events_ingested: int = 0  # rows in view_events
    events_rejected: int = 0  # rows in events_rejected
    model_drift_psi: float | None = None  # None until model_drift has a scored row
    drift_psi_threshold: float | None = None  # the drift check's (settings), for the alert to compare
    qoe_score: dict[str, float] = field(default_factory=dict)  # device class -> latest hour's score


def source_versions(settings: Settings) -> tuple[int | None, ...]:
    """The Delta version of each source table (None where never written): the cheap change probe."""
    return tuple(None if (t := open_table(settings, name)) is None else t.version() for name in SOURCE_TABLES)


def transcode_backlog(items: pl.DataFrame, renditions: pl.DataFrame) -> int:
    """Ingested items that no published (error-free) video rendition serves yet."""
    served = renditions.filter((pl.col("kind") == "video") & pl.col("error").is_null())
    return items.join(served.select("media_id").unique(), on="media_id", how="anti").height


def encode_fps(renditions: pl.DataFrame) -> dict[tuple[str, str], float]:
    """Mean source frames encoded per wall-clock second, per codec and encoder (published video only)."""
    timed = renditions.filter(
        (pl.col("kind") == "video") & pl.col("error").is_null() & (pl.col("encode_fps") > 0)
    )
    means = timed.group_by("codec", "encoder").agg(pl.col("encode_fps").mean())
    return {(r["codec"], r["encoder"]): r["encode_fps"] for r in means.iter_rows(named=True)}


def asr_real_time_factor(runs: pl.DataFrame) -> dict[str, float]:
    """Mean seconds of recognition per second of audio, per backend (below 1: faster than real time)."""
    means = runs.drop_nulls("real_time_factor").group_by("backend").agg(pl.col("real_time_factor").mean())
    return {r["backend"]: r["real_time_factor"] for r in means.iter_rows(named=True)}


def max_drift_psi(drift: pl.DataFrame) -> float | None:
    """The largest per-feature PSI of the latest evaluation (model_drift keeps every past one)."""
    scored = drift.drop_nulls("psi")
    latest = scored.filter(pl.col("latest_end") == pl.col("latest_end").max())
    return None if latest.is_empty() else float(latest.get_column("psi").max())  # type: ignore[arg-type]


def latest_qoe(qoe: pl.DataFrame) -> dict[str, float]:
    """Session-weighted qoe_score per device class over each class's latest hour in qoe_hourly."""
    latest = qoe.filter(pl.col("hour") == pl.col("hour").max().over("device_class"))
    return {name: score for name, _, score in by_device_class(latest).iter_rows() if score is not None}


def _row_count(settings: Settings, name: str) -> int:
    """Rows in a table from its file statistics in the Delta log: no data file is read."""
    table = open_table(settings, name)
    return 0 if table is None else table.count()


def pipeline_stats(settings: Settings) -> PipelineStats:
    """Every figure at the lake's current versions (probed first: a write meanwhile shows up as a
    version change at the next probe, never as stale figures under a new version)."""
    versions = source_versions(settings)
    items = read_table(settings, "media_items", ["media_id"])
    renditions = read_table(
        settings, "renditions", ["media_id", "codec", "kind", "encoder", "encode_fps", "error"]
    )
    return PipelineStats(
        versions=versions,
        media_items=items.height,
        transcode_backlog=transcode_backlog(items, renditions),
        encode_fps=encode_fps(renditions),
        asr_real_time_factor=asr_real_time_factor(
            read_table(settings, "asr_runs", ["backend", "real_time_factor"])
        ),
        events_ingested=_row_count(settings, "view_events"),
        events_rejected=_row_count(settings, "events_rejected"),
        model_drift_psi=max_drift_psi(read_table(settings, DRIFT_TABLE, ["latest_end", "psi"])),
        drift_psi_threshold=settings.drift_psi_threshold,
        qoe_score=latest_qoe(
            read_table(settings, QOE_TABLE, ["hour", "device_class", "sessions", "qoe_score"])
        ),
    )
