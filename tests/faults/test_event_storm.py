"""An at-least-once producer storm through the exactly-once ingest path (models/events/ingest.py).

100k distinct events are sent the way real producers fail: some copies twice or three times,
batches shuffled locally (late events), deliveries whose acknowledgement is lost and are sent
again, and deliveries that fail before reaching the lake and are retried. The table must hold
each event_id exactly once, with the fields that were sent, and the per-call counts must add up.
All choices come from one seed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from models.events.ingest import EVENT_TYPES, ingest_events
from models.lake.tables import read_table
from models.settings import get_settings

pytestmark = pytest.mark.faults

SEED = 1129
EVENTS = 100_000
BATCH = 5_000
REORDER_WINDOW = 5_000  # a copy may arrive this many sends early or late
ACK_LOST = 0.2  # the lake committed the batch, the producer never heard: it sends it again
SEND_FAILED = 0.1  # the batch never arrived: it is sent again
RECEIVED = datetime(2026, 3, 1, tzinfo=UTC)


def _events(rng: np.random.Generator) -> pl.DataFrame:
    """Distinct, valid events over a few days before RECEIVED."""
    i = np.arange(EVENTS)
    return pl.DataFrame(
        {
            "event_id": [f"e{n:07d}" for n in i],
            "user_id": [f"u{n}" for n in rng.integers(0, 2_000, EVENTS)],
            "media_id": [f"{n:016x}" for n in rng.integers(0, 300, EVENTS)],
            "session_id": [f"s{n}" for n in i // 20],
            "event_type": np.array(EVENT_TYPES)[rng.integers(0, len(EVENT_TYPES), EVENTS)],
            "position_s": rng.uniform(0, 3_600, EVENTS),
            "ts": [RECEIVED - timedelta(seconds=int(s)) for s in rng.integers(60, 3 * 86_400, EVENTS)],
            "device": "web",
            "tier": "free",
        }
    )


def _deliveries(events: pl.DataFrame, rng: np.random.Generator) -> list[pl.DataFrame]:
    """The producer's sends: every event once or more, locally reordered, cut into batches."""
    copies = 1 + rng.binomial(2, 0.25, EVENTS)
    index = np.repeat(np.arange(EVENTS), copies)
    order = np.argsort(np.arange(index.size) + rng.uniform(-REORDER_WINDOW, REORDER_WINDOW, index.size))
    sent = events[index[order]]
    return [sent.slice(start, BATCH) for start in range(0, sent.height, BATCH)]


def test_duplicated_reordered_retried_events_are_stored_exactly_once(tmp_path: Path, faults: Any) -> None:
    rng = np.random.default_rng(SEED)
    events = _events(rng)
    settings = get_settings(data_dir=tmp_path)
    accepted = duplicates = calls = resent = 0
    for batch in _deliveries(events, rng):
        while True:
            calls += 1
            if rng.random() < SEND_FAILED:
                resent += 1
                continue  # lost on the way: nothing reached ingest
            result = ingest_events(settings, batch, received_at=RECEIVED)
            assert result.rejected == 0
            accepted, duplicates = accepted + result.accepted, duplicates + result.duplicates
            if rng.random() < ACK_LOST:
                resent += 1
                continue  # committed, but the producer saw a timeout: the same batch again
            break
    stored = read_table(settings, "view_events")
    kept = stored.join(events, on=events.columns, how="semi")  # rows equal to what was sent
    exactly_once = kept.height if stored["event_id"].n_unique() == stored.height else 0
    faults.record(
        "events",
        tried=EVENTS,
        survived=exactly_once,
        lost=EVENTS - kept.height,
        note=f"{stored.height} rows, {kept.height} as sent",
        deliveries=calls,
        redeliveries=resent,
        duplicate_copies=duplicates,
    )
    assert stored.height == EVENTS and stored["event_id"].n_unique() == EVENTS
    assert kept.height == EVENTS, "a stored event differs from what was sent"
    assert accepted == EVENTS and duplicates > EVENTS // 4
