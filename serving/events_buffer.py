"""Group commit for POST /events: requests wait in a buffer, one ingest_events call writes them all.

One Delta MERGE per request would cost a commit (and a scan of view_events' keys) each; buffering
for up to `interval_s` or `max_rows` rows turns a burst into one commit. A request is answered only
after its batch is in the table (acknowledge only durable events), so a producer may drop what got
a 202 from its retry queue. `close` (the replica's shutdown hook) writes whatever is still waiting.

Counts are per request although the write is shared: rejections come from the same validate_row
the ingest uses, and a valid event is "accepted" when its event_id was neither in the table before
the write nor earlier in the flush (the first copy wins, as in ingest_events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from models.events.ingest import ingest_events, is_beacon, validate_row
from models.lake import tables
from models.lake.schemas import PLAYBACK_BEACONS, VIEW_EVENTS
from models.settings import Settings

log = logging.getLogger("ray.serve")

Row = Mapping[str, Any]
Hour = tuple[str, datetime]
Key = tuple[str, str]  # (table, event_id): an event_id is exactly-once within its table


@dataclass(frozen=True)
class Counts:
    accepted: int  # new rows now in view_events or playback_beacons
    duplicates: int  # valid rows whose event_id was already stored (or sent earlier in the flush)
    rejected: int  # rows that failed validation (kept in events_rejected with the reason)


def _valid_keys(batch: Sequence[Row], received_at: datetime) -> list[Key]:
    return [(_table(row), row["event_id"]) for row in batch if validate_row(row, received_at)[0] is not None]


def _table(row: Row) -> str:
    return PLAYBACK_BEACONS.name if is_beacon(row) else VIEW_EVENTS.name


def _stored(settings: Settings, keys: list[Key]) -> set[Key]:
    """Which of keys (table, event_id) their table already holds."""
    stored: set[Key] = set()
    for name in (VIEW_EVENTS.name, PLAYBACK_BEACONS.name):
        ids = [event_id for table, event_id in keys if table == name]
        if ids:
            found = tables.read_table(settings, name, columns=["event_id"])
            stored |= {(name, i) for i in found.filter(pl.col("event_id").is_in(ids))["event_id"].to_list()}
    return stored


def ingest_batches(settings: Settings, batches: Sequence[Sequence[Row]]) -> tuple[list[Counts], list[Hour]]:
    """Write every batch with one ingest_events call; each batch's counts and the touched hours."""
    received_at = datetime.now(UTC)
    valid = [_valid_keys(batch, received_at) for batch in batches]
    known = _stored(settings, [key for keys in valid for key in keys])
    result = ingest_events(settings, [row for batch in batches for row in batch], received_at)
    counts = []
    for batch, keys in zip(batches, valid, strict=True):
        fresh = [key for key in dict.fromkeys(keys) if key not in known]
        known.update(fresh)
        counts.append(Counts(len(fresh), len(keys) - len(fresh), len(batch) - len(keys)))
    if sum(c.accepted for c in counts) != result.accepted:  # another writer raced this flush
        log.warning("events: per-request counts off (%d inserted in all)", result.accepted)
    return counts, result.affected_hours


@dataclass
class _Waiting:
    rows: Sequence[Row]
    done: asyncio.Future[Counts]


class EventBuffer:
    """Collects requests and flushes them every interval_s, or at once past max_rows rows."""

    def __init__(
        self,
        write: Callable[[Sequence[Sequence[Row]]], tuple[list[Counts], list[Hour]]],
        refresh: Callable[[list[Hour]], object],
        interval_s: float,
        max_rows: int,
    ) -> None:
        self._write = write
        self._refresh = refresh
        self._interval_s = interval_s
        self._max_rows = max_rows
        self._waiting: list[_Waiting] = []
        self._rows = 0
        self._stale_hours: set[Hour] = set()  # hourly_stats to recompute (kept until that succeeds)
        self._lock = asyncio.Lock()
        self._full = asyncio.Event()
        self._closing = False
        self._loop = asyncio.get_running_loop().create_task(self._flush_loop())

    @property
    def running(self) -> bool:
        return not self._loop.done()

    async def add(self, rows: Sequence[Row]) -> Counts:
        """Wait until rows are written; raises what the write raised (nothing was acknowledged)."""
        waiting = _Waiting(rows, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._rows += len(rows)
        if self._rows >= self._max_rows:
            self._full.set()
        # Shielded: a caller that hangs up does not cancel the write its rows are part of.
        return await asyncio.shield(waiting.done)

    async def _flush_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):  # the interval passed: flush what is there
                await asyncio.wait_for(self._full.wait(), self._interval_s)
            await self.flush()

    async def flush(self) -> None:
        """Write what is waiting, answer its requests, then refresh the hours it touched."""
        async with self._lock:
            self._full.clear()
            waiting, self._waiting, self._rows = self._waiting, [], 0
            if waiting:
                await self._write_waiting(waiting)
            if self._stale_hours:
                try:
                    await asyncio.to_thread(self._refresh, sorted(self._stale_hours))
                    self._stale_hours.clear()
                except Exception:
                    log.exception("hourly_stats refresh failed; retrying at the next flush")

    async def _write_waiting(self, waiting: list[_Waiting]) -> None:
        try:
            counts, hours = await asyncio.to_thread(self._write, [w.rows for w in waiting])
        except Exception as err:
            log.exception("writing %d event batches failed", len(waiting))
            for w in waiting:
                w.done.set_exception(err)
            return
        self._stale_hours.update(hours)
        for w, count in zip(waiting, counts, strict=True):
            w.done.set_result(count)

    async def close(self) -> None:
        """Write everything still waiting, then stop: no accepted event is lost.

        The timer loop is let finish a flush in progress (cancelling it would abandon a write whose
        requests then never hear back), then what arrived meanwhile is flushed too.
        """
        self._closing = True
        self._full.set()
        await asyncio.gather(self._loop, return_exceptions=True)
        await self.flush()
