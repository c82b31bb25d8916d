"""Feast objects for Streamlake: entities, Delta-backed sources, feature views, feature service.

The Feast CLI imports this file with only feature_repo/ on sys.path (the project's packages are
not importable from here), so it is self-contained: the lake root comes from the same
environment variables as models.settings (STREAMLAKE_LAKE_ROOT, else STREAMLAKE_DATA_DIR/lake,
else <repo>/data/lake). models.features.store loads this file and calls build() with the lake
root of its Settings instead.

Sources use DeltaFormat so the DuckDB offline store reads each table through
`delta_scan` (the Delta log's current snapshot). A plain parquet source over a Delta folder
would also read files that later versions removed and serve stale or duplicated rows.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, Project, ValueType
from feast.data_format import DeltaFormat
from feast.types import Array, Float64, Int64, String

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT = "streamlake"  # the same name as feature_store.yaml's project

# Hourly counts older than this no longer describe "now": historical retrieval returns null
# (the model reads that as no recent activity) rather than a week-old hour.
MEDIA_STATS_TTL = timedelta(days=2)

# media_stats renames hourly_stats' columns so they read as what they are (one hour of one item)
# and cannot collide with user_stats' watch_time_s / completion_rate in a training frame.
MEDIA_STATS_FIELDS = {
    "views": "hourly_views",
    "unique_viewers": "hourly_unique_viewers",
    "watch_time_s": "hourly_watch_time_s",
    "completion_rate": "hourly_completion_rate",
}


def default_lake_root() -> str:
    """The lake root the same way models.settings resolves it, from the environment."""
    if lake := os.environ.get("STREAMLAKE_LAKE_ROOT"):
        return lake
    data_dir = os.environ.get("STREAMLAKE_DATA_DIR") or str(REPO_ROOT / "data")
    return str(Path(data_dir) / "lake")


def ensure_duckdb_delta() -> None:
    """Install DuckDB's delta extension from the duckdb-extension-delta wheel, once.

    Feast's DuckDB offline store calls ibis' read_delta, which runs `INSTALL delta` (a download)
    unless the extension is already installed in DuckDB's extension directory. There is no
    network here, so install the copy the wheel ships; LOAD from a path is not enough, since
    ibis checks the installed flag. Harmless where it is already installed.
    """
    import duckdb

    con = duckdb.connect()
    try:
        row = con.execute(
            "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'delta'"
        ).fetchone()
        if row and row[0]:
            return
        import duckdb_extension_delta

        shipped = sorted(
            Path(duckdb_extension_delta.__file__).parent.glob("extensions/*/delta.duckdb_extension")
        )
        if not shipped:
            log.warning("duckdb-extension-delta ships no extension file; delta_scan will try to download")
            return
        con.execute(f"INSTALL '{shipped[-1]}'")
    except duckdb.Error as err:  # e.g. no writable home: apply still works, offline reads will not
        log.warning("could not install DuckDB's delta extension from the wheel: %s", err)
    finally:
        con.close()


def build(lake_root: str) -> dict[str, object]:
    """Every Feast object of the repo, with sources under the given lake root."""
    lake = lake_root.rstrip("/")

    project = Project(name=PROJECT, description="Streamlake media platform features.")

    media = Entity(
        name="media",
        join_keys=["media_id"],
        value_type=ValueType.STRING,
        description="A media item; media_id comes from the content hash.",
    )
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="A viewer.")
    device_class = Entity(
        name="device_class",
        join_keys=["device_class"],
        value_type=ValueType.STRING,
        description="A class of player devices (mobile, desktop, tv, other), as qoe_hourly groups them.",
    )

    hourly_stats_source = FileSource(
        name="hourly_stats",
        path=f"{lake}/hourly_stats",
        file_format=DeltaFormat(),
        timestamp_field="hour",
        description="Delta table hourly_stats (one row per media item and hour).",
    )
    users_source = FileSource(
        name="users",
        path=f"{lake}/users",
        file_format=DeltaFormat(),
        timestamp_field="signup_ts",
        description="Delta table users.",
    )

    media_stats_source = FileSource(
        name="media_stats_hourly",
        path=f"{lake}/hourly_stats",
        file_format=DeltaFormat(),
        timestamp_field="hour",
        field_mapping=MEDIA_STATS_FIELDS,
        description="Delta table hourly_stats again, with columns renamed for media_stats.",
    )
    user_stats_source = FileSource(
        name="user_stats",
        path=f"{lake}/user_stats",
        file_format=DeltaFormat(),
        timestamp_field="last_seen",
        description="Delta table user_stats (one row per viewer, as of last_seen).",
    )

    media_content_source = FileSource(
        name="media_content",
        path=f"{lake}/media_content",
        file_format=DeltaFormat(),
        timestamp_field="available_at",
        description="Delta table media_content (one row per media item, as of its ingest).",
    )

    qoe_source = FileSource(
        name="qoe_hourly",
        path=f"{lake}/qoe_hourly",
        file_format=DeltaFormat(),
        timestamp_field="hour",
        description="Delta table qoe_hourly (one row per media item, hour and device class).",
    )

    media_hourly_stats = FeatureView(
        name="media_hourly_stats",
        entities=[media],
        ttl=MEDIA_STATS_TTL,
        schema=[
            Field(name="media_id", dtype=String),
            Field(name="views", dtype=Int64),
            Field(name="unique_viewers", dtype=Int64),
            Field(name="watch_time_s", dtype=Float64),
            Field(name="avg_watch_time_s", dtype=Float64),
            Field(name="completion_rate", dtype=Float64),
        ],
        source=hourly_stats_source,
        online=True,
        description="Engagement of a media item in its latest hour with views.",
    )
    user_profile = FeatureView(
        name="user_profile",
        entities=[user],
        ttl=timedelta(0),  # a profile does not expire
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="tier", dtype=String),
            Field(name="country", dtype=String),
            Field(name="device", dtype=String),
        ],
        source=users_source,
        online=True,
        description="Subscription tier, country and device of a viewer.",
    )
    media_stats = FeatureView(
        name="media_stats",
        entities=[media],
        ttl=MEDIA_STATS_TTL,
        schema=[
            Field(name="media_id", dtype=String),
            Field(name="hourly_views", dtype=Int64),
            Field(name="hourly_unique_viewers", dtype=Int64),
            Field(name="hourly_watch_time_s", dtype=Float64),
            Field(name="hourly_completion_rate", dtype=Float64),
        ],
        source=media_stats_source,
        online=True,
        description=(
            "Popularity and completion of a media item as an hourly time series: a training row "
            "gets the last hour at or before its timestamp; null past the TTL stands for 'not "
            "watched recently' (recency)."
        ),
    )
    user_stats = FeatureView(
        name="user_stats",
        entities=[user],
        ttl=timedelta(0),  # lifetime totals: old is still true, just not newer
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="sessions", dtype=Int64),
            Field(name="titles", dtype=Int64),
            Field(name="watch_time_s", dtype=Float64),
            Field(name="completion_rate", dtype=Float64),
        ],
        source=user_stats_source,
        online=True,
        description=(
            "A viewer's sessions, distinct titles, watch time and completion rate as of last_seen. "
            "The table keeps one row per viewer, so rows before a viewer's last_seen get null."
        ),
    )
    media_content = FeatureView(
        name="media_content",
        entities=[media],
        ttl=timedelta(0),  # what a title is about does not expire
        schema=[
            Field(name="media_id", dtype=String),
            Field(name="genres", dtype=Array(String)),
            Field(name="moods", dtype=Array(String)),
            Field(name="labels", dtype=Array(String)),
            Field(name="duration_s", dtype=Float64),
            Field(name="embedding_id", dtype=String),
        ],
        source=media_content_source,
        online=True,
        description=(
            "Genres, moods and other content labels of a media item, its duration, and the id of "
            "its text embedding (for content-based and cold-start recommendations)."
        ),
    )
    media_qoe = FeatureView(
        name="media_qoe",
        entities=[media, device_class],
        ttl=MEDIA_STATS_TTL,
        schema=[
            Field(name="media_id", dtype=String),
            Field(name="device_class", dtype=String),
            Field(name="sessions", dtype=Int64),
            Field(name="failure_rate", dtype=Float64),
            Field(name="startup_p50_s", dtype=Float64),
            Field(name="rebuffer_pct", dtype=Float64),
            Field(name="qoe_score", dtype=Float64),
        ],
        source=qoe_source,
        online=True,
        description=(
            "Quality of experience of a media item on a device class in its latest hour with "
            "sessions: what QoE-aware ranking (models/qoe/ranking.py) demotes by. Not in the "
            "recommender service: it depends on the caller's device, not the user or the title."
        ),
    )
    recommender = FeatureService(
        name="recommender",
        features=[media_hourly_stats, user_profile, media_stats, user_stats, media_content],
        # user_stats and media_hourly_stats share watch_time_s and completion_rate: read the
        # service with full_feature_names=True (view__feature), as training_set does.
        description="What the recommender reads at training and serving time (full feature names).",
    )
    return {
        "project": project,
        "media": media,
        "user": user,
        "device_class": device_class,
        "qoe_source": qoe_source,
        "hourly_stats_source": hourly_stats_source,
        "users_source": users_source,
        "media_stats_source": media_stats_source,
        "user_stats_source": user_stats_source,
        "media_content_source": media_content_source,
        "media_hourly_stats": media_hourly_stats,
        "user_profile": user_profile,
        "media_stats": media_stats,
        "user_stats": user_stats,
        "media_content": media_content,
        "media_qoe": media_qoe,
        "recommender": recommender,
    }


ensure_duckdb_delta()

# Module-level objects are what `feast apply` collects.
_objects = build(default_lake_root())
project = _objects["project"]
media = _objects["media"]
user = _objects["user"]
hourly_stats_source = _objects["hourly_stats_source"]
users_source = _objects["users_source"]
media_hourly_stats = _objects["media_hourly_stats"]
user_profile = _objects["user_profile"]
media_stats_source = _objects["media_stats_source"]
user_stats_source = _objects["user_stats_source"]
media_stats = _objects["media_stats"]
user_stats = _objects["user_stats"]
media_content_source = _objects["media_content_source"]
media_content = _objects["media_content"]
device_class = _objects["device_class"]
qoe_source = _objects["qoe_source"]
media_qoe = _objects["media_qoe"]
recommender = _objects["recommender"]
