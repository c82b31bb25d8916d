"""The events group commit on its own (no Ray): one write per flush, per-request counts, close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from models.lake.tables import read_table
from models.settings import get_settings
from serving.events_buffer import Counts, EventBuffer, Hour, ingest_batches

HOUR = ("m1", datetime(2026, 1, 1, tzinfo=UTC))


class FakeLake:
    def __init__(self, fail: bool = False) -> None:
        self.writes: list[list[Sequence[Any]]] = []
        self.refreshed: list[list[Hour]] = []
        self.fail = fail

    def write(self, batches: Sequence[Sequence[Any]]) -> tuple[list[Counts], list[Hour]]:
        if self.fail:
            raise OSError("lake unreachable")
        self.writes.append(list(batches))
        return [Counts(len(batch), 0, 0) for batch in batches], [HOUR]

    def refresh(self, hours: list[Hour]) -> None:
        self.refreshed.append(hours)


def test_concurrent_requests_share_one_write_and_get_their_own_counts() -> None:
    async def scenario() -> tuple[FakeLake, list[Counts]]:
        lake = FakeLake()
        buffer = EventBuffer(lake.write, lake.refresh, interval_s=0.05, max_rows=1000)
        counts = await asyncio.gather(*(buffer.add([{}] * n) for n in (1, 2, 3)))
        await buffer.close()
        return lake, counts

    lake, counts = asyncio.run(scenario())
    assert [c.accepted for c in counts] == [1, 2, 3]
    assert len(lake.writes) == 1 and lake.refreshed == [[HOUR]]


def test_max_rows_flushes_before_the_interval() -> None:
    async def scenario() -> float:
        buffer = EventBuffer(FakeLake().write, FakeLake().refresh, interval_s=60, max_rows=5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await buffer.add([{}] * 5)
        elapsed = loop.time() - started
        await buffer.close()
        return elapsed

    assert asyncio.run(scenario()) < 5


def test_close_writes_what_is_still_waiting() -> None:
    async def scenario() -> tuple[FakeLake, Counts]:
        lake = FakeLake()
        buffer = EventBuffer(lake.write, lake.refresh, interval_s=60, max_rows=1000)
        waiting = asyncio.ensure_future(buffer.add([{}, {}]))
        await asyncio.sleep(0.05)
        assert not lake.writes
        await buffer.close()
        return lake, await waiting

    lake, counts = asyncio.run(scenario())
    assert counts.accepted == 2 and len(lake.writes) == 1


def test_a_failed_write_fails_its_requests() -> None:
    async def scenario() -> None:
        lake = FakeLake(fail=True)
        buffer = EventBuffer(lake.write, lake.refresh, interval_s=0.01, max_rows=1000)
        with pytest.raises(OSError, match="unreachable"):
            await buffer.add([{}])
        assert buffer.running  # the next flush may succeed
        await buffer.close()

    asyncio.run(scenario())


def row(event_id: str, **changes: Any) -> dict[str, Any]:
    base = {
        "event_id": event_id,
        "user_id": "u1",
        "media_id": "m1",
        "session_id": "s1",
        "event_type": "play",
        "position_s": 1.0,
        "ts": "2026-01-01T10:00:00Z",
    }
    return base | changes


def test_ingest_batches_counts_each_request_against_the_table_and_the_flush(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path)
    ingest_batches(settings, [[row("old")]])
    batches = [
        [row("a"), row("old"), row("bad", position_s=-1)],
        [row("a"), row("b"), row("b")],
    ]
    counts, hours = ingest_batches(settings, batches)
    assert counts == [Counts(1, 1, 1), Counts(1, 2, 0)]
    assert hours == [("m1", datetime(2026, 1, 1, 10, tzinfo=UTC))]
    assert sorted(read_table(settings, "view_events")["event_id"]) == ["a", "b", "old"]


def test_beacons_are_counted_against_their_own_table(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path)
    beacon = row("a", event_type="first_frame", duration_ms=900.0) | {"position_s": None}
    counts, hours = ingest_batches(
        settings, [[row("a"), beacon], [beacon, row("b", event_type="rebuffer_end")]]
    )
    # "a" is both a view event and a beacon: one of each table; the second beacon lacks duration_ms
    assert counts == [Counts(2, 0, 0), Counts(0, 1, 1)]
    assert hours == [("m1", datetime(2026, 1, 1, 10, tzinfo=UTC))]
    assert read_table(settings, "playback_beacons")["event_id"].to_list() == ["a"]
