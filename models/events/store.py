"""Writing view events: exactly-once inserts, and the simulator's ownership of its own sessions."""

from __future__ import annotations

import polars as pl

from models.events.ingest import IngestResult, ingest_events
from models.events.simulator import SIMULATED_PREFIX
from models.lake import tables
from models.settings import Settings


def record_simulated(settings: Settings, events: pl.DataFrame) -> IngestResult:
    """Make the table's simulated sessions exactly these; events from real producers are untouched.

    A re-run with the same seed and catalog inserts nothing. A grown catalog re-decides a few
    sessions: those get new ids, and the sessions they replace are deleted so no view counts twice.
    """
    known = tables.read_table(settings, "view_events", columns=["session_id"])
    simulated = known.filter(pl.col("session_id").str.starts_with(SIMULATED_PREFIX))["session_id"].unique()
    superseded = simulated.filter(~simulated.is_in(events["session_id"].unique().implode()))
    tables.delete_where_in(settings, "view_events", "session_id", superseded.to_list())
    # the same validation and exactly-once insert as POST /events; "now" is the simulation's end,
    # so a simulated future never trips the clock-skew check
    received_at = events["ts"].max() if events.height else None
    return ingest_events(settings, events, received_at=received_at)  # type: ignore[arg-type]
