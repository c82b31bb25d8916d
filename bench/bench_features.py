"""Feast online read latency for one user row of 50 numeric features, against reading the same
row straight out of the SQLite online store file.

The real views have at most a handful of features, so this builds a bench-only feature view
(`bench_user_wide`, 50 Float64 features) over a generated Delta table of 10k users in a tmp data
dir, applies and materializes it with the project's Feast configuration (models.features.store),
then times single-entity `get_online_features` calls. The baseline is a primary-key SELECT of the
entity's rows in the online store's table plus decoding the ValueProtos: what Feast itself must
do at the bottom, without its request handling. ratio = feast p50 / sqlite p50 (above 1 = Feast's
overhead). Fails loudly if Feast, SQLite and the generated table disagree on any value.
Run from the repository root: `python bench/bench_features.py`.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from _result import run_stamp, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.features import store  # noqa: E402
from models.settings import Settings, get_settings  # noqa: E402

USERS = 10_000
FEATURES = 50
CALLS = 500
WARMUP = 20
VIEW = "bench_user_wide"
SEED = 7
AS_OF = datetime(2024, 1, 1, tzinfo=UTC)


def feature_names() -> list[str]:
    return [f"f{i:02d}" for i in range(FEATURES)]


def user_id(i: int) -> str:
    return f"user-{i:05d}"


def make_table(path: Path) -> pa.Table:
    """USERS rows of FEATURES random floats, one timestamp: the Delta table the view reads."""
    from deltalake import write_deltalake

    rng = np.random.default_rng(SEED)
    columns: dict[str, Any] = {"user_id": pa.array([user_id(i) for i in range(USERS)])}
    for name in feature_names():
        columns[name] = pa.array(rng.random(USERS))
    columns["ts"] = pa.array([AS_OF] * USERS, pa.timestamp("us", tz="UTC"))
    table = pa.table(columns)
    write_deltalake(str(path), table)
    return table


def wide_view(path: Path) -> tuple[Any, Any]:
    """The bench-only entity and feature view over the generated table."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.data_format import DeltaFormat
    from feast.types import Float64, String

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    source = FileSource(name="bench_users", path=str(path), file_format=DeltaFormat(), timestamp_field="ts")
    view = FeatureView(
        name=VIEW,
        entities=[user],
        ttl=timedelta(0),
        schema=[Field(name="user_id", dtype=String)]
        + [Field(name=n, dtype=Float64) for n in feature_names()],
        source=source,
        online=True,
    )
    return user, view


def sqlite_reader(settings: Settings, view: Any) -> Any:
    """A function user_id -> {feature: value} by primary key in the online store's table."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import compute_table_id
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    con = sqlite3.connect(store.online_store_path(settings), check_same_thread=False)
    query = f'SELECT feature_name, value FROM "{compute_table_id(store.PROJECT, view)}" WHERE entity_key = ?'

    def read(uid: str) -> dict[str, float]:
        key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=uid)])
        rows = con.execute(query, (serialize_entity_key(key, entity_key_serialization_version=3),))
        return {name: Value.FromString(blob).double_val for name, blob in rows}

    return read


def timed(fn: Any, ids: list[str]) -> tuple[list[float], list[Any]]:
    """Per-call latencies in ms and the answers, after a few warm-up calls."""
    for uid in ids[:WARMUP]:
        fn(uid)
    latencies, answers = [], []
    for uid in ids:
        started = time.perf_counter()
        answers.append(fn(uid))
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, answers


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        settings = get_settings(data_dir=Path(scratch) / "data")
        table_path = Path(scratch) / "lake" / "bench_users"
        started = time.perf_counter()
        table = make_table(table_path)
        user, view = wide_view(table_path)
        fs = store.feature_store(settings)
        fs.apply([user, view])
        fs.materialize(start_date=store.EPOCH, end_date=AS_OF + timedelta(hours=1), feature_views=[VIEW])
        setup_s = time.perf_counter() - started

        refs = [f"{VIEW}:{n}" for n in feature_names()]

        def feast_read(uid: str) -> dict[str, float]:
            answer = fs.get_online_features(features=refs, entity_rows=[{"user_id": uid}]).to_dict()
            return {n: answer[n][0] for n in feature_names()}

        ids = [user_id(i) for i in random.Random(SEED).choices(range(USERS), k=CALLS)]
        feast_ms, feast_rows = timed(feast_read, ids)
        sqlite_ms, sqlite_rows = timed(sqlite_reader(settings, view), ids)

        truth = {row["user_id"]: row for row in table.to_pylist()}
        for uid, ours, base in zip(ids, feast_rows, sqlite_rows, strict=True):
            expected = {n: truth[uid][n] for n in feature_names()}
            if ours != expected or base != expected:
                sys.exit(f"values differ for {uid}:\nfeast  {ours}\nsqlite {base}\ntable  {expected}")

    feast_p50, sqlite_p50 = p(feast_ms, 50), p(sqlite_ms, 50)
    result = {
        "name": "features_online_read",
        "ours": round(feast_p50, 3),
        "baseline": round(sqlite_p50, 3),
        "ratio": round(feast_p50 / sqlite_p50, 2),
        "unit": (
            "ms p50 per single-user read of 50 features (ours: Feast get_online_features over SQLite; "
            "baseline: SQLite primary-key SELECT + ValueProto decode of the same rows)"
        ),
        **run_stamp(),
        "params": {
            "users": USERS,
            "features": FEATURES,
            "calls": CALLS,
            "warmup_calls": WARMUP,
            "feast_ms": {"p50": round(feast_p50, 3), "p99": round(p(feast_ms, 99), 3)},
            "sqlite_ms": {"p50": round(sqlite_p50, 3), "p99": round(p(sqlite_ms, 99), 3)},
            "feast_mean_ms": round(statistics.fmean(feast_ms), 3),
            "setup_s": round(setup_s, 1),
            "values_identical": True,
            "view": f"{VIEW} (bench-only, Float64 x {FEATURES}, Delta table via DuckDB offline store)",
        },
    }
    out = ROOT / "bench" / "results" / "features.json"
    write_result(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
