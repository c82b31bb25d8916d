"""Feast over the lake: DuckDB reads the Delta tables offline, SQLite serves online (DESIGN §2, §6).

The Feast objects live in feature_repo/streamlake_features.py, so `feast -c feature_repo apply`
and this module register the same definitions. Here the configuration is built from Settings
instead of feature_store.yaml, so tests and assets can point Feast at any data dir: the
registry and the online store go in the data dir, the sources under the lake root.

Feast is imported inside the functions: importing it takes seconds.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import polars as pl

from models.lake.tables import changes_since, open_table, read_table
from models.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig

PROJECT = "streamlake"
DEFINITIONS_FILE = "streamlake_features.py"
MEDIA_VIEW = "media_hourly_stats"
USER_VIEW = "user_profile"
MEDIA_STATS_VIEW = "media_stats"
USER_STATS_VIEW = "user_stats"
CONTENT_VIEW = "media_content"
QOE_VIEW = "media_qoe"  # keyed by media_id and device_class
# Every view the online store serves, in the order apply_and_materialize reports them.
ONLINE_VIEWS = (MEDIA_VIEW, USER_VIEW, MEDIA_STATS_VIEW, USER_STATS_VIEW, CONTENT_VIEW, QOE_VIEW)
MEDIA_FEATURES = ("views", "unique_viewers", "watch_time_s", "avg_watch_time_s", "completion_rate")
USER_FEATURES = ("tier", "country", "device")
# Materialize from the start of time: the newest row per entity may be old (an item nobody
# watched lately), and re-running over the whole range rewrites the same online rows.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def registry_path(settings: Settings) -> Path:
    """Feast's file registry: directly in the data dir (see online_store_path)."""
    return Path(settings.data_dir) / "feast_registry.db"


def online_store_path(settings: Settings) -> Path:
    """The SQLite online store, directly in the data dir.

    Not in a data/feast/ subfolder: Feast creates only the last folder of these paths, so
    `feast -c feature_repo apply` in a fresh clone (no data/ yet) fails on data/feast/registry.db.
    """
    return Path(settings.data_dir) / "feast_online_store.db"


def config_dict(settings: Settings) -> dict[str, Any]:
    """feature_store.yaml's content for these settings (absolute paths under the data dir)."""
    return {
        "project": PROJECT,
        "provider": "local",
        "registry": {
            "registry_type": "file",
            "path": str(registry_path(settings)),
            "cache_ttl_seconds": 60,
        },
        "online_store": (
            {"type": "redis", "connection_string": settings.feast_redis}
            if settings.feast_redis
            else {"type": "sqlite", "path": str(online_store_path(settings))}
        ),
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }


def write_feature_store_yaml(settings: Settings, path: Path) -> Path:
    """Write a feature_store.yaml for another data dir, for the CLI: FEAST_FS_YAML_FILE_PATH=path.

    The committed feature_repo/feature_store.yaml holds the default data dir (Feast's `${VAR}`
    substitution has no default value, so it cannot follow STREAMLAKE_DATA_DIR by itself).
    """
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_dict(settings), sort_keys=False))
    return path


def repo_config(settings: Settings) -> RepoConfig:
    """The Feast RepoConfig for these settings."""
    from feast import RepoConfig

    config = RepoConfig(**config_dict(settings))
    config.repo_path = Path(settings.feast_repo)
    return config


def definitions_module(settings: Settings) -> ModuleType:
    """feature_repo's definitions file, loaded once per process by path.

    The CLI imports it with feature_repo/ on sys.path; here it is loaded under a private name so
    it cannot clash with another top-level module. Loading it installs DuckDB's delta extension.
    """
    name = "_streamlake_feature_repo"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(settings.feast_repo) / DEFINITIONS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def feast_objects(settings: Settings) -> dict[str, Any]:
    """Entities, sources, feature views and the feature service, with sources under this lake root."""
    return definitions_module(settings).build(settings.lake_root)


def feature_store(settings: Settings) -> FeatureStore:
    """A FeatureStore whose registry and online store lie in settings.data_dir."""
    from feast import FeatureStore

    definitions_module(settings)  # the delta extension must be in place before any offline read
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(settings.feast_repo), config=repo_config(settings))


def _online_entity_count(settings: Settings, view: Any) -> int | None:
    """Distinct entity keys the SQLite online store holds for a feature view (None on Redis,
    whose keys are not grouped per view)."""
    from feast.infra.online_stores.helpers import compute_table_id

    if settings.feast_redis:
        return None
    db = online_store_path(settings)
    if not db.exists():
        return 0
    table = compute_table_id(PROJECT, view)
    with sqlite3.connect(db) as con:
        try:
            row = con.execute(f'SELECT COUNT(DISTINCT entity_key) FROM "{table}"').fetchone()
        except sqlite3.OperationalError:  # table not created yet
            return 0
    return int(row[0]) if row else 0


def source_table(view: Any) -> str:
    """The lake table a view reads: its source path's last folder (two sources may share one)."""
    return Path(view.batch_source.path).name


def materialized_path(settings: Settings) -> Path:
    """Which Delta version of its source each view was last materialized from (JSON)."""
    return Path(settings.data_dir) / "feast_materialized.json"


def _materialize_view(
    settings: Settings, store: FeatureStore, view: Any, since: int | None
) -> dict[str, Any]:
    """Bring one view's online rows up to its source table's current version, incrementally.

    Feast's own materialize_incremental starts where the last run ended in event time, so it
    misses what arrives late: a new viewer with an old signup_ts, a late event rewriting an old
    hour that is still an item's latest. Here the Delta log says what changed since the version
    last materialized; the window starts at the earliest changed row's timestamp, so every entity
    with a changed row gets its latest row again and the others are left alone. A deletion (the
    online store cannot un-write) or an unreadable old version falls back to a full run.
    """
    name = source_table(view)
    table = open_table(settings, name)
    if table is None:
        return {"mode": "skipped: source table not written yet"}
    timestamp = view.batch_source.timestamp_field
    version = table.version()
    end = read_table(settings, name, columns=[timestamp])[timestamp].max()
    if end is None:
        return {"mode": "skipped: source table is empty", "version": version}
    online = _online_entity_count(settings, view) != 0  # None (Redis): trust the recorded version
    changes = changes_since(settings, name, since) if online and since not in (None, version) else None
    if online and (since == version or (changes is not None and changes.empty)):
        return {"mode": "unchanged", "version": version}
    if changes is None or not changes.deleted.is_empty():
        mode, start = "full", EPOCH
    else:
        mode, start = "incremental", changes.upserted[timestamp].min()
    store.materialize(start_date=start, end_date=end, feature_views=[view.name])  # type: ignore[arg-type]
    return {"mode": mode, "version": version, "start": start.isoformat(), "end": end.isoformat()}  # type: ignore[union-attr]


def apply(settings: Settings) -> dict[str, Any]:
    """`feast apply`: register entities, sources, views and the service (the registry asset)."""
    objects = feast_objects(settings)
    feature_store(settings).apply(list(objects.values()))
    return {
        "project": PROJECT,
        "feature_views": list(ONLINE_VIEWS),
        "registry_path": str(registry_path(settings)),
        "lake_root": settings.lake_root,
    }


def materialize_online(settings: Settings) -> dict[str, Any]:
    """Each view's changed rows into the online store; safe to re-run (needs `apply` first).

    Each view is materialized up to the newest timestamp in its source table (not wall-clock
    now), from where its rows changed since the last run (see _materialize_view). Views whose
    source is not written yet are skipped. Returns the asset's metadata.
    """
    objects = feast_objects(settings)
    store = feature_store(settings)
    state_file = materialized_path(settings)
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    runs = {}
    for name in ONLINE_VIEWS:
        runs[name] = _materialize_view(settings, store, objects[name], state.get(name))
        if "version" in runs[name]:
            state[name] = runs[name]["version"]
            state_file.write_text(json.dumps(state, indent=2, sort_keys=True))
    return {
        "materialized_views": [v for v, run in runs.items() if run["mode"] in ("full", "incremental")],
        "materialization": runs,
        "online_entity_rows": {v: _online_entity_count(settings, objects[v]) for v in ONLINE_VIEWS},
        "online_store": str(settings.feast_redis or online_store_path(settings)),
    }


def apply_and_materialize(settings: Settings) -> dict[str, Any]:
    """apply, then materialize_online: what a notebook or test runs to get features in one call."""
    return {**apply(settings), **materialize_online(settings)}


def online_features(
    settings: Settings, media_ids: list[str], features: tuple[str, ...] = MEDIA_FEATURES
) -> pl.DataFrame:
    """The latest materialized media features, one row per id in input order (nulls when unknown)."""
    store = feature_store(settings)
    response = store.get_online_features(
        features=[f"{MEDIA_VIEW}:{name}" for name in features],
        entity_rows=[{"media_id": media_id} for media_id in media_ids],
    )
    frame = pl.from_arrow(response.to_arrow())
    assert isinstance(frame, pl.DataFrame)
    return frame.select("media_id", *features)


def online_view(
    settings: Settings, view: str, join_key: str, ids: list[str], features: tuple[str, ...]
) -> pl.DataFrame:
    """One view's materialized features, one row per id in input order (nulls when unknown)."""
    response = feature_store(settings).get_online_features(
        features=[f"{view}:{name}" for name in features],
        entity_rows=[{join_key: value} for value in ids],
    )
    frame = pl.from_arrow(response.to_arrow())
    assert isinstance(frame, pl.DataFrame)
    return frame.select(join_key, *features)


def _default_features(entity_df: pl.DataFrame) -> list[str]:
    refs: list[str] = []
    if "media_id" in entity_df.columns:
        refs += [f"{MEDIA_VIEW}:{name}" for name in MEDIA_FEATURES]
    if "user_id" in entity_df.columns:
        refs += [f"{USER_VIEW}:{name}" for name in USER_FEATURES]
    if not refs:
        raise ValueError("entity_df needs a media_id or user_id column")
    return refs


def historical_features(
    settings: Settings, entity_df: pl.DataFrame, features: list[str] | None = None
) -> pl.DataFrame:
    """Point-in-time correct features for training, read from the Delta snapshots.

    entity_df holds join keys (media_id and/or user_id) and `event_timestamp`; each row gets the
    newest feature row at or before its timestamp (within the view's TTL), never a later one.
    Default features: every feature of the views whose join key is present. Rows come back in
    entity_df's order (Feast's join does not keep it).
    """
    if "event_timestamp" not in entity_df.columns:
        raise ValueError("entity_df needs an event_timestamp column")
    refs = features or _default_features(entity_df)
    timestamps = entity_df.get_column("event_timestamp")
    if isinstance(timestamps.dtype, pl.Datetime) and timestamps.dtype.time_zone is None:
        entity_df = entity_df.with_columns(pl.col("event_timestamp").dt.replace_time_zone("UTC"))
    order = "__streamlake_row"
    frame = entity_df.with_row_index(order).to_pandas()
    store = feature_store(settings)
    job = store.get_historical_features(entity_df=frame, features=refs)
    result = pl.from_arrow(job.to_arrow())
    assert isinstance(result, pl.DataFrame)
    feature_columns = [c for c in result.columns if c not in entity_df.columns and c != order]
    return result.sort(order).select(*entity_df.columns, *feature_columns)


def training_set(settings: Settings, entity_df: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    """Point-in-time features for training rows (user_id, media_id, event_timestamp).

    Columns are named `view__feature`: user_stats and media_hourly_stats both have watch_time_s
    and completion_rate, and a training frame must say which one it holds. Each row gets the
    newest feature row at or before its event_timestamp, never a later one (no label leakage).
    """
    missing = [c for c in ("user_id", "media_id", "event_timestamp") if c not in entity_df.columns]
    if missing:
        raise ValueError(f"entity_df lacks columns {missing}")
    if not features:
        raise ValueError("name at least one feature as 'view:feature'")
    timestamps = entity_df.get_column("event_timestamp")
    if isinstance(timestamps.dtype, pl.Datetime) and timestamps.dtype.time_zone is None:
        entity_df = entity_df.with_columns(pl.col("event_timestamp").dt.replace_time_zone("UTC"))
    order = "__streamlake_row"
    frame = entity_df.with_row_index(order).to_pandas()
    job = feature_store(settings).get_historical_features(
        entity_df=frame, features=features, full_feature_names=True
    )
    result = pl.from_arrow(job.to_arrow())
    assert isinstance(result, pl.DataFrame)
    feature_columns = [ref.replace(":", "__") for ref in features]
    return result.sort(order).select(*entity_df.columns, *feature_columns)
