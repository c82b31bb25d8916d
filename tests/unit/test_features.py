"""Feast over the Delta lake: online values, point-in-time joins, fresh Delta snapshots, the CLI.

One small lake per module (Feast's import and first apply cost seconds); the test that rewrites
rows gets a lake of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from models.features import store
from models.features.content import media_content as build_media_content
from models.lake.schemas import QOE_HOURLY
from models.lake.tables import delete_where_in, upsert
from models.settings import REPO_ROOT, Settings, get_settings


def hour(h: int) -> datetime:
    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=h)


def stats(media_id: str, h: int, views: int, completion: float) -> dict:
    return {
        "media_id": media_id,
        "hour": hour(h),
        "views": views,
        "unique_viewers": views // 2,
        "watch_time_s": views * 10.0,
        "avg_watch_time_s": 10.0,
        "completion_rate": completion,
    }


# m3 is the point-in-time case: one view at 10 h, fifty at 12 h.
HOURLY = [
    stats("m1", 1, 10, 0.5),
    stats("m1", 3, 20, 0.6),
    stats("m2", 2, 4, 0.1),
    stats("m3", 10, 1, 0.2),
    stats("m3", 12, 50, 0.8),
]
USERS = [
    {"user_id": "u1", "tier": "free", "country": "DE", "device": "tv", "signup_ts": hour(0)},
    {"user_id": "u2", "tier": "premium", "country": "FR", "device": "web", "signup_ts": hour(5)},
]
USER_STATS = [
    {
        "user_id": "u1",
        "sessions": 3,
        "titles": 2,
        "watch_time_s": 300.0,
        "completion_rate": 0.5,
        "last_seen": hour(4),
    },
    {
        "user_id": "u2",
        "sessions": 7,
        "titles": 5,
        "watch_time_s": 900.0,
        "completion_rate": 0.9,
        "last_seen": hour(8),
    },
]
MEDIA_CONTENT = [
    {
        "media_id": "m1",
        "genres": ["drama"],
        "moods": ["tense", "dark"],
        "labels": ["genre:drama", "mood:tense", "mood:dark"],
        "duration_s": 60.0,
        "embedding_id": "minilm/m1",
        "available_at": hour(0),
    },
    {
        "media_id": "m2",
        "genres": [],
        "moods": [],
        "labels": [],
        "duration_s": 5.0,
        "embedding_id": None,
        "available_at": hour(6),
    },
]
END = hour(13)
SERVICE_VIEWS = ["media_hourly_stats", "user_profile", "media_stats", "user_stats", "media_content"]
VIEWS = [*SERVICE_VIEWS, "media_qoe"]
QOE = [
    dict.fromkeys(QOE_HOURLY.schema.names)
    | {"media_id": m, "hour": hour(h), "device_class": c, "qoe_score": s}
    for m, h, c, s in [
        ("m1", 1, "mobile", 80.0),
        ("m1", 3, "mobile", 40.0),
        ("m1", 3, "tv", 90.0),
        ("m2", 2, "tv", 70.0),
    ]
]


def make_lake(data_dir: Path) -> Settings:
    """Settings for a tmp data dir (ignoring any lake root in the environment) with both tables."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("STREAMLAKE_LAKE_ROOT", raising=False)
        settings = get_settings(data_dir=data_dir)
        assert settings.lake_root == str(data_dir / "lake")
    upsert(settings, "hourly_stats", HOURLY)
    upsert(settings, "users", USERS)
    upsert(settings, "user_stats", USER_STATS)
    upsert(settings, "media_content", MEDIA_CONTENT)
    upsert(settings, "qoe_hourly", QOE)
    return settings


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict]:
    settings = make_lake(tmp_path_factory.mktemp("features"))
    # ibis 12 calls DuckDB's deprecated fetch_arrow_table(), and Feast's import puts a 'once'
    # DeprecationWarning filter in front of pytest's ignore: silence it for the first run.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "fetch_arrow_table", DeprecationWarning)
        return settings, store.apply_and_materialize(settings)


def test_materialize_summary_and_idempotent_rerun(lake: tuple[Settings, dict]) -> None:
    settings, summary = lake
    assert summary["materialized_views"] == VIEWS
    assert {run["mode"] for run in summary["materialization"].values()} == {"full"}
    assert summary["online_entity_rows"] == dict(zip(VIEWS, [3, 2, 3, 2, 2, 3], strict=True))
    assert Path(summary["registry_path"]).is_file()
    assert Path(summary["registry_path"]).parent == settings.data_dir
    again = store.apply_and_materialize(settings)
    assert again["materialized_views"] == []
    assert {run["mode"] for run in again["materialization"].values()} == {"unchanged"}
    assert again["online_entity_rows"] == summary["online_entity_rows"]
    names = sorted(v.name for v in store.feature_store(settings).list_feature_views())
    assert names == sorted(VIEWS)
    service = store.feature_store(settings).get_feature_service("recommender")
    assert sorted(p.name for p in service.feature_view_projections) == sorted(SERVICE_VIEWS)
    qoe = store.feature_store(settings).get_online_features(
        features=["media_qoe:qoe_score"],
        entity_rows=[
            {"media_id": "m1", "device_class": "mobile"},
            {"media_id": "m2", "device_class": "mobile"},
        ],
    )
    assert qoe.to_dict()["qoe_score"] == [40.0, None]  # the latest hour; m2 has no mobile sessions


def test_content_features_online_and_point_in_time(lake: tuple[Settings, dict]) -> None:
    settings, _ = lake
    features = ("genres", "moods", "embedding_id", "duration_s")
    online = store.online_view(settings, "media_content", "media_id", ["m1", "m2", "m9"], features)
    assert online.row(0) == ("m1", ["drama"], ["tense", "dark"], "minilm/m1", 60.0)
    assert online.row(1) == ("m2", [], [], None, 5.0)
    assert online.row(2)[1:] == (None, None, None, None)
    entity_df = pl.DataFrame({"media_id": ["m2", "m2"], "event_timestamp": [hour(5), hour(7)]})
    refs = ["media_content:duration_s"]
    # m2 was ingested at 6 h: a row dated 5 h must not see its content
    assert store.historical_features(settings, entity_df, refs)["duration_s"].to_list() == [None, 5.0]


def test_online_features_are_the_latest_rows(lake: tuple[Settings, dict]) -> None:
    settings, _ = lake
    online = store.online_features(settings, ["m2", "m1", "unknown"])
    assert online.get_column("media_id").to_list() == ["m2", "m1", "unknown"]
    assert online.row(0, named=True) == {k: v for k, v in stats("m2", 2, 4, 0.1).items() if k != "hour"}
    assert online.row(1, named=True) == {k: v for k, v in stats("m1", 3, 20, 0.6).items() if k != "hour"}
    assert online.row(2, named=True)["views"] is None
    assert online.schema["views"] == pl.Int64


def test_historical_features_are_point_in_time(lake: tuple[Settings, dict]) -> None:
    settings, _ = lake
    entity_df = pl.DataFrame(
        {
            "media_id": ["m1", "m1", "m1", "m1", "m2"],
            "user_id": ["u1", "u2", "u1", "u1", "u2"],
            "event_timestamp": [
                hour(2),  # between m1's rows at 1 h and 3 h: the earlier one
                hour(3) + timedelta(minutes=30),  # after the 3 h row
                hour(1) - timedelta(minutes=1),  # before any row
                hour(3) + store_ttl() + timedelta(hours=1),  # past the TTL
                hour(6),  # u2 signed up at 5 h
            ],
        }
    )
    out = store.historical_features(settings, entity_df)
    assert out.select("media_id", "user_id", "event_timestamp").equals(
        entity_df.with_columns(
            pl.col("event_timestamp").dt.cast_time_unit(out["event_timestamp"].dtype.time_unit)
        )
    )
    assert out.get_column("views").to_list() == [10, 20, None, None, 4]
    assert out.get_column("completion_rate").to_list() == [0.5, 0.6, None, None, 0.1]
    # u2 has no profile before signing up at 5 h; u1's never expires.
    assert out.get_column("tier").to_list() == ["free", None, "free", "free", "premium"]


def store_ttl() -> timedelta:
    return store.definitions_module(get_settings()).MEDIA_STATS_TTL


def test_offline_store_reads_the_latest_delta_version(tmp_path: Path) -> None:
    settings = make_lake(tmp_path)
    store.apply_and_materialize(settings)
    entity_df = pl.DataFrame({"media_id": ["m1"], "event_timestamp": [hour(4)]})
    assert store.historical_features(settings, entity_df)["views"].to_list() == [20]

    result = upsert(settings, "hourly_stats", [stats("m1", 3, 99, 0.9)])
    assert (result.version, result.rows_written) == (1, 1)
    # The trap DESIGN §6 names: the folder now holds the removed file too, so a plain parquet
    # read sees two rows for (m1, 3 h).
    stale = pl.read_parquet(f"{settings.lake_root}/hourly_stats/*.parquet")
    assert stale.filter((pl.col("media_id") == "m1") & (pl.col("hour") == hour(3))).height == 2

    assert store.historical_features(settings, entity_df)["views"].to_list() == [99]
    store.apply_and_materialize(settings)
    assert store.online_features(settings, ["m1"])["completion_rate"].to_list() == [0.9]


def test_media_content_rows_from_labels_and_embeddings() -> None:
    items = pl.DataFrame(
        {"media_id": ["a", "b"], "duration_s": [10.0, 20.0], "ingested_at": [hour(1), hour(2)]}
    )
    labels = pl.DataFrame(
        {
            "media_id": ["a", "a", "a", "a", "a"],
            "source": ["text-zero-shot", "text-zero-shot", "text-zero-shot", "audio", "ocr"],
            "kind": ["genre", "genre", "mood", "audio", "ocr"],
            "label": ["news", "drama", "calm", "loudness_lufs", "STOP"],
            "score": [0.2, 0.7, 0.9, -16.0, 0.8],
        }
    )
    embeddings = pl.DataFrame({"media_id": ["a"], "model": ["all-MiniLM-L6-v2"]})
    rows = build_media_content(items, labels, embeddings).to_dicts()
    assert rows[0] == {
        "media_id": "a",
        "genres": ["drama", "news"],  # best first
        "moods": ["calm"],
        "labels": ["mood:calm", "ocr:STOP", "genre:drama", "genre:news"],  # no audio numbers
        "duration_s": 10.0,
        "embedding_id": "all-MiniLM-L6-v2/a",
        "available_at": hour(1),
    }
    assert (rows[1]["genres"], rows[1]["embedding_id"]) == ([], None)


def test_incremental_materialization_catches_late_rows(tmp_path: Path) -> None:
    """Feast's materialize_incremental would start at the last run's end (13 h) and miss both."""
    settings = make_lake(tmp_path)
    store.apply_and_materialize(settings)
    late_user = {"user_id": "u3", "tier": "premium", "country": "JP", "device": "ios", "signup_ts": hour(1)}
    upsert(settings, "users", [late_user])
    upsert(settings, "hourly_stats", [stats("m2", 2, 40, 0.9)])  # a late event rewrites m2's latest hour
    summary = store.apply_and_materialize(settings)
    modes = {view: run["mode"] for view, run in summary["materialization"].items()}
    assert modes == {
        "media_hourly_stats": "incremental",
        "user_profile": "incremental",
        "media_stats": "incremental",
        "user_stats": "unchanged",
        "media_content": "unchanged",
        "media_qoe": "unchanged",
    }
    assert summary["materialization"]["user_profile"]["start"] == hour(1).isoformat()
    profile = store.online_view(settings, "user_profile", "user_id", ["u3"], ("tier",))
    assert profile["tier"].to_list() == ["premium"]
    assert store.online_features(settings, ["m2"])["views"].to_list() == [40]

    delete_where_in(settings, "users", "user_id", ["u3"])
    assert store.apply_and_materialize(settings)["materialization"]["user_profile"]["mode"] == "full"


def test_committed_yaml_is_the_default_config() -> None:
    committed = yaml.safe_load((REPO_ROOT / "feature_repo" / "feature_store.yaml").read_text())
    default = store.config_dict(get_settings(data_dir=REPO_ROOT / "data"))
    for key in ("project", "provider", "offline_store", "entity_key_serialization_version"):
        assert committed[key] == default[key], key
    repo = REPO_ROOT / "feature_repo"
    assert (repo / committed["registry"]["path"]).resolve() == Path(default["registry"]["path"]).resolve()
    online = (repo / committed["online_store"]["path"]).resolve()
    assert online == Path(default["online_store"]["path"]).resolve()


def test_feast_cli_applies_the_repo_to_another_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = get_settings(data_dir=data_dir)
    fs_yaml = store.write_feature_store_yaml(settings, tmp_path / "feature_store.yaml")
    env = {
        **os.environ,
        "STREAMLAKE_DATA_DIR": str(data_dir),
        "FEAST_FS_YAML_FILE_PATH": str(fs_yaml),
        "FEAST_USAGE": "False",
    }
    env.pop("STREAMLAKE_LAKE_ROOT", None)
    feast = Path(sys.executable).with_name("feast")
    done = subprocess.run(
        [str(feast), "-c", "feature_repo", "apply"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "media_hourly_stats" in done.stdout
    assert store.registry_path(settings).is_file()
    views = {v.name: v for v in store.feature_store(settings).list_feature_views()}
    assert sorted(views) == sorted(VIEWS)
    assert views["media_hourly_stats"].batch_source.path == f"{data_dir}/lake/hourly_stats"


MEDIA_STATS = [
    f"media_stats:{n}" for n in ("hourly_views", "hourly_unique_viewers", "hourly_completion_rate")
]
USER_STATS_REFS = [f"user_stats:{n}" for n in ("sessions", "titles", "watch_time_s", "completion_rate")]


def test_training_set_never_sees_a_later_value(lake: tuple[Settings, dict]) -> None:
    """m3 has 1 view at 10 h and 50 at 12 h; u2's stats are as of 8 h: nothing leaks backwards."""
    settings, _ = lake
    entity_df = pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u2", "u1"],
            "media_id": ["m3", "m3", "m3", "m3"],
            "event_timestamp": [hour(11), hour(13), hour(9), hour(7)],
        }
    )
    out = store.training_set(settings, entity_df, MEDIA_STATS + USER_STATS_REFS)
    assert out.columns[:3] == ["user_id", "media_id", "event_timestamp"]
    assert out["user_id"].to_list() == ["u1", "u2", "u2", "u1"]
    assert out["media_stats__hourly_views"].to_list() == [1, 50, None, None]
    assert out["media_stats__hourly_completion_rate"].to_list() == [0.2, 0.8, None, None]
    assert out["user_stats__sessions"].to_list() == [3, 7, 7, 3]
    assert out["user_stats__watch_time_s"].to_list() == [300.0, 900.0, 900.0, 300.0]
    before = pl.DataFrame({"user_id": ["u2"], "media_id": ["m3"], "event_timestamp": [hour(5)]})
    early = store.training_set(settings, before, USER_STATS_REFS)
    assert early.row(0, named=True)["user_stats__sessions"] is None  # last_seen 8 h is later
    with pytest.raises(ValueError, match="lacks columns"):
        store.training_set(settings, before.drop("user_id"), USER_STATS_REFS)


def test_online_values_equal_the_offline_latest(lake: tuple[Settings, dict]) -> None:
    """After materializing (each view up to its newest row, all before END), each entity's online
    row is what the offline store returns at END, and that is the lake's newest row."""
    settings, _ = lake
    cases = [
        ("media_stats", "media_id", ["m1", "m2", "m3"], MEDIA_STATS),
        ("user_stats", "user_id", ["u1", "u2"], USER_STATS_REFS),
        ("media_content", "media_id", ["m1", "m2"], ["media_content:genres", "media_content:embedding_id"]),
    ]
    for view, key, ids, refs in cases:
        names = tuple(ref.split(":")[1] for ref in refs)
        online = store.online_view(settings, view, key, ids, names)
        entity_df = pl.DataFrame({key: ids, "event_timestamp": [END] * len(ids)})
        offline = store.historical_features(settings, entity_df, refs).select(key, *names)
        assert online.to_dicts() == offline.to_dicts(), view
    lake_latest = {row["media_id"]: row["views"] for row in HOURLY}  # HOURLY is in time order
    online = store.online_view(settings, "media_stats", "media_id", ["m1", "m2", "m3"], ("hourly_views",))
    assert dict(online.iter_rows()) == lake_latest
    # The recommender service spans views that share feature names: read it with full names.
    fs = store.feature_store(settings)
    served = fs.get_online_features(
        features=fs.get_feature_service("recommender"),
        entity_rows=[{"user_id": "u2", "media_id": "m3"}],
        full_feature_names=True,
    ).to_dict()
    assert (served["media_stats__hourly_views"], served["user_stats__sessions"]) == ([50], [7])
