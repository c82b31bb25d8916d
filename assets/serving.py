"""Published snapshots: what the Ray Serve app reads (api_catalog, the cold-start list), batch top-k."""

import dagster as dg
import polars as pl

from assets.common import StreamlakeResource, markdown_table, table_asset, write_metadata
from models.lake import publish, tables
from models.lake.schemas import COLD_START_USER
from models.recsys.data import interactions_from_events
from models.recsys.registry import load_champion

PREVIEW_K = 5  # rows of the cold-start list shown in the UI


@table_asset("serving", {"polars"}, deps=["media_items", "renditions", "thumbnails", "subtitles", "shots"])
def api_catalog(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """What GET /media/{id} answers: playable items with renditions, subtitles, poster, shots."""
    settings = streamlake.settings()
    names = ("media_items", "renditions", "thumbnails", "subtitles", "shots")
    catalog = publish.api_catalog(*(tables.read_table(settings, name) for name in names))
    result = tables.replace_rows(settings, "api_catalog", catalog)  # withdrawn items drop out
    return dg.MaterializeResult(metadata=write_metadata(result))


@table_asset("serving", {"mlflow"}, deps=["champion_model", "view_events"])
def recs_topk(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Batch top-k per known user from the champion, plus the cold-start list under user_id '*'."""
    settings = streamlake.settings()
    champion = load_champion(settings)
    interactions = interactions_from_events(tables.read_table(settings, "view_events"))
    recs = publish.recs_topk(champion, interactions)
    result = tables.replace_rows(settings, "recs_topk", recs)
    cold = recs.filter(pl.col("user_id") == COLD_START_USER, pl.col("rank") <= PREVIEW_K)
    return dg.MaterializeResult(
        metadata=write_metadata(
            result,
            model_version=champion.version,
            users=recs.filter(pl.col("user_id") != COLD_START_USER)["user_id"].n_unique(),
            cold_start_preview=markdown_table(
                ["rank", "media_id", "score"],
                cold.select("rank", "media_id", pl.col("score").round(3)).rows(),
            ),
        )
    )
