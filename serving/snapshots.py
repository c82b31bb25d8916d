"""The published lake snapshots as the API holds them in memory, each tagged with its Delta version.

A replica answers from one immutable snapshot and swaps in a new one only when the table's
version moves, so a request never sees half of a write and a republish needs no restart. Data and
version come from the same opened table, so the version a replica reports is the one it serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow.compute as pc

from models.lake.schemas import ALL_TABLES, COLD_START_USER
from models.lake.tables import open_table
from models.qoe.metrics import title_qoe
from models.recsys.exploration import evidence_from_hourly_stats
from models.settings import Settings

CATALOG_TABLE = "api_catalog"
EVIDENCE_TABLE = "hourly_stats"  # completions per title: what exploration weighs titles by
QOE_TABLE = "qoe_hourly"  # how titles play per device class: what QoE demotion reads
RECS_TABLE = "recs_topk"
EXTRAS_TABLES = ("chapters", "thumbnails")  # what playback adds to api_catalog


def table_version(settings: Settings, name: str) -> int | None:
    """The table's current Delta version (None before its first write): the cheap reload probe."""
    table = open_table(settings, name)
    return None if table is None else table.version()


@dataclass(frozen=True)
class CatalogSnapshot:
    """api_catalog rows keyed by media_id, as plain JSON-ready dicts, in title order (media_id
    breaking ties): a page of the catalog listing is a slice, not a sort per request."""

    version: int | None = None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_catalog(settings: Settings) -> CatalogSnapshot:
    table = open_table(settings, CATALOG_TABLE)
    if table is None:
        return CatalogSnapshot()
    rows = table.to_pyarrow_dataset().to_table().to_pylist()
    rows.sort(key=lambda row: (row["title"] or "", row["media_id"]))
    return CatalogSnapshot(table.version(), {row["media_id"]: row for row in rows})


@dataclass(frozen=True)
class ColdStart:
    """The '*' list of recs_topk: what a user the champion does not know is shown."""

    version: int | None = None
    model_version: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)

    def ranking(self, user_id: str, n: int) -> pl.DataFrame:
        """The first n items as a ranking for user_id (user_id, rank, media_id, score)."""
        return pl.DataFrame(
            [{"user_id": user_id, **item} for item in self.items[:n]],
            schema={"user_id": pl.String, "rank": pl.Int32, "media_id": pl.String, "score": pl.Float64},
        )


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


def read_versioned(settings: Settings, name: str, columns: list[str]) -> tuple[int | None, pl.DataFrame]:
    """A table's columns with the version they were read at (None and no rows before its first write)."""
    table = open_table(settings, name)
    if table is None:
        empty = pl.from_arrow(ALL_TABLES[name].schema.empty_table())
        assert isinstance(empty, pl.DataFrame)
        return None, empty.select(columns)
    frame = pl.from_arrow(table.to_pyarrow_dataset().to_table(columns=columns))
    assert isinstance(frame, pl.DataFrame)
    return table.version(), frame


@dataclass(frozen=True)
class PlaybackExtras:
    """Per media_id: its chapters, in order, and its trickplay map (the thumbnails row)."""

    versions: tuple[int | None, ...] = ()
    chapters: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    trickplay: dict[str, dict[str, Any]] = field(default_factory=dict)


def extras_versions(settings: Settings) -> tuple[int | None, ...]:
    return tuple(table_version(settings, name) for name in EXTRAS_TABLES)


def load_extras(settings: Settings) -> PlaybackExtras:
    chapters_version, chapters = read_versioned(
        settings, "chapters", ["media_id", "chapter_idx", "start_s", "end_s", "title"]
    )
    thumbs_version, thumbs = read_versioned(
        settings, "thumbnails", ["media_id", "kind", "path", "width", "height", "time_s"]
    )
    by_item: dict[str, list[dict[str, Any]]] = {}
    for row in chapters.sort("media_id", "chapter_idx").to_dicts():
        by_item.setdefault(row.pop("media_id"), []).append(row)
    trickplay = {row.pop("media_id"): row for row in thumbs.filter(pl.col("kind") == "trickplay").to_dicts()}
    return PlaybackExtras((chapters_version, thumbs_version), by_item, trickplay)


@dataclass(frozen=True)
class Derived:
    """A table reduced to what one ranking option reads, with the Delta version it was read at."""

    version: int | None
    rows: pl.DataFrame


NO_EVIDENCE = Derived(
    None, pl.DataFrame(schema={"media_id": pl.String, "trials": pl.Int64, "successes": pl.Int64})
)
NO_QOE = Derived(
    None, pl.DataFrame(schema={"media_id": pl.String, "device_class": pl.String, "qoe_score": pl.Float64})
)


def load_evidence(settings: Settings) -> Derived:
    """Sessions started and completed per media_id, for exploration."""
    version, hourly = read_versioned(settings, EVIDENCE_TABLE, ["media_id", "views", "completion_rate"])
    return Derived(version, evidence_from_hourly_stats(hourly))


def load_title_qoe(settings: Settings) -> Derived:
    """Session-weighted QoE score per media_id and device class, for demotion."""
    version, hourly = read_versioned(
        settings, QOE_TABLE, ["media_id", "device_class", "sessions", "qoe_score"]
    )
    return Derived(version, title_qoe(hourly))
