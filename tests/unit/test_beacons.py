"""Playback beacons through the one ingest path: routing, validation with reasons, exactly once."""

from datetime import timedelta

import polars as pl

from models.events.ingest import ingest_events, validate_beacon
from models.events.simulator import EPOCH
from models.lake.tables import read_table
from models.settings import Settings

RECEIVED = EPOCH + timedelta(days=1)


def _beacon(event_id: str, event_type: str, **fields: object) -> dict[str, object]:
    return {
        "event_id": event_id,
        "user_id": "u1",
        "media_id": "m1",
        "session_id": "s1",
        "event_type": event_type,
        "ts": "2026-11-01T10:00:00Z",
        "device": "web",
        **fields,
    }


def test_beacons_and_view_events_share_one_exactly_once_path(lake: Settings) -> None:
    view = {**_beacon("v1", "play"), "position_s": 0.0}
    rows = [
        view,
        _beacon("b1", "load_start"),
        _beacon("b2", "first_frame", duration_ms=850, played_s=0),
        _beacon("b3", "rendition_switch", bitrate=2_000_000, width=1280, height=720, player_height=1080),
        _beacon("b3", "rendition_switch", bitrate=2_000_000, width=1280, height=720),  # a resend
    ]
    first = ingest_events(lake, rows, RECEIVED)
    assert (first.accepted, first.duplicates, first.rejected) == (4, 1, 0)
    assert first.beacons is not None and first.beacons.row_count == 3
    assert read_table(lake, "view_events")["event_id"].to_list() == ["v1"]
    beacons = read_table(lake, "playback_beacons").sort("event_id")
    assert beacons["event_type"].to_list() == ["load_start", "first_frame", "rendition_switch"]
    assert beacons.filter(pl.col("event_id") == "b3").row(0, named=True)["player_height"] == 1080
    replay = ingest_events(lake, rows, RECEIVED)
    assert (replay.accepted, replay.duplicates) == (0, 5)
    assert read_table(lake, "playback_beacons").height == 3


def test_bad_beacons_are_rejected_with_reasons(lake: Settings) -> None:
    cases = {
        "x1": (_beacon("x1", "first_frame"), {"duration_ms: missing"}),
        "x2": (_beacon("x2", "rebuffer_end", duration_ms=-5), {"duration_ms: not in [0, 8.64e+07]"}),
        "x3": (
            _beacon("x3", "rendition_switch", bitrate="2M", width=1280.5),
            {"bitrate: not a number", "width: not an integer", "height: missing"},
        ),
        "x4": (
            _beacon("x4", "error", ts="2026-11-01T10:00:00", error_code=3),
            {
                "ts: no timezone (ambiguous)",
                "error_code: not a string",
            },
        ),
    }
    for row, reasons in cases.values():
        assert set(validate_beacon(row, RECEIVED)[1]) == reasons
    result = ingest_events(lake, [row for row, _ in cases.values()] + [_beacon("ok", "error")], RECEIVED)
    assert (result.accepted, result.rejected) == (1, 4)
    stored = read_table(lake, "events_rejected")
    by_id = stored.group_by("event_id").agg(pl.col("reason")).rows()
    assert {event_id: set(reasons) for event_id, reasons in by_id} == {k: v for k, (_, v) in cases.items()}
