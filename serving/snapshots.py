"""The published lake snapshots as the API holds them in memory, each tagged with its Delta version.

A replica answers from one immutable snapshot and swaps in a new one only when the table's
version moves, so a request never sees half of a write and a republish needs no restart. Data and
version come from the same opened table, so the version a replica reports is the one it serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc

from models.lake.schemas import COLD_START_USER
from models.lake.tables import open_table
from models.settings import Settings

CATALOG_TABLE = "api_catalog"
RECS_TABLE = "recs_topk"


def table_version(settings: Settings, name: str) -> int | None:
    """The table's current Delta version (None before its first write): the cheap reload probe."""
    table = open_table(settings, name)
    return None if table is None else table.version()


@dataclass(frozen=True)
class CatalogSnapshot:
    """api_catalog rows keyed by media_id, as plain JSON-ready dicts."""

    version: int | None = None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_catalog(settings: Settings) -> CatalogSnapshot:
    table = open_table(settings, CATALOG_TABLE)
    if table is None:
        return CatalogSnapshot()
    rows = table.to_pyarrow_dataset().to_table().to_pylist()
    return CatalogSnapshot(table.version(), {row["media_id"]: row for row in rows})


@dataclass(frozen=True)
class ColdStart:
    """The '*' list of recs_topk: what a user the champion does not know is shown."""

    version: int | None = None
    model_version: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)


def load_cold_start(settings: Settings) -> ColdStart:
    """The '*' rows of recs_topk, best first."""
    table = open_table(settings, RECS_TABLE)
    if table is None:
        return ColdStart()
    # Filtered after the scan: files that delta-rs MERGE rewrote store strings as string_view, and
    # a pushed-down filter then fails to bind ('equal' has no kernel for string vs string_view).
    recs = table.to_pyarrow_dataset().to_table(
        columns=["user_id", "rank", "media_id", "score", "model_version"]
    )
    rows = recs.filter(pc.equal(recs["user_id"], COLD_START_USER)).sort_by("rank").to_pylist()
    model_version = rows[0]["model_version"] if rows else None
    items = [{"media_id": r["media_id"], "score": r["score"], "rank": r["rank"]} for r in rows]
    return ColdStart(table.version(), model_version, items)
