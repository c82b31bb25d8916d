"""Published API snapshots: exactly the tables the Ray Serve app reads."""

import dagster as dg
import polars as pl

from assets.common import StreamlakeResource, table_asset, write_metadata
from models.lake import publish, tables
from models.recsys.data import interactions_from_events
from models.recsys.popularity import TopPop
from models.recsys.registry import load_champion

TOP_K = 20
COLD_START_USER = "*"


@table_asset("serving", {"polars"}, deps=["media_items", "renditions", "thumbnails", "subtitles", "shots"])
def api_catalog(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """What GET /media/{id} answers: playable items with renditions, subtitles, poster, shots."""
    settings = streamlake.settings()
    names = ("media_items", "renditions", "thumbnails", "subtitles", "shots")
    catalog = publish.api_catalog(*(tables.read_table(settings, name) for name in names))
    published = set(catalog["media_id"].to_list())
    withdrawn = [
        m for m in tables.read_table(settings, "api_catalog", ["media_id"])["media_id"] if m not in published
    ]
    result = tables.upsert(settings, "api_catalog", catalog)
    if withdrawn:
        tables.delete_where(settings, "api_catalog", "media_id", withdrawn)
    return dg.MaterializeResult(metadata=write_metadata(result, withdrawn=len(withdrawn)))


@table_asset("serving", {"mlflow"}, deps=["champion_model", "view_events"])
def recs_topk(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Top-k per known user from the champion, plus the cold-start list under user_id '*'."""
    settings = streamlake.settings()
    interactions = interactions_from_events(tables.read_table(settings, "view_events"))
    champion = load_champion(settings)
    users = interactions["user_id"].unique().sort().to_list()
    per_user = champion.recommend(users, TOP_K).with_columns(model_version=pl.lit(champion.version))
    cold = (
        TopPop()
        .fit(interactions)
        .recommend([COLD_START_USER], TOP_K)
        .with_columns(model_version=pl.lit("toppop-cold-start"))
    )
    result = tables.upsert(settings, "recs_topk", pl.concat([per_user, cold], how="diagonal_relaxed"))
    return dg.MaterializeResult(
        metadata=write_metadata(result, users=len(users), model_version=champion.version)
    )
