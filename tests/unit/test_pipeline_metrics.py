"""Pipeline gauges from the lake: backlog, encode and ASR speed, event counts, drift; and their export."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.lake import tables
from models.lake.schemas import ALL_TABLES
from models.observability import pipeline_metrics as pm
from models.settings import Settings
from serving.metrics import Metrics

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def put(settings: Settings, name: str, rows: list[dict]) -> None:
    """Upsert rows naming only some of the table's columns; the rest are null."""
    columns = ALL_TABLES[name].schema.names
    tables.upsert(settings, name, [{column: row.get(column) for column in columns} for row in rows])


ENCODERS = {"h264": "libx264", "av1": "libsvtav1", "aac": "aac"}


def rendition(media_id: str, codec: str, fps: float, kind: str = "video", error: str | None = None) -> dict:
    return {"media_id": media_id, "rung": "720p", "codec": codec, "kind": kind, "encoder": ENCODERS[codec],
            "encode_fps": fps, "error": error}  # fmt: skip


@pytest.fixture
def busy_lake(lake: Settings) -> Settings:
    """Four items: one fully packaged, one audio-only so far, one whose video failed, one untouched;
    two ASR timings, three stored events and one rejected, two drift windows."""
    put(lake, "media_items", [{"media_id": m, "status": "ready"} for m in ("a", "b", "c", "d")])
    renditions = [
        rendition("a", "h264", 100.0),
        {**rendition("a", "av1", 20.0), "rung": "1080p"},
        rendition("b", "aac", 0.0, kind="audio"),
        rendition("c", "h264", 0.0, error="ffmpeg died"),
    ]
    put(lake, "renditions", renditions)
    runs = [("a", "faster-whisper", 0.1), ("b", "faster-whisper", 0.3), ("c", "openai-whisper", 2.0)]
    put(
        lake,
        "asr_runs",
        [{"media_id": m, "model": "tiny", "backend": b, "real_time_factor": r} for m, b, r in runs],
    )
    events = [{"event_id": f"e{i}", "user_id": "u1", "media_id": "a", "ts": NOW} for i in range(3)]
    put(lake, "view_events", events)
    put(lake, "events_rejected", [{"event_id": "bad", "reason": "ts: missing", "received_at": NOW}])
    older, latest = datetime(2025, 12, 31, tzinfo=UTC), NOW
    drift = [
        ("watch_time", older, 0.9),
        ("genre", older, 0.1),
        ("watch_time", latest, 0.05),
        ("genre", latest, 0.31),
    ]
    put(lake, pm.DRIFT_TABLE, [{"feature": f, "latest_end": end, "psi": psi} for f, end, psi in drift])
    return lake


def test_pipeline_stats_read_the_lake(busy_lake: Settings) -> None:
    stats = pm.pipeline_stats(busy_lake)
    assert stats.media_items == 4
    assert stats.transcode_backlog == 3  # b (audio only), c (video failed), d (nothing yet)
    assert stats.encode_fps == {("h264", "libx264"): 100.0, ("av1", "libsvtav1"): 20.0}
    assert stats.asr_real_time_factor == pytest.approx({"faster-whisper": 0.2, "openai-whisper": 2.0})
    assert (stats.events_ingested, stats.events_rejected) == (3, 1)
    assert stats.model_drift_psi == pytest.approx(0.31)  # the latest window's largest, not the older 0.9
    assert stats.versions == pm.source_versions(busy_lake)


def test_versions_move_only_when_a_source_table_is_written(busy_lake: Settings) -> None:
    before = pm.source_versions(busy_lake)
    put(busy_lake, "media_items", [{"media_id": "a", "status": "ready"}])  # unchanged row: no commit
    assert pm.source_versions(busy_lake) == before
    put(busy_lake, "renditions", [rendition("d", "h264", 50.0)])
    assert pm.source_versions(busy_lake) != before
    assert pm.pipeline_stats(busy_lake).transcode_backlog == 2


def test_an_empty_lake_reports_zeros_and_no_drift(lake: Settings) -> None:
    stats = pm.pipeline_stats(lake)
    expected = pm.PipelineStats(versions=(None,) * len(pm.SOURCE_TABLES), drift_psi_threshold=0.25)
    assert stats == expected  # the threshold is the setting: an alert can compare with it at once
    assert stats.model_drift_psi is None


def test_drift_ignores_features_without_a_psi() -> None:
    drift = pl.DataFrame({"latest_end": [NOW, NOW, None], "psi": [0.2, None, 0.9]})
    assert pm.max_drift_psi(drift.drop_nulls("latest_end")) == 0.2
    assert pm.max_drift_psi(drift.head(0)) is None


def test_metrics_export_the_pipeline_gauges(busy_lake: Settings) -> None:
    registry = Metrics()
    assert b"streamlake_transcode_backlog" not in registry.render()  # nothing before the first reading
    registry.pipeline.stats = pm.pipeline_stats(busy_lake)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(registry.render().decode())
        for sample in family.samples
    }
    assert samples[("streamlake_media_items", ())] == 4
    assert samples[("streamlake_transcode_backlog", ())] == 3
    assert samples[("streamlake_encode_fps", (("codec", "av1"), ("encoder", "libsvtav1")))] == 20.0
    assert samples[("streamlake_asr_real_time_factor", (("backend", "openai-whisper"),))] == 2.0
    assert samples[("streamlake_events_ingested", ())] == 3
    assert samples[("streamlake_events_rejected", ())] == 1
    assert samples[("streamlake_model_drift_psi", ())] == pytest.approx(0.31)
