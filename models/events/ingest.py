"""One way in for player events, whether a batch job or POST /events sends them.

Rows are routed by event_type: view events (play, pause, ...) to view_events, playback beacons
(load_start, first_frame, rebuffer_start, ...) to playback_beacons. Both tables get the same
treatment below; only the per-row checks differ (validate_event, validate_beacon).

Producers are at-least-once; view_events must be exactly-once. So every row is validated on its
own (a bad row is kept in events_rejected with a reason the producer can act on, and never sinks
the batch), valid rows are deduplicated in the batch and against the table (Delta MERGE inserts
only unseen event_ids), and the hours the new events touch are handed back so hourly_stats can be
refreshed for just those hours, late events included.

Decisions a producer may care about:

- Unknown fields are ignored (producers may add fields before the schema does); they are not stored,
  but a rejected row's raw JSON keeps them.
- Ids are opaque strings: numbers are "not a string", blank strings are "empty". Ids and the other
  text fields (device, tier, error_code) hold at most MAX_TEXT_CHARS (256) characters: a longer
  one is rejected, "over 256 characters", so no megabyte id reaches view_events or becomes a key.
  events_rejected keeps the raw row whole, as sent (the API's 2 MiB body limit bounds a request).
- event_type is case-sensitive, one of EVENT_TYPES. position_s must be a JSON number (not a
  numeric string), finite, 0 <= position_s <= 7 days.
- ts is an ISO-8601 string with an offset (or "Z") or a tz-aware datetime; naive times are
  ambiguous and rejected; ts more than 5 minutes after received_at is rejected (clock skew).
  Sub-microsecond digits are dropped.
- An event_id seen twice keeps its first valid copy, in the batch and across batches; later copies
  count as duplicates even if their fields differ (logged as a warning).
- Rejections are keyed (event_id, reason), or (sha256 of the raw row, reason) when the id itself is
  unusable, and written insert-only: a replay adds nothing and the first received_at stays.
  A row with several problems gets one rejection per problem.

Reasons read "<field>: <problem>", e.g. "position_s: negative" (see validate_event).

Beacons: played_s (optional, seconds of content played so far) is checked like position_s;
duration_ms is required on first_frame (startup time), rebuffer_end (the stall) and
exit_before_start (the wait), a number in [0, 1 day]; rendition_switch needs bitrate (bits/s),
width and height, and any beacon may carry player_width/player_height: all integers >= 1.
An event_id is exactly-once within its table (a retry repeats its event_type, so its table).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from models.events.aggregates import hourly_stats, sessions
from models.lake import tables
from models.lake.schemas import HOURLY_STATS, PLAYBACK_BEACONS, VIEW_EVENTS
from models.settings import Settings

log = logging.getLogger(__name__)

EVENT_TYPES = ("play", "pause", "seek", "heartbeat", "complete")
BEACON_TYPES = (
    "load_start",
    "first_frame",
    "rebuffer_start",
    "rebuffer_end",
    "rendition_switch",
    "error",
    "fatal_error",
    "exit_before_start",
    "view_end",
)
TIMED_BEACONS = ("first_frame", "rebuffer_end", "exit_before_start")  # duration_ms required
MAX_DURATION_MS = 86_400_000.0
MAX_PIXELS_SIDE = 16_384
MAX_BITRATE = 10**10
INTEGER_FIELDS = ("bitrate", "width", "height", "player_width", "player_height")
ID_FIELDS = ("event_id", "user_id", "media_id", "session_id")
OPTIONAL_TEXT_FIELDS = ("device", "tier")
MAX_TEXT_CHARS = 256
MAX_POSITION_S = 7 * 86_400.0
MAX_CLOCK_SKEW = timedelta(minutes=5)

EVENT_SCHEMA = pl.Schema(
    {
        name: pl.Datetime("us", "UTC") if name == "ts" else pl.Float64 if name == "position_s" else pl.String
        for name in VIEW_EVENTS.schema.names
    }
)
BEACON_SCHEMA = pl.Schema(pl.from_arrow(PLAYBACK_BEACONS.schema.empty_table()).schema)  # type: ignore[union-attr]
STAT_KEYS = list(HOURLY_STATS.keys)


@dataclass(frozen=True)
class IngestResult:
    accepted: int  # rows inserted into view_events
    duplicates: int  # valid rows not inserted: repeated in the batch or already in the table
    rejected: int  # input rows that failed validation (each kept in events_rejected)
    affected_hours: list[tuple[str, datetime]]  # (media_id, UTC hour) of the inserted events
    write: tables.WriteResult  # view_events after the insert
    beacons: tables.WriteResult | None = None  # playback_beacons after the insert, if any came

    def metadata(self) -> dict[str, int | str]:
        """What an asset or the API reports about a batch."""
        beacons = {"beacons_accepted": self.beacons.rows_written} if self.beacons else {}
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "affected_hours": len(self.affected_hours),
            **beacons,
            **self.write.metadata(),
        }


def _text_problem(value: object) -> str | None:
    if value is None:
        return "missing"
    if problem := _optional_text_problem(value):
        return problem
    return None if str(value).strip() else "empty"


def _optional_text_problem(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return "not a string"
    return f"over {MAX_TEXT_CHARS} characters" if len(value) > MAX_TEXT_CHARS else None


def _position(value: object) -> tuple[float | None, str | None]:
    if value is None:
        return None, "missing"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None, "not a number"
    position = float(value)
    if not math.isfinite(position):
        return None, "not finite"
    if position < 0:
        return None, "negative"
    if position > MAX_POSITION_S:
        return None, "over 7 days"
    return position, None


def _timestamp(value: object, received_at: datetime) -> tuple[datetime | None, str | None]:
    if value is None:
        return None, "missing"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None, "not an ISO-8601 timestamp"
    if not isinstance(value, datetime):
        return None, "not a timestamp (ISO-8601 string or datetime)"
    if value.tzinfo is None or value.utcoffset() is None:
        return None, "no timezone (ambiguous)"
    try:
        ts = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None, "out of range"
    if ts > received_at + MAX_CLOCK_SKEW:
        return None, "more than 5 minutes after received_at"
    return ts, None


def validate_event(row: object, received_at: datetime) -> tuple[dict[str, Any] | None, list[str]]:
    """The row as a view_events row, or None and every reason it is not one."""
    if not isinstance(row, Mapping):
        return None, ["row: not a JSON object"]
    reasons = [f"{name}: {p}" for name in ID_FIELDS if (p := _text_problem(row.get(name)))]
    event_type = row.get("event_type")
    if event_type is None:
        reasons.append("event_type: missing")
    elif event_type not in EVENT_TYPES:
        reasons.append(f"event_type: not one of {', '.join(EVENT_TYPES)}")
    position, problem = _position(row.get("position_s"))
    if problem:
        reasons.append(f"position_s: {problem}")
    ts, problem = _timestamp(row.get("ts"), received_at)
    if problem:
        reasons.append(f"ts: {problem}")
    reasons += [
        f"{name}: {p}" for name in OPTIONAL_TEXT_FIELDS if (p := _optional_text_problem(row.get(name)))
    ]
    if reasons:
        return None, reasons
    event = {name: row.get(name) for name in EVENT_SCHEMA.names()}
    return {**event, "position_s": position, "ts": ts}, []


def _number(value: object, low: float, high: float) -> tuple[float | None, str | None]:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None, "not a number"
    number = float(value)
    if not math.isfinite(number):
        return None, "not finite"
    if not low <= number <= high:
        return None, f"not in [{low:g}, {high:g}]"
    return number, None


def _beacon_fields(row: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The beacon-only columns of a row, and what is wrong with them."""
    kind = row.get("event_type")
    required = {
        "duration_ms": kind in TIMED_BEACONS,
        "bitrate": kind == "rendition_switch",
        "width": kind == "rendition_switch",
        "height": kind == "rendition_switch",
    }
    limits = {"duration_ms": MAX_DURATION_MS, "bitrate": MAX_BITRATE, "played_s": MAX_POSITION_S}
    fields: dict[str, Any] = {}
    reasons: list[str] = []
    for name in ("played_s", "duration_ms", *INTEGER_FIELDS):
        value = row.get(name)
        if value is None:
            if required.get(name):
                reasons.append(f"{name}: missing")
            continue
        low = 1.0 if name in INTEGER_FIELDS else 0.0  # a 0-pixel picture or 0 b/s rung is a bug
        number, problem = _number(value, low, limits.get(name, MAX_PIXELS_SIDE))
        if number is not None and name in INTEGER_FIELDS:
            problem, number = (None, int(number)) if number.is_integer() else ("not an integer", None)
        if problem:
            reasons.append(f"{name}: {problem}")
        fields[name] = number
    code = row.get("error_code")
    if problem := _optional_text_problem(code):
        reasons.append(f"error_code: {problem}")
    return {**fields, "error_code": code}, reasons


def validate_beacon(row: object, received_at: datetime) -> tuple[dict[str, Any] | None, list[str]]:
    """The row as a playback_beacons row, or None and every reason it is not one.

    The shared fields are checked by validate_event (with a stand-in event_type and position_s,
    which beacons do not have), so ids, ts, device and tier read the same for both tables.
    """
    if not isinstance(row, Mapping):
        return None, ["row: not a JSON object"]
    common, reasons = validate_event({**row, "event_type": EVENT_TYPES[0], "position_s": 0.0}, received_at)
    if row.get("event_type") not in BEACON_TYPES:
        reasons.append(f"event_type: not one of {', '.join(BEACON_TYPES)}")
    fields, problems = _beacon_fields(row)
    reasons += problems
    if common is None or reasons:
        return None, reasons
    beacon = {**common, **fields, "event_type": row["event_type"]}
    return {name: beacon.get(name) for name in BEACON_SCHEMA.names()}, []


def is_beacon(row: object) -> bool:
    """Whether a row goes to playback_beacons (by its event_type) rather than view_events."""
    return isinstance(row, Mapping) and row.get("event_type") in BEACON_TYPES


def validate_row(row: object, received_at: datetime) -> tuple[dict[str, Any] | None, list[str]]:
    """validate_beacon or validate_event, whichever table the row's event_type routes it to."""
    return (validate_beacon if is_beacon(row) else validate_event)(row, received_at)


def _raw_json(row: object) -> str:
    """The row as a producer sent it, deterministic so its hash names it across replays."""
    if isinstance(row, Mapping):
        row = {str(key): value for key, value in row.items()}
    try:
        return json.dumps(row, sort_keys=True, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(repr(row))


def _rejection_id(row: object, raw: str) -> str:
    event_id = row.get("event_id") if isinstance(row, Mapping) else None
    if isinstance(event_id, str) and _text_problem(event_id) is None:
        return event_id
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


# The common ts text, e.g. "2026-11-05T10:00:04.5Z" or "...+02:00", which Polars parses exactly as
# datetime.fromisoformat does; anything else (spaces, leap seconds, odd years) is left to it.
_PLAIN_ISO = (
    r"^(19|2\d)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
    r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_BLANK = r"^[\s\x1c-\x1f]*$"  # str.strip()'s whitespace: Unicode White_Space plus \x1c-\x1f
_NUMBERS = (pl.Float32, pl.Float64, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)
_TEXT = (pl.String, pl.Null)


def _bulk_timestamp(column: pl.Expr, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr] | None:
    """(ts in UTC, whether Polars' reading is surely fromisoformat's) or None: no bulk path."""
    if dtype == pl.String:
        parsed = column.str.replace(r"Z$", "+00:00").str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC", strict=False
        )
        return parsed, column.str.contains(_PLAIN_ISO) & parsed.is_not_null()
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None and dtype.time_unit in ("us", "ms"):
        ts = column.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        return ts, ts.dt.year().is_between(1900, 2999)  # far from astimezone's overflow
    return None


def _bulk_checks(frame: pl.DataFrame, received_at: datetime) -> pl.DataFrame | None:
    """EVENT_SCHEMA columns plus "ok", true where validate_event surely accepts the row with these
    values; None where a column's type has no bulk path. Rows not ok go to validate_event, so
    this only has to be exact about what it passes, and conservative elsewhere."""
    schema = frame.schema
    if any(schema.get(name) != pl.String for name in (*ID_FIELDS, "event_type")):
        return None
    if any(schema.get(name, pl.Null) not in _TEXT for name in OPTIONAL_TEXT_FIELDS):
        return None
    if schema.get("position_s") not in _NUMBERS or "ts" not in schema:
        return None
    timestamp = _bulk_timestamp(pl.col("ts"), schema["ts"])
    if timestamp is None:
        return None
    ts, ts_ok = timestamp
    position = pl.col("position_s").cast(pl.Float64)
    limit = pl.lit(received_at + MAX_CLOCK_SKEW, dtype=pl.Datetime("us", "UTC"))
    ok = pl.all_horizontal(
        *(pl.col(name).is_not_null() & ~pl.col(name).str.contains(_BLANK) for name in ID_FIELDS),
        *(pl.col(name).str.len_chars() <= MAX_TEXT_CHARS for name in ID_FIELDS),
        *(
            pl.col(name).is_null() | (pl.col(name).str.len_chars() <= MAX_TEXT_CHARS)
            for name in OPTIONAL_TEXT_FIELDS
            if name in schema
        ),
        pl.col("event_type").is_in(list(EVENT_TYPES)),
        position.is_finite() & (position >= 0) & (position <= MAX_POSITION_S),
        ts_ok & (ts <= limit),
    ).fill_null(False)
    optional = [
        pl.col(name).cast(pl.String) if name in schema else pl.lit(None, pl.String).alias(name)
        for name in OPTIONAL_TEXT_FIELDS
    ]
    values = [*(pl.col(name) for name in (*ID_FIELDS, "event_type")), position, ts.alias("ts"), *optional]
    return frame.select(*values, ok.alias("ok")).select(*EVENT_SCHEMA.names(), "ok")


def _validate(
    rows: Sequence[Mapping[str, Any]] | pl.DataFrame, received_at: datetime
) -> tuple[pl.DataFrame, list[tuple[object, list[str]]]]:
    """The valid rows as events in input order, and every invalid row with its reasons.

    A frame is checked column-wise in Polars (per-row Python was most of ingest's time); only rows
    the bulk checks do not pass, and lists of rows, go through validate_event row by row.
    """
    checked = _bulk_checks(rows, received_at) if isinstance(rows, pl.DataFrame) else None
    if checked is None:
        slow: Sequence[object] = rows.to_dicts() if isinstance(rows, pl.DataFrame) else rows
        slow_index: Sequence[int] = range(len(slow))
        fast = pl.DataFrame(schema=EVENT_SCHEMA)
    else:
        ok = checked["ok"]
        fast = checked.filter(ok).drop("ok")
        if fast.height == checked.height:
            return fast, []
        slow_index = ok.not_().arg_true().to_list()
        assert isinstance(rows, pl.DataFrame)
        slow = rows[slow_index].to_dicts()
    valid: list[dict[str, Any]] = []
    valid_index: list[int] = []
    rejected: list[tuple[object, list[str]]] = []
    for index, row in zip(slow_index, slow, strict=True):
        event, reasons = validate_event(row, received_at)
        if event is None:
            rejected.append((row, reasons))
        else:
            valid.append(event)
            valid_index.append(index)
    if not valid:
        return fast, rejected
    slow_valid = pl.DataFrame(valid, schema=EVENT_SCHEMA)
    if checked is None:
        return slow_valid, rejected
    fast_index = checked["ok"].arg_true().alias("i")
    merged = pl.concat(
        [fast.with_columns(fast_index), slow_valid.with_columns(pl.Series("i", valid_index, pl.UInt32))]
    )
    return merged.sort("i").drop("i"), rejected


def _hours(frame: pl.DataFrame) -> list[tuple[str, datetime]]:
    pairs = frame.select("media_id", pl.col("ts").dt.truncate("1h").alias("hour")).unique()
    return [(media_id, hour) for media_id, hour in pairs.sort("media_id", "hour").iter_rows()]


def _split(
    rows: Sequence[Mapping[str, Any]] | pl.DataFrame,
) -> tuple[Sequence[Any] | pl.DataFrame, list[Any]]:
    """(view rows, beacon rows): beacons by event_type, everything else (invalid rows too) as views."""
    if isinstance(rows, pl.DataFrame):
        if rows.schema.get("event_type") != pl.String:
            return rows, []
        beacon = pl.col("event_type").is_in(list(BEACON_TYPES)).fill_null(False)
        return rows.filter(~beacon), rows.filter(beacon).to_dicts()
    return [row for row in rows if not is_beacon(row)], [row for row in rows if is_beacon(row)]


def _validate_beacons(
    rows: Sequence[object], received_at: datetime
) -> tuple[pl.DataFrame, list[tuple[object, list[str]]]]:
    """Like _validate, row by row: beacons are a few per session, not a bulk path's worth."""
    checked = [(row, *validate_beacon(row, received_at)) for row in rows]
    valid = [beacon for _, beacon, _ in checked if beacon is not None]
    return pl.DataFrame(valid, schema=BEACON_SCHEMA), [
        (row, why) for row, beacon, why in checked if beacon is None
    ]


def _reject(settings: Settings, invalid: Sequence[tuple[object, list[str]]], received_at: datetime) -> None:
    """Keep every invalid row in events_rejected, one row per reason, insert-only."""
    rejections: list[dict[str, Any]] = []
    for row, reasons in invalid:
        raw = _raw_json(row)
        key = _rejection_id(row, raw)
        rejections += [
            {"event_id": key, "reason": r, "raw": raw, "received_at": received_at} for r in reasons
        ]
    if rejections:
        tables.insert_new(settings, "events_rejected", rejections)


def _insert(settings: Settings, name: str, batch: pl.DataFrame) -> tuple[tables.WriteResult, pl.DataFrame]:
    """Insert the batch's first copy of each event_id that the table lacks."""
    unique = batch.unique(subset="event_id", keep="first", maintain_order=True)
    conflicting = batch.unique().height - unique.height if unique.height < batch.height else 0
    if conflicting:
        log.warning(
            "%d repeated event_ids in the batch differ from their first copy; kept the first", conflicting
        )
    return tables.insert_new_rows(settings, name, unique)


def ingest_events(
    settings: Settings,
    rows: Sequence[Mapping[str, Any]] | pl.DataFrame,
    received_at: datetime | None = None,
) -> IngestResult:
    """Validate, deduplicate and insert a batch; a replay of the same batch commits nothing.

    affected_hours may over-report when another writer inserts the same events concurrently
    (refreshing an hour twice is harmless); it never misses an hour this call inserted into.
    Beacons do not touch hourly_stats, so they add no affected hours.
    """
    if received_at is not None and received_at.tzinfo is None:
        raise ValueError("ingest_events needs a tz-aware received_at (naive ones are ambiguous)")
    received_at = (received_at or datetime.now(UTC)).astimezone(UTC)
    view_rows, beacon_rows = _split(rows)
    batch, invalid = _validate(view_rows, received_at)
    beacons, invalid_beacons = _validate_beacons(beacon_rows, received_at)
    _reject(settings, [*invalid, *invalid_beacons], received_at)
    write, fresh = _insert(settings, VIEW_EVENTS.name, batch)
    beacon_write = _insert(settings, PLAYBACK_BEACONS.name, beacons)[0] if beacon_rows else None
    inserted = write.rows_written + (beacon_write.rows_written if beacon_write else 0)
    result = IngestResult(
        accepted=inserted,
        duplicates=batch.height + beacons.height - inserted,
        rejected=len(invalid) + len(invalid_beacons),
        affected_hours=_hours(fresh),
        write=write,
        beacons=beacon_write,
    )
    log.info("ingested events: %s", result.metadata())
    return result


def _pairs(affected: Sequence[tuple[str, datetime]]) -> pl.DataFrame:
    if any(hour.tzinfo is None for _, hour in affected):
        raise ValueError("refresh_hours needs tz-aware hours (naive ones are ambiguous)")
    frame = pl.DataFrame(
        {"media_id": [m for m, _ in affected], "hour": [h.astimezone(UTC) for _, h in affected]},
        schema={"media_id": pl.String, "hour": pl.Datetime("us", "UTC")},
    )
    return frame.with_columns(pl.col("hour").dt.truncate("1h")).unique()


def _current(settings: Settings, rows_written: int) -> tables.WriteResult:
    table = tables.open_table(settings, HOURLY_STATS.name)
    if table is None:
        return tables.WriteResult(HOURLY_STATS.name, -1, rows_written, 0)
    return tables.WriteResult(HOURLY_STATS.name, table.version(), rows_written, table.count())


def refresh_hours(settings: Settings, affected: Sequence[tuple[str, datetime]]) -> tables.WriteResult:
    """Recompute hourly_stats for the (media_id, hour) pairs new events touched, and no others.

    Stats group sessions by their start hour, so a late event can change the row of the hour its
    session started in, or move the start to an earlier hour. The recomputed pairs are therefore
    every hour any event of a touched session falls in (old and new start hours among them), and
    each is rebuilt from all sessions starting in it. Rows that no longer have sessions are deleted;
    unchanged rows are not rewritten.
    """
    pairs = _pairs(affected)
    if pairs.is_empty():
        return _current(settings, 0)
    columns = ["user_id", "media_id", "session_id", "event_type", "position_s", "ts"]
    events = tables.read_table(settings, VIEW_EVENTS.name, columns=columns).lazy()
    hour = pl.col("ts").dt.truncate("1h").alias("hour")
    touched = events.with_columns(hour).join(pairs.lazy(), on=STAT_KEYS, how="semi").select("session_id")
    session_hours = events.join(touched, on="session_id", how="semi").select("media_id", hour)
    targets = pl.concat([pairs.lazy(), session_hours]).unique().collect()
    starting = (
        sessions(events)
        .select("session_id", "media_id", pl.col("started_at").dt.truncate("1h").alias("hour"))
        .join(targets.lazy(), on=STAT_KEYS, how="semi")
        .select("session_id")
    )
    stats = hourly_stats(events.join(starting, on="session_id", how="semi")).collect()
    result = tables.upsert(settings, HOURLY_STATS.name, stats)
    existing = tables.read_table(settings, HOURLY_STATS.name, columns=STAT_KEYS)
    stale = existing.join(targets, on=STAT_KEYS, how="semi").join(stats, on=STAT_KEYS, how="anti")
    if stale.is_empty():
        return result
    tables.delete_rows(settings, HOURLY_STATS.name, stale)
    log.info("hourly_stats: deleted %d rows whose sessions moved to another hour", stale.height)
    return _current(settings, result.rows_written)
