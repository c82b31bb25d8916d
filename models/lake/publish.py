"""Build the snapshots the API reads, so serving never joins lake tables at request time."""

from __future__ import annotations

import polars as pl

from models.lake.schemas import COLD_START_USER
from models.recsys.popularity import TopPop
from models.recsys.registry import Champion

USER_K = 20
# The API asks for twice its k (at most 100) to survive items dropped from the catalog.
COLD_START_K = 200


def api_catalog(
    media_items: pl.DataFrame,
    renditions: pl.DataFrame,
    thumbnails: pl.DataFrame,
    subtitles: pl.DataFrame,
    shots: pl.DataFrame,
) -> pl.DataFrame:
    """One row per playable item: catalog fields, its renditions, subtitles, poster, shot count.

    Items without a finished rendition are left out: the API never offers what cannot play.
    """
    rungs = (
        renditions.filter(pl.col("kind") == "video", pl.col("error").is_null())
        .sort("media_id", "height", "bitrate")
        .group_by("media_id", maintain_order=True)
        .agg(
            pl.col("master_path").first().alias("master_playlist"),
            pl.struct("rung", "codec", "width", "height", "bitrate", "playlist_path").alias("renditions"),
        )
    )
    subs = subtitles.group_by("media_id").agg(pl.struct("lang", "format", "path").alias("subtitles"))
    posters = thumbnails.filter(kind="poster").select("media_id", pl.col("path").alias("poster"))
    shot_counts = shots.group_by("media_id").agg(pl.len().cast(pl.Int32).alias("shot_count"))
    return (
        media_items.filter(status="ready")
        .select("media_id", "title", "description", "tags", "duration_s", "width", "height")
        .join(rungs, on="media_id", how="inner")
        .join(posters, on="media_id", how="left")
        .join(subs, on="media_id", how="left")
        .join(shot_counts, on="media_id", how="left")
        .with_columns(pl.col("subtitles").fill_null([]), pl.col("shot_count").fill_null(0))
        .sort("media_id")
    )


def recs_topk(champion: Champion, interactions: pl.DataFrame) -> pl.DataFrame:
    """Batch top-k per known user from the champion, plus the popularity cold-start list."""
    users = interactions["user_id"].unique().sort().to_list()
    per_user = champion.recommend(users, USER_K).with_columns(model_version=pl.lit(champion.version))
    cold = (
        TopPop()
        .fit(interactions)
        .recommend([COLD_START_USER], COLD_START_K)
        .with_columns(model_version=pl.lit("toppop-cold-start"))
    )
    return pl.concat([per_user, cold], how="diagonal_relaxed")
