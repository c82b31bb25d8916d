"""The only code that touches lake storage: open, read, upsert, insert-new, snapshot paths.

Writes are idempotent: rows already present with identical values are not rewritten, so a
re-run commits nothing and table versions stay put. Concurrent writers that lose a Delta
commit race are retried, then reported with the table's name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from models.lake.schemas import ALL_TABLES, TableSpec
from models.settings import Settings

log = logging.getLogger(__name__)

COMMIT_RETRIES = 8


class SchemaMismatch(ValueError):
    """Incoming rows do not fit a table's declared schema."""


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int
    rows_written: int
    row_count: int

    def metadata(self) -> dict[str, int | str]:
        """What an asset records: the Delta version it produced and the row counts."""
        return {
            "table": self.table,
            "delta_version": self.version,
            "rows_written": self.rows_written,
            "row_count": self.row_count,
        }


def table_uri(settings: Settings, name: str) -> str:
    return f"{settings.lake_root.rstrip('/')}/{name}"


def open_table(settings: Settings, name: str) -> DeltaTable | None:
    """The table, or None where it has never been written."""
    try:
        return DeltaTable(table_uri(settings, name), storage_options=settings.storage_options)
    except TableNotFoundError:
        return None


def read_table(settings: Settings, name: str, columns: list[str] | None = None) -> pl.DataFrame:
    """A snapshot as Polars; an empty frame with the declared schema where the table is absent."""
    table = open_table(settings, name)
    if table is None:
        empty = ALL_TABLES[name].schema.empty_table()
        frame = pl.from_arrow(empty)
    else:
        frame = pl.from_arrow(table.to_pyarrow_dataset().to_table(columns=columns))
    assert isinstance(frame, pl.DataFrame)
    return frame.select(columns) if columns else frame


@dataclass(frozen=True)
class Changes:
    """How a table's rows differ between an earlier version and now."""

    since: int  # the earlier version
    version: int  # the current version
    upserted: pl.DataFrame  # rows now present that the earlier version lacked (new or changed)
    deleted: pl.DataFrame  # keys of the earlier version that are gone

    @property
    def empty(self) -> bool:
        return self.upserted.is_empty() and self.deleted.is_empty()


def changes_since(settings: Settings, name: str, version: int) -> Changes | None:
    """Rows inserted, changed or deleted since `version`; None where that version cannot be read
    (the table is gone, or its log or files were cleaned up): the caller then starts over.

    Snapshots are compared row by row, not file by file: a MERGE rewrites whole files, so a file
    diff would call every row that shared a file with one changed row "changed".
    """
    table = open_table(settings, name)
    if table is None:
        return None
    try:
        earlier = DeltaTable(
            table_uri(settings, name), version=version, storage_options=settings.storage_options
        )
        before = pl.from_arrow(earlier.to_pyarrow_dataset().to_table())
    except (DeltaError, OSError) as err:
        log.info("%s: version %d is not readable (%s); treating every row as changed", name, version, err)
        return None
    now = pl.from_arrow(table.to_pyarrow_dataset().to_table())
    assert isinstance(before, pl.DataFrame) and isinstance(now, pl.DataFrame)
    keys = list(ALL_TABLES[name].keys)
    fingerprint = "__row_hash"
    upserted = (
        now.with_columns(now.hash_rows().alias(fingerprint))
        .join(
            before.select(before.select(now.columns).hash_rows().alias(fingerprint)),
            on=fingerprint,
            how="anti",
        )
        .drop(fingerprint)
    )
    deleted = before.select(keys).join(now.select(keys), on=keys, how="anti", nulls_equal=True)
    return Changes(version, table.version(), upserted, deleted)


def snapshot_files(settings: Settings, name: str) -> list[str]:
    """The data files of the current version: what Spark or DuckDB must read, and nothing else."""
    table = open_table(settings, name)
    return table.file_uris() if table is not None else []


def conform(rows: pa.Table | pl.DataFrame | list[dict], spec: TableSpec) -> pa.Table:
    """Cast incoming rows to the table's schema; a clear error names missing or extra columns."""
    expected = spec.schema.names
    if isinstance(rows, list):
        given = list(dict.fromkeys(key for row in rows for key in row)) if rows else expected
    else:
        given = rows.columns if isinstance(rows, pl.DataFrame) else rows.column_names
    missing = [c for c in expected if c not in given]
    extra = [c for c in given if c not in expected]
    if missing or extra:
        raise SchemaMismatch(f"table {spec.name}: missing columns {missing}, unexpected columns {extra}")
    try:
        if isinstance(rows, list):
            return pa.Table.from_pylist(rows, schema=spec.schema)
        table = rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows
        return table.select(expected).cast(spec.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        raise SchemaMismatch(f"table {spec.name}: {err}") from err


def _row_fingerprints(frame: pl.DataFrame) -> pl.Series:
    return frame.select(pl.struct(pl.all()).struct.json_encode().alias("fp")).to_series()


def _changed_rows(settings: Settings, spec: TableSpec, incoming: pa.Table, keys_only: bool) -> pa.Table:
    """Incoming rows that are new (keys_only) or differ from what the table holds."""
    table = open_table(settings, spec.name)
    if table is None or incoming.num_rows == 0:
        return incoming
    new = pl.from_arrow(incoming)
    assert isinstance(new, pl.DataFrame)
    key_cols = list(spec.keys)
    existing = read_table(settings, spec.name, columns=None if not keys_only else key_cols)
    if keys_only:
        fresh = new.join(existing, on=key_cols, how="anti", nulls_equal=True)
    else:
        existing = existing.join(new.select(key_cols), on=key_cols, how="semi", nulls_equal=True)
        known = set(_row_fingerprints(existing.select(new.columns)).to_list())
        fresh = new.filter(~_row_fingerprints(new).is_in(list(known)))
    return fresh.to_arrow().cast(spec.schema)


def _with_retries(spec: TableSpec, write: Callable[[], None]) -> None:
    for attempt in range(1, COMMIT_RETRIES + 1):
        try:
            write()
            return
        except (CommitFailedError, DeltaError) as err:
            if "conflict" not in str(err).lower() and not isinstance(err, CommitFailedError):
                raise
            if attempt == COMMIT_RETRIES:
                raise RuntimeError(
                    f"table {spec.name}: commit still conflicting after {COMMIT_RETRIES} tries: {err}"
                ) from err
            log.warning("table %s: commit conflict (try %d), retrying: %s", spec.name, attempt, err)
            time.sleep(0.05 * 2**attempt)


def _merge(settings: Settings, spec: TableSpec, rows: pa.Table, insert_only: bool) -> None:
    uri = table_uri(settings, spec.name)
    table = open_table(settings, spec.name)
    if table is None:
        try:
            write_deltalake(uri, rows, mode="error", storage_options=settings.storage_options)
            return
        except DeltaError as err:
            table = open_table(settings, spec.name)
            if table is None:  # not the "another writer created it first" race: a real error
                raise
            log.info("table %s: created concurrently (%s), merging instead", spec.name, err)
    predicate = " AND ".join(f"t.{k} = s.{k}" for k in spec.keys)
    merger = table.merge(source=rows, predicate=predicate, source_alias="s", target_alias="t")
    if not insert_only:
        merger = merger.when_matched_update_all()
    merger.when_not_matched_insert_all().execute()


def _write(settings: Settings, name: str, rows: object, insert_only: bool) -> tuple[WriteResult, pa.Table]:
    """Merge the rows that are new (insert_only) or changed; the result and those rows."""
    spec = ALL_TABLES[name]
    incoming = conform(rows, spec)  # type: ignore[arg-type]
    duplicated = pl.from_arrow(incoming.select(list(spec.keys))).is_duplicated().any()  # type: ignore[union-attr]
    if duplicated and not insert_only:
        raise SchemaMismatch(f"table {name}: incoming rows repeat a key {spec.keys}")
    if duplicated:
        deduped = pl.from_arrow(incoming).unique(subset=list(spec.keys), keep="first", maintain_order=True)
        incoming = deduped.to_arrow().cast(spec.schema)  # type: ignore[union-attr]
    fresh = incoming.slice(0, 0)

    def attempt() -> None:
        nonlocal fresh
        fresh = _changed_rows(settings, spec, incoming, keys_only=insert_only)
        if fresh.num_rows or open_table(settings, spec.name) is None:
            _merge(settings, spec, fresh, insert_only)

    _with_retries(spec, attempt)
    return _result(settings, name, fresh.num_rows), fresh


def _result(settings: Settings, name: str, rows_written: int) -> WriteResult:
    table = open_table(settings, name)
    if table is None:
        return WriteResult(name, -1, rows_written, 0)
    return WriteResult(name, table.version(), rows_written, table.count())


def upsert(settings: Settings, name: str, rows: pa.Table | pl.DataFrame | list[dict]) -> WriteResult:
    """Insert new keys, update changed rows, leave identical rows (and the version) alone."""
    return _write(settings, name, rows, insert_only=False)[0]


def insert_new(settings: Settings, name: str, rows: pa.Table | pl.DataFrame | list[dict]) -> WriteResult:
    """Append rows whose key the table lacks: exactly-once over at-least-once producers."""
    return _write(settings, name, rows, insert_only=True)[0]


def insert_new_rows(
    settings: Settings, name: str, rows: pa.Table | pl.DataFrame | list[dict]
) -> tuple[WriteResult, pl.DataFrame]:
    """insert_new, also handing back the rows it inserted (one key scan serves both)."""
    result, fresh = _write(settings, name, rows, insert_only=True)
    inserted = pl.from_arrow(fresh)
    assert isinstance(inserted, pl.DataFrame)
    return result, inserted


def _delete_rows(settings: Settings, spec: TableSpec, match: pl.DataFrame) -> None:
    """Delete rows equal to match's rows on match's columns through a MERGE (typed values, no SQL
    literals: timestamps and quotes need no escaping), retrying conflicts."""
    schema = pa.schema([spec.schema.field(c) for c in match.columns])
    source = match.to_arrow().cast(schema)
    predicate = " AND ".join(f"t.{c} = s.{c}" for c in match.columns)

    def attempt() -> None:
        table = open_table(settings, spec.name)
        if table is not None:
            merger = table.merge(source=source, predicate=predicate, source_alias="s", target_alias="t")
            merger.when_matched_delete().execute()

    _with_retries(spec, attempt)


def delete_rows(settings: Settings, name: str, match: pl.DataFrame) -> WriteResult:
    """Delete the rows equal to match's rows on match's columns (e.g. a table's keys)."""
    if not match.is_empty():
        _delete_rows(settings, ALL_TABLES[name], match)
    return _result(settings, name, rows_written=0)


def delete_where_in(settings: Settings, name: str, column: str, values: list[str]) -> WriteResult:
    """Delete the rows whose column holds one of values (withdrawn items, superseded sessions)."""
    spec = ALL_TABLES[name]
    if values and open_table(settings, name) is not None:
        _delete_rows(settings, spec, pl.DataFrame({column: sorted(set(values))}))
    return _result(settings, name, rows_written=0)


def replace_rows(
    settings: Settings,
    name: str,
    rows: pa.Table | pl.DataFrame | list[dict],
    where: tuple[str, str] | None = None,
) -> WriteResult:
    """Make the table, or its slice where column == value, hold exactly these rows.

    Unchanged rows are left alone (no commit when nothing differs); rows the new set lacks are
    deleted, e.g. a media item's shots after re-detection finds fewer, or last run's top-k lists.
    """
    spec = ALL_TABLES[name]
    conformed = conform(rows, spec)
    result = upsert(settings, name, conformed)
    incoming = pl.from_arrow(conformed.select(list(spec.keys)))
    existing = read_table(settings, name, columns=list(spec.keys))
    if where is not None:
        existing = existing.filter(pl.col(where[0]) == where[1])
    stale = existing.join(incoming, on=list(spec.keys), how="anti", nulls_equal=True)
    if stale.is_empty():
        return result
    _delete_rows(settings, spec, stale)
    return _result(settings, name, result.rows_written)
