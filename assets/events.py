"""Viewing events: simulated users and sessions, exactly-once view_events, and their aggregates
(hourly stats, per-user stats, the co-watch graph) in Polars or Spark."""

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import polars as pl

from assets.common import OWNER, StreamlakeResource, table_asset, table_metadata, write_metadata
from models.events.aggregates import aggregate
from models.events.simulator import SimulationConfig, genres_from_labels, iter_events, simulate_users
from models.events.store import record_simulated
from models.lake import tables


class SimulationParams(dg.Config):
    n_users: int = 200
    days: int = 2
    sessions_per_user: float = 6.0
    seed: int = 42


def _config(params: SimulationParams) -> SimulationConfig:
    return SimulationConfig(
        n_users=params.n_users,
        days=params.days,
        sessions_per_user=params.sessions_per_user,
        seed=params.seed,
    )


@table_asset("events", set())
def users(streamlake: StreamlakeResource, config: SimulationParams) -> dg.MaterializeResult:
    """Simulated viewers (tier, country, device), deterministic for the seed."""
    result = tables.upsert(streamlake.settings(), "users", simulate_users(_config(config)))
    return dg.MaterializeResult(metadata=write_metadata(result, seed=config.seed))


@table_asset("events", {"polars"}, deps=["media_items", "users", "content_labels"])
def view_events(
    context: dg.AssetExecutionContext, streamlake: StreamlakeResource, config: SimulationParams
) -> dg.MaterializeResult:
    """Simulated player events over the catalog (taste by the analysis stage's genre labels),
    ingested a block of viewers at a time and held once per event_id (producers may resend)."""
    settings = streamlake.settings()
    catalog = genres_from_labels(
        tables.read_table(settings, "media_items", columns=["media_id", "duration_s", "tags"]),
        tables.read_table(settings, "content_labels", columns=["media_id", "kind", "label"]),
    )
    known_users = tables.read_table(settings, "users")
    generated = 0

    def chunks() -> Iterator[pl.DataFrame]:
        nonlocal generated
        for chunk in iter_events(catalog, known_users, _config(config)):
            generated += chunk.height
            context.log.info(f"simulated {generated:,} events")
            yield chunk

    ingested = record_simulated(settings, chunks())
    return dg.MaterializeResult(
        metadata=write_metadata(
            ingested.write,
            generated=generated,
            accepted=ingested.accepted,
            duplicates=ingested.duplicates,
            rejected=ingested.rejected,
            seed=config.seed,
        )
    )


class AggregateParams(dg.Config):
    engine: str | None = None  # "polars" or "spark"; default: STREAMLAKE_AGGREGATE_ENGINE (polars)
    co_watch_window_h: float = 24.0


# hourly_stats_job refreshes the aggregates at five past every hour: warn when one run was missed,
# fail when two were (the UI's freshness status; the Feast hourly views read these tables).
AGGREGATE_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=2), warn_window=timedelta(minutes=75)
)


def _aggregate_spec(name: str, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        name,
        description=description,
        deps=["view_events"],
        metadata=table_metadata(name),
        kinds={"polars", "spark", "delta"},
        owners=[OWNER],
        freshness_policy=AGGREGATE_FRESHNESS,
    )


@dg.multi_asset(
    specs=[
        _aggregate_spec(
            "hourly_stats", "Views, exact unique viewers, watch time and completion per title-hour."
        ),
        _aggregate_spec(
            "user_stats", "Per viewer: sessions, distinct titles, watch time, completion, last seen."
        ),
        _aggregate_spec(
            "co_watch",
            "Pairs of titles one viewer started within the window (the co-watch graph's edges); "
            "weight = viewers / sqrt(viewers_a * viewers_b).",
        ),
    ],
    group_name="events",
)
def event_aggregates(
    streamlake: StreamlakeResource, config: AggregateParams
) -> Iterator[dg.MaterializeResult]:
    """The three aggregates of view_events in one pass of the chosen engine: Polars on the
    streaming engine (default), or PySpark (local, or Spark Connect at SPARK_REMOTE) with identical
    output. Each table is replaced whole, so hours, viewers or pairs that went away go too."""
    settings = streamlake.settings()
    engine = config.engine or settings.aggregate_engine
    frames = aggregate(settings, engine=engine, window_h=config.co_watch_window_h)  # type: ignore[arg-type]
    for name, frame in frames.items():
        result = tables.replace_rows(settings, name, frame)
        yield dg.MaterializeResult(asset_key=name, metadata=write_metadata(result, engine=engine))
