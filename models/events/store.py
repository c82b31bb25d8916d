"""Writing view events: exactly-once inserts, and the simulator's ownership of its own sessions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import polars as pl

from models.events.ingest import IngestResult, ingest_events
from models.events.simulator import SIMULATED_PREFIX
from models.lake import tables
from models.settings import Settings


def record_simulated(settings: Settings, events: pl.DataFrame | Iterable[pl.DataFrame]) -> IngestResult:
    """Make the table's simulated sessions exactly these; events from real producers are untouched.

    events may be one frame or chunks of one simulation (simulator.iter_events): each chunk is
    ingested as it comes, so a 10M-event simulation never sits in memory whole. A re-run with the
    same seed and catalog inserts nothing. A grown catalog re-decides a few sessions: those get new
    ids, and the sessions they replace are deleted so no view counts twice.
    """
    chunks = [events] if isinstance(events, pl.DataFrame) else events
    results: list[IngestResult] = []
    generated: list[pl.Series] = []
    for chunk in chunks:
        generated.append(chunk["session_id"].unique())
        # the same validation and exactly-once insert as POST /events; "now" is the chunk's last
        # event, so a simulated future never trips the clock-skew check
        received_at = chunk["ts"].max() if chunk.height else None
        results.append(ingest_events(settings, chunk, received_at=received_at))  # type: ignore[arg-type]
    known = tables.read_table(settings, "view_events", columns=["session_id"])
    simulated = known.filter(pl.col("session_id").str.starts_with(SIMULATED_PREFIX))["session_id"].unique()
    current = pl.concat([pl.Series("session_id", [], pl.String), *generated])
    superseded = simulated.filter(~simulated.is_in(current.implode()))
    after = tables.delete_where_in(settings, "view_events", "session_id", superseded.to_list())
    accepted = sum(r.accepted for r in results)
    return IngestResult(
        accepted=accepted,
        duplicates=sum(r.duplicates for r in results),
        rejected=sum(r.rejected for r in results),
        affected_hours=sorted({hour for r in results for hour in r.affected_hours}),
        write=replace(after, rows_written=accepted),
    )
