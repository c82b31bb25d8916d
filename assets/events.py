"""Viewing events: simulated users and sessions, exactly-once view_events, hourly stats."""

import dagster as dg

from assets.common import StreamlakeResource, table_asset, write_metadata
from models.events.aggregates import hourly_stats as aggregate_hourly
from models.events.simulator import SimulationConfig, simulate_events, simulate_users
from models.events.store import record_simulated
from models.lake import tables


class SimulationParams(dg.Config):
    n_users: int = 200
    days: int = 2
    seed: int = 42


def _config(params: SimulationParams) -> SimulationConfig:
    return SimulationConfig(n_users=params.n_users, days=params.days, seed=params.seed)


@table_asset("events", set())
def users(streamlake: StreamlakeResource, config: SimulationParams) -> dg.MaterializeResult:
    """Simulated viewers (tier, country, device), deterministic for the seed."""
    result = tables.upsert(streamlake.settings(), "users", simulate_users(_config(config)))
    return dg.MaterializeResult(metadata=write_metadata(result, seed=config.seed))


@table_asset("events", {"polars"}, deps=["media_items", "users"])
def view_events(streamlake: StreamlakeResource, config: SimulationParams) -> dg.MaterializeResult:
    """Simulated player events over the catalog, held once per event_id (producers may resend)."""
    settings = streamlake.settings()
    catalog = tables.read_table(settings, "media_items", columns=["media_id", "duration_s", "tags"])
    known_users = tables.read_table(settings, "users")
    events = simulate_events(catalog, known_users, _config(config))
    result = record_simulated(settings, events)
    return dg.MaterializeResult(metadata=write_metadata(result, generated=events.height, seed=config.seed))


@table_asset("events", {"polars"}, deps=["view_events"])
def hourly_stats(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Views, exact unique viewers, watch time and completion rate per title and hour (Polars)."""
    settings = streamlake.settings()
    stats = aggregate_hourly(tables.read_table(settings, "view_events").lazy()).collect()
    result = tables.upsert(settings, "hourly_stats", stats)
    return dg.MaterializeResult(metadata=write_metadata(result, hours=stats["hour"].n_unique()))
