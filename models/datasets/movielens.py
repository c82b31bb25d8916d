"""MovieLens-100K for offline recommender evaluation, read from the copy the recbole wheel ships.

GroupLens' licence forbids redistribution, so the files stay inside site-packages and only their
parsed rows land in the lake, under `<lake_root>/datasets/ml100k/{users,items,ratings}`. The
import is a static snapshot: each table is overwritten whole, and skipped when its content hash
(kept in the Delta commit's metadata) says it already holds exactly these rows.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from models.lake.schemas import TS, TableSpec
from models.lake.tables import WriteResult, conform, open_table, table_uri
from models.settings import Settings

RECBOLE_VERSION = "1.2.1"
INSTALL_HINT = f".venv/bin/pip install --no-deps recbole=={RECBOLE_VERSION}"
NAMESPACE = "datasets/ml100k"
HASH_KEY = "streamlake.content_sha256"

# Table name -> the RecBole atomic file (recbole/dataset_example/ml-100k/ml-100k.<suffix>).
ATOMIC_FILES = {"users": "ml-100k.user", "items": "ml-100k.item", "ratings": "ml-100k.inter"}

# RecBole's header types -> how Polars reads the column (token_seq is split later where it is a list).
ATOMIC_TYPES: dict[str, pl.DataType] = {"token": pl.String(), "token_seq": pl.String(), "float": pl.Float64()}

f = pa.field

USERS = TableSpec(
    f"{NAMESPACE}/users",
    pa.schema(
        [
            f("user_id", pa.string(), nullable=False),
            f("age", pa.int32()),
            f("gender", pa.string()),
            f("occupation", pa.string()),
            f("zip_code", pa.string()),
        ]
    ),
    ("user_id",),
    "MovieLens-100K raters: age, gender (M/F), occupation and zip code as given (some are not US).",
)

ITEMS = TableSpec(
    f"{NAMESPACE}/items",
    pa.schema(
        [
            f("item_id", pa.string(), nullable=False),
            f("title", pa.string()),
            f("release_year", pa.int32()),
            f("genres", pa.list_(pa.string())),
        ]
    ),
    ("item_id",),
    "MovieLens-100K movies: title without the year, release year (null where RecBole's copy has "
    "none) and genres from the 19 ML-100K labels ('unknown' included).",
)

RATINGS = TableSpec(
    f"{NAMESPACE}/ratings",
    pa.schema(
        [
            f("user_id", pa.string(), nullable=False),
            f("item_id", pa.string(), nullable=False),
            f("rating", pa.float64()),
            f("ts", TS),
        ]
    ),
    ("user_id", "item_id"),
    "MovieLens-100K explicit ratings 1..5, one per user and item, with the rating time (UTC).",
)

ML100K_TABLES: dict[str, TableSpec] = {"users": USERS, "items": ITEMS, "ratings": RATINGS}
TABLES = list(ML100K_TABLES.items())


def movielens_files() -> dict[str, Path]:
    """The atomic files of the installed recbole wheel, keyed by table name (users, items, ratings)."""
    try:
        entries = importlib.metadata.files("recbole") or []
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(f"MovieLens-100K comes from the recbole wheel: {INSTALL_HINT}") from err
    found = {}
    for entry in entries:
        for table, name in ATOMIC_FILES.items():
            if str(entry).endswith(f"ml-100k/{name}"):
                found[table] = Path(str(entry.locate())).resolve()
    missing = [ATOMIC_FILES[t] for t in ATOMIC_FILES if t not in found or not found[t].is_file()]
    if missing:
        raise FileNotFoundError(f"recbole ships no {missing}: reinstall it ({INSTALL_HINT})")
    return found


def read_atomic(path: Path, expected: dict[str, str]) -> pl.DataFrame:
    """One RecBole atomic file (tab-separated, `name:type` headers) with the columns it must declare.

    The header is checked against `expected` (name -> RecBole type) so that a reshaped file in a
    future wheel fails here with its header rather than as odd values downstream.
    """
    with path.open(encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
    declared = {name: kind for name, _, kind in (column.rpartition(":") for column in header)}
    if declared != expected:
        wanted = [f"{name}:{kind}" for name, kind in expected.items()]
        raise ValueError(f"{path.name}: header {header}, expected {wanted}")
    schema = {column: ATOMIC_TYPES[column.rpartition(":")[2]] for column in header}
    raw = pl.read_csv(path, separator="\t", has_header=True, schema=schema, quote_char=None)
    return raw.rename({column: column.rpartition(":")[0] for column in header})


def parse_users(path: Path) -> pl.DataFrame:
    raw = read_atomic(
        path,
        {"user_id": "token", "age": "token", "gender": "token", "occupation": "token", "zip_code": "token"},
    )
    return raw.with_columns(pl.col("age").cast(pl.Int32)).sort("user_id")


def parse_items(path: Path) -> pl.DataFrame:
    """Non-numeric years become null: RecBole's copy has 'unkonwn' (item 267) and 'V' (item 1412)."""
    raw = read_atomic(
        path, {"item_id": "token", "movie_title": "token_seq", "release_year": "token", "class": "token_seq"}
    )
    return raw.select(
        "item_id",
        pl.col("movie_title").alias("title"),
        pl.col("release_year").cast(pl.Int32, strict=False),
        pl.col("class").str.split(" ").alias("genres"),
    ).sort("item_id")


def parse_ratings(path: Path) -> pl.DataFrame:
    raw = read_atomic(path, {"user_id": "token", "item_id": "token", "rating": "float", "timestamp": "float"})
    ts = pl.from_epoch(pl.col("timestamp").cast(pl.Int64), time_unit="s")
    return raw.select(
        "user_id", "item_id", "rating", ts.dt.cast_time_unit("us").dt.replace_time_zone("UTC").alias("ts")
    ).sort("user_id", "item_id")


PARSERS = {"users": parse_users, "items": parse_items, "ratings": parse_ratings}


def content_hash(rows: pa.Table) -> str:
    """SHA-256 of the schema and every value, in row order: what decides whether to rewrite."""
    frame = pl.from_arrow(rows)
    assert isinstance(frame, pl.DataFrame)
    digest = hashlib.sha256(str(rows.schema).encode())
    digest.update(frame.write_ndjson().encode())
    return digest.hexdigest()


def _stored_hash(table: DeltaTable) -> str | None:
    latest = table.history(1)
    return latest[0].get(HASH_KEY) if latest else None


def write_snapshot(settings: Settings, spec: TableSpec, frame: pl.DataFrame) -> WriteResult:
    """Overwrite the table with exactly these rows, unless its last commit already holds them."""
    rows = conform(frame, spec)
    if pl.from_arrow(rows.select(list(spec.keys))).is_duplicated().any():  # type: ignore[union-attr]
        raise ValueError(f"table {spec.name}: rows repeat a key {spec.keys}")
    digest = content_hash(rows)
    table = open_table(settings, spec.name)
    if table is not None and _stored_hash(table) == digest and table.count() == rows.num_rows:
        return WriteResult(spec.name, table.version(), 0, rows.num_rows)
    write_deltalake(
        table_uri(settings, spec.name),
        rows,
        mode="overwrite",
        schema_mode="overwrite",
        storage_options=settings.storage_options,
        commit_properties=CommitProperties(custom_metadata={HASH_KEY: digest}),
    )
    written = open_table(settings, spec.name)
    assert written is not None
    return WriteResult(spec.name, written.version(), rows.num_rows, written.count())


def import_ml100k(settings: Settings) -> dict[str, WriteResult]:
    """Parse the wheel's ML-100K files into the lake's datasets/ml100k tables; a re-run commits nothing."""
    files = movielens_files()
    return {name: write_snapshot(settings, spec, PARSERS[name](files[name])) for name, spec in TABLES}


def load_ml100k(settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(users, items, ratings) from the lake, sorted by key; import_ml100k must have run."""
    frames = []
    for spec in ML100K_TABLES.values():
        table = open_table(settings, spec.name)
        if table is None:
            raise FileNotFoundError(f"{table_uri(settings, spec.name)} is absent: run import_ml100k first")
        frame = pl.from_arrow(table.to_pyarrow_dataset().to_table())
        assert isinstance(frame, pl.DataFrame)
        frames.append(frame.sort(list(spec.keys)))
    users, items, ratings = frames
    return users, items, ratings
