"""Features: what titles are about (media_content), the Feast registry (`feast apply`) and the
online store (incremental materialization)."""

import dagster as dg

from assets.common import OWNER, StreamlakeResource, table_asset, write_metadata
from models.features.content import media_content as build_media_content
from models.features.store import apply, materialize_online
from models.lake import tables


@table_asset("features", {"polars"}, deps=["media_items", "content_labels", "text_embeddings"])
def media_content(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Genres, moods, content labels, duration and the text-embedding id per title, dated at ingest."""
    settings = streamlake.settings()
    frame = build_media_content(
        tables.read_table(settings, "media_items", columns=["media_id", "duration_s", "ingested_at"]),
        tables.read_table(settings, "content_labels"),
        tables.read_table(settings, "text_embeddings", columns=["media_id", "model"]),
    )
    result = tables.replace_rows(settings, "media_content", frame)  # withdrawn items drop out
    return dg.MaterializeResult(metadata=write_metadata(result))


def _metadata(summary: dict) -> dict[str, object]:
    return {
        k: dg.MetadataValue.json(v)
        if isinstance(v, dict | list)
        else v
        if isinstance(v, int | float)
        else str(v)
        for k, v in summary.items()
    }


@dg.asset(group_name="features", kinds={"feast"}, owners=[OWNER])
def feast_registry(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """`feast apply`: entities user and media, the Delta-backed sources, the feature views and the
    `recommender` feature service, registered in the file registry under the data dir."""
    return dg.MaterializeResult(metadata=_metadata(apply(streamlake.settings())))


@dg.asset(
    group_name="features",
    deps=["feast_registry", "hourly_stats", "users", "user_stats", "media_content", "qoe_hourly"],
    kinds={"feast", "duckdb", "sqlite"},
    owners=[OWNER],
)
def feast_online_features(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Incremental materialization: each view's rows that changed since the Delta version it last
    loaded (a full load the first time, or after deletions) go to the online store.

    Each view is loaded up to the newest timestamp in its own source table, not wall-clock now,
    so a re-run over the same data loads nothing.
    """
    summary = materialize_online(streamlake.settings())
    summary["materialization"] = {view: run["mode"] for view, run in summary["materialization"].items()}
    return dg.MaterializeResult(metadata=_metadata(summary))
