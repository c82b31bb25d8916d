"""QoE formulas against a hand-computed case (models/qoe/metrics.py states each one)."""

import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from models.events.ingest import BEACON_SCHEMA
from models.observability.pipeline_metrics import latest_qoe
from models.qoe.metrics import qoe_hourly

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def _beacons(rows: list[dict[str, object]]) -> pl.DataFrame:
    full = [
        {
            "event_id": f"e{i}",
            "user_id": "u",
            "media_id": "m1",
            "device": "web",
            "ts": T0 + timedelta(seconds=i),
            **row,
        }
        for i, row in enumerate(rows)
    ]
    return pl.DataFrame(full, schema=BEACON_SCHEMA)


def test_qoe_matches_the_hand_computed_case() -> None:
    s1, s2, s3 = ({"session_id": s} for s in ("s1", "s2", "s3"))
    rows = [
        {**s1, "event_type": "load_start"},
        {**s1, "event_type": "first_frame", "duration_ms": 2000.0, "played_s": 0.0},
        {**s1, "event_type": "rendition_switch", "height": 720, "player_height": 1080, "played_s": 0.0},
        {**s1, "event_type": "rebuffer_start", "played_s": 30.0},
        {**s1, "event_type": "rebuffer_end", "duration_ms": 3000.0, "played_s": 30.0},
        {**s1, "event_type": "rendition_switch", "height": 1080, "player_height": 1080, "played_s": 60.0},
        {**s1, "event_type": "view_end", "played_s": 120.0},
        {**s2, "event_type": "load_start"},
        {**s2, "event_type": "exit_before_start", "duration_ms": 6000.0},
        {**s3, "event_type": "load_start"},
        {**s3, "event_type": "first_frame", "duration_ms": 4000.0, "played_s": 0.0},
        {**s3, "event_type": "rendition_switch", "height": 1080, "player_height": 1080, "played_s": 0.0},
        {**s3, "event_type": "fatal_error", "played_s": 57.0},
    ]
    row = qoe_hourly(_beacons(rows).lazy()).collect().row(0, named=True)
    # 3 sessions: one fails, one leaves before the first frame; startups 2 s and 4 s;
    # played 120 + 0 + 57 s with one 3 s stall; 720p for 60 s and 1080p for 117 s in a 1080p player
    success, startup = 100 / 3, 100 * 8 / (8 + 3.0)
    smooth, quality = 100 * 2 ** (-(100 * 3 / 180) / 2), 100 * (60 * 720 / 1080 + 117) / 177
    expected = {
        "device_class": "desktop",
        "sessions": 3,
        "failure_rate": 1 / 3,
        "exit_before_start_rate": 1 / 3,
        "startup_p50_s": 3.0,
        "startup_p95_s": 2 + 0.95 * 2,
        "played_s": 177.0,
        "rebuffer_s": 3.0,
        "rebuffer_pct": 100 * 3 / 180,
        "rebuffers_per_min": 1 / (177 / 60),
        "avg_height": (720 * 60 + 1080 * 117) / 177,
        "peak_height": 1080,
        "avg_upscale": (1.5 * 60 + 1.0 * 117) / 177,
        "peak_upscale": 1.0,
        "success_score": success,
        "startup_score": startup,
        "smoothness_score": smooth,
        "quality_score": quality,
        "qoe_score": (success * startup * smooth * quality) ** 0.25,
    }
    for name, value in expected.items():
        assert row[name] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), name
    assert row["hour"] == T0


def test_groups_split_by_device_class_and_empty_parts_leave_the_score() -> None:
    rows = [
        {"session_id": "a", "device": "ios", "event_type": "load_start"},
        {"session_id": "a", "device": "ios", "event_type": "fatal_error"},
        {"session_id": "b", "device": "tv", "event_type": "first_frame", "duration_ms": 0.0},
        {"session_id": "b", "device": "tv", "event_type": "view_end", "played_s": 10.0},
    ]
    frame = qoe_hourly(_beacons(rows).lazy()).collect()
    mobile, tv = frame.sort("device_class").iter_rows(named=True)
    assert (mobile["device_class"], mobile["qoe_score"], mobile["startup_p50_s"]) == ("mobile", 0.0, None)
    # no renditions reported: quality is unknown and left out; nothing else went wrong
    assert tv["quality_score"] is None and tv["qoe_score"] == 100.0
    assert math.isclose(tv["smoothness_score"], 100.0)


def test_the_qoe_gauge_reads_each_classs_latest_hour_session_weighted() -> None:
    later = T0 + timedelta(hours=1)
    qoe = pl.DataFrame(
        {
            "hour": [T0, later, later, T0],
            "device_class": ["mobile", "mobile", "mobile", "tv"],
            "sessions": [10, 1, 3, 5],
            "qoe_score": [90.0, 40.0, 80.0, 75.0],
        }
    )
    assert latest_qoe(qoe) == {"mobile": 70.0, "tv": 75.0}  # (40 + 3 * 80) / 4; tv's latest is T0
