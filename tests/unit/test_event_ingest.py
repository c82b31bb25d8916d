"""Event ingestion on real Delta tables: validation, exactly-once inserts, late-event refresh."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from models.events.aggregates import hourly_stats
from models.events.ingest import EVENT_TYPES, ingest_events, refresh_hours
from models.events.simulator import EPOCH, SimulationConfig, simulate_events, simulate_users
from models.lake.tables import open_table, read_table, upsert
from models.settings import Settings

RECEIVED = EPOCH + timedelta(days=10)
A, B, C, Z = "a" * 16, "b" * 16, "c" * 16, "z" * 16
CATALOG = pl.DataFrame(
    {
        "media_id": [A, B, C, "d" * 16, "e" * 16, "f" * 16],
        "duration_s": [30.0, 60.0, 20.0, 90.0, 45.0, 120.0],
        "tags": [["x"], ["y"], ["x"], ["z"], ["y"], ["x"]],
    }
)


def _simulate(n_users: int, titles: int = 3) -> pl.DataFrame:
    config = SimulationConfig(n_users=n_users)
    return simulate_events(CATALOG.head(titles), simulate_users(config), config)


def _version(lake: Settings, name: str) -> int:
    table = open_table(lake, name)
    assert table is not None
    return table.version()


def _event(event_id: str, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "event_id": event_id,
        "user_id": "u1",
        "media_id": A,
        "session_id": "s1",
        "event_type": "heartbeat",
        "position_s": 4.0,
        "ts": "2026-11-05T10:00:04Z",
        "device": "web",
        "tier": "free",
    }
    return {**row, **fields}


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("media_id", "hour")


def test_replaying_a_batch_changes_nothing(lake: Settings) -> None:
    events = _simulate(10)
    rows = [{**r, "ts": r["ts"].isoformat()} for r in events.to_dicts()]
    bad = [_event("bad-1", position_s=-1.0), _event("bad-2", event_type="rewind"), {"user_id": "u1"}]
    first = ingest_events(lake, rows + bad, received_at=RECEIVED)
    assert (first.accepted, first.duplicates, first.rejected) == (events.height, 0, 3)
    assert first.write.row_count == events.height and first.affected_hours
    versions = {name: _version(lake, name) for name in ("view_events", "events_rejected")}
    rejected_rows = read_table(lake, "events_rejected").height

    for replay in (rows + bad, events):  # the same batch as JSON-like rows, then as a typed frame
        again = ingest_events(lake, replay, received_at=RECEIVED + timedelta(minutes=1))
        assert (again.accepted, again.duplicates, again.affected_hours) == (0, events.height, [])
        assert again.write.version == versions["view_events"]
    assert {name: _version(lake, name) for name in versions} == versions
    assert read_table(lake, "events_rejected").height == rejected_rows
    table = read_table(lake, "view_events")
    assert_frame_equal(table.sort("event_id"), events.sort("event_id"))


def test_duplicates_inside_a_batch_keep_the_first_copy(lake: Settings) -> None:
    rows = [_event("e1"), _event("e2"), _event("e1"), _event("e2", position_s=9.0), _event("e3")]
    result = ingest_events(lake, rows, received_at=RECEIVED)
    assert (result.accepted, result.duplicates, result.rejected) == (3, 2, 0)
    table = read_table(lake, "view_events").sort("event_id")
    assert table["event_id"].to_list() == ["e1", "e2", "e3"]
    assert table.filter(event_id="e2")["position_s"].item() == 4.0
    assert result.affected_hours == [(A, datetime(2026, 11, 5, 10, tzinfo=UTC))]
    with pytest.raises(ValueError, match="tz-aware"):
        ingest_events(lake, rows, received_at=datetime(2026, 11, 5))


def test_at_least_once_producer_ends_exactly_once(lake: Settings) -> None:
    events = _simulate(160, titles=6).head(20_000)
    assert events.height == 20_000
    rng = random.Random(7)
    order = list(range(events.height))
    rng.shuffle(order)
    sent, accepted, duplicates, hours = 0, 0, 0, set()
    delivered: list[int] = []
    for start in range(0, len(order), 2_500):
        chunk = order[start : start + 2_500]
        overlap = rng.sample(delivered, min(len(delivered), 600))  # resent after a lost ack
        batch = chunk + overlap
        rng.shuffle(batch)
        for _ in range(2 if rng.random() < 0.4 else 1):  # the whole request retried
            result = ingest_events(lake, events[batch], received_at=RECEIVED)
            sent += len(batch)
            accepted += result.accepted
            duplicates += result.duplicates
            hours.update(result.affected_hours)
        delivered += chunk

    table = read_table(lake, "view_events")
    assert table.height == 20_000 and table["event_id"].n_unique() == 20_000
    assert_frame_equal(table.sort("event_id"), events.sort("event_id"))
    assert (accepted, duplicates) == (20_000, sent - 20_000)
    refresh_hours(lake, sorted(hours))
    full = hourly_stats(table.lazy()).collect()
    assert_frame_equal(_sorted(read_table(lake, "hourly_stats")), _sorted(full))


def _boundary_session() -> pl.DataFrame:
    """A session on title Z starting at 10:59:58; its first event arrives late, moving it to 10:00."""
    start = datetime(2026, 11, 1, 10, 59, 58, tzinfo=UTC)
    kinds = [("play", 0.0), ("heartbeat", 2.0), ("pause", 4.0)]
    return pl.DataFrame(
        [
            {
                "event_id": f"z-{i}",
                "user_id": "u-z",
                "media_id": Z,
                "session_id": "player-z",
                "event_type": kind,
                "position_s": position,
                "ts": start + timedelta(seconds=position),
                "device": "tv",
                "tier": "premium",
            }
            for i, (kind, position) in enumerate(kinds)
        ],
        schema=_simulate(1).schema,
    )


def test_late_events_refresh_only_their_hours(lake: Settings) -> None:
    events = pl.concat([_simulate(30), _boundary_session()])
    index = pl.int_range(pl.len()).over("session_id")
    b_sessions = events.filter(media_id=B)["session_id"].unique().sort()
    late_last = b_sessions.gather_every(2)  # these sessions' final (pause/complete) event is late
    late_first = b_sessions.slice(1, 2)  # and these sessions' opening play
    is_late = (
        (pl.col("session_id").is_in(late_last.implode()) & (index == pl.len().over("session_id") - 1))
        | (pl.col("session_id").is_in(late_first.implode()) & (index == 0))
        | (pl.col("event_id") == "z-0")
    )
    late, on_time = events.filter(is_late), events.filter(~is_late)
    assert set(late["media_id"]) == {B, Z}

    first = ingest_events(lake, on_time, received_at=RECEIVED)
    refresh_hours(lake, first.affected_hours)  # from empty: every touched hour, i.e. everything
    assert_frame_equal(
        _sorted(read_table(lake, "hourly_stats")), _sorted(hourly_stats(on_time.lazy()).collect())
    )

    # tamper with a title no late event touches: a refresh that only touches its hours keeps it
    stats = read_table(lake, "hourly_stats")
    tampered = stats.filter(media_id=A).head(1).with_columns(views=pl.lit(999, pl.Int64))
    upsert(lake, "hourly_stats", tampered)
    before = read_table(lake, "hourly_stats")
    assert before.filter(media_id=Z)["hour"].to_list() == [datetime(2026, 11, 1, 11, tzinfo=UTC)]

    second = ingest_events(lake, late, received_at=RECEIVED)
    assert second.accepted == late.height
    assert {media for media, _ in second.affected_hours} == {B, Z}
    refresh_hours(lake, second.affected_hours)
    after = read_table(lake, "hourly_stats")

    untouched = pl.col("media_id").is_in([B, Z]).not_()
    assert_frame_equal(_sorted(after.filter(untouched)), _sorted(before.filter(untouched)))
    assert not after.filter(media_id=B).equals(before.filter(media_id=B)), "late events changed B's stats"
    assert after.filter(media_id=Z)["hour"].to_list() == [datetime(2026, 11, 1, 10, tzinfo=UTC)]
    full = hourly_stats(read_table(lake, "view_events").lazy()).collect()
    expected = pl.concat([full.join(tampered, on=["media_id", "hour"], how="anti"), tampered])
    assert_frame_equal(_sorted(after), _sorted(expected))

    version = _version(lake, "hourly_stats")
    refresh_hours(lake, second.affected_hours)
    assert _version(lake, "hourly_stats") == version, "a repeated refresh commits nothing"
    with pytest.raises(ValueError, match="tz-aware"):
        refresh_hours(lake, [(B, datetime(2026, 11, 1, 10))])


def test_malformed_events_are_rejected_with_reasons_and_the_rest_accepted(lake: Settings) -> None:
    no_id = _event("x")
    del no_id["event_id"]
    bad = {
        "empty-user": _event("empty-user", user_id="  "),
        "no-media": _event("no-media", media_id=None),
        "int-session": _event("int-session", session_id=42),
        "rewind": _event("rewind", event_type="rewind"),
        "no-type": _event("no-type", event_type=None),
        "negative": _event("negative", position_s=-1.0),
        "abc": _event("abc", position_s="abc"),
        "bool-position": _event("bool-position", position_s=True),
        "nan": _event("nan", position_s=math.nan),
        "inf": _event("inf", position_s=math.inf),
        "absurd": _event("absurd", position_s=8 * 86_400.0),
        "no-position": _event("no-position", position_s=None),
        "yesterday": _event("yesterday", ts="yesterday"),
        "naive": _event("naive", ts="2026-11-05T10:00:04"),
        "naive-dt": _event("naive-dt", ts=datetime(2026, 11, 5, 10)),
        "epoch": _event("epoch", ts=1_700_000_000),
        "future": _event("future", ts=(RECEIVED + timedelta(minutes=6)).isoformat()),
        "no-ts": _event("no-ts", ts=None),
        "int-device": _event("int-device", device=5),
        "long-device": _event("long-device", device="d" * 257),
        "long-user": _event("long-user", user_id="u" * 300),
        "two-problems": _event("two-problems", user_id=None, position_s=-2.0),
    }
    expected = {
        "empty-user": {"user_id: empty"},
        "no-media": {"media_id: missing"},
        "int-session": {"session_id: not a string"},
        "rewind": {f"event_type: not one of {', '.join(EVENT_TYPES)}"},
        "no-type": {"event_type: missing"},
        "negative": {"position_s: negative"},
        "abc": {"position_s: not a number"},
        "bool-position": {"position_s: not a number"},
        "nan": {"position_s: not finite"},
        "inf": {"position_s: not finite"},
        "absurd": {"position_s: over 7 days"},
        "no-position": {"position_s: missing"},
        "yesterday": {"ts: not an ISO-8601 timestamp"},
        "naive": {"ts: no timezone (ambiguous)"},
        "naive-dt": {"ts: no timezone (ambiguous)"},
        "epoch": {"ts: not a timestamp (ISO-8601 string or datetime)"},
        "future": {"ts: more than 5 minutes after received_at"},
        "no-ts": {"ts: missing"},
        "int-device": {"device: not a string"},
        "long-device": {"device: over 256 characters"},
        "long-user": {"user_id: over 256 characters"},
        "two-problems": {"user_id: missing", "position_s: negative"},
    }
    good = [
        _event("ok-z"),
        _event("ok-offset", ts="2026-11-05T12:00:04+02:00"),
        _event("ok-datetime", ts=datetime(2026, 11, 5, 5, 0, 4, tzinfo=timezone(timedelta(hours=-5)))),
        _event("ok-skew", ts=(RECEIVED + timedelta(minutes=4)).isoformat(), event_type="seek"),
        _event("ok-extra", unknown_field={"ignored": True}, position_s=0),
    ]
    long_id = _event("e" * 1_000_000)
    rows = [good[0], *bad.values(), no_id, "not an object", long_id, *good[1:]]
    result = ingest_events(lake, rows, received_at=RECEIVED)  # type: ignore[arg-type]
    assert (result.accepted, result.duplicates, result.rejected) == (5, 0, len(bad) + 3)

    table = read_table(lake, "view_events").sort("event_id")
    assert set(table["event_id"]) == {row["event_id"] for row in good}
    assert table.filter(event_id="ok-offset")["ts"].item() == datetime(2026, 11, 5, 10, 0, 4, tzinfo=UTC)
    assert table.filter(event_id="ok-datetime")["ts"].item() == datetime(2026, 11, 5, 10, 0, 4, tzinfo=UTC)

    rejected = read_table(lake, "events_rejected")
    reasons = {k: set(v) for k, v in rejected.group_by("event_id").agg("reason").iter_rows()}
    hashed = {k: v for k, v in reasons.items() if k.startswith("sha256:")}
    assert {k: v for k, v in reasons.items() if k not in hashed} == expected
    assert sorted(map(sorted, hashed.values())) == [
        ["event_id: missing"],
        ["event_id: over 256 characters"],  # a megabyte id is not stored as a key
        ["row: not a JSON object"],
    ]
    no_id_row = rejected.filter(reason="event_id: missing")
    assert json.loads(no_id_row["raw"].item()) == no_id
    assert set(rejected["received_at"]) == {RECEIVED}
    assert json.loads(rejected.filter(event_id="abc")["raw"].item())["position_s"] == "abc"


def test_the_bulk_path_rejects_overlong_text_as_the_row_path_does(lake: Settings) -> None:
    """A well-typed frame goes through the vectorised checks; an id or device over the cap must still
    be refused there, with the row path's reason."""
    frame = _boundary_session().with_columns(
        event_id=pl.Series(["z-ok", "z-" + "9" * 300, "z-device"]),
        device=pl.Series(["tv", "tv", "x" * 257]),
    )
    result = ingest_events(lake, frame, received_at=RECEIVED)
    assert (result.accepted, result.rejected) == (1, 2)
    assert read_table(lake, "view_events")["event_id"].to_list() == ["z-ok"]
    assert sorted(read_table(lake, "events_rejected")["reason"]) == [
        "device: over 256 characters",
        "event_id: over 256 characters",
    ]
