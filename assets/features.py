"""Features: the Feast repo applied and materialized into the online store."""

import dagster as dg

from assets.common import OWNER, StreamlakeResource
from models.features.store import apply_and_materialize
from models.lake import tables


@dg.asset(
    group_name="features",
    deps=["hourly_stats", "users", "user_stats"],
    kinds={"feast", "duckdb", "sqlite"},
    owners=[OWNER],
)
def feast_online_features(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """`feast apply` + materialize: media hourly stats, user profiles and user stats into the online store.

    Materializes up to the newest event hour in the lake (not wall-clock now), so a re-run over
    the same data loads the same rows.
    """
    settings = streamlake.settings()
    hours = tables.read_table(settings, "hourly_stats", columns=["hour"])
    if hours.is_empty():
        raise dg.Failure("hourly_stats is empty: materialize the events group first")
    summary = apply_and_materialize(settings, end=hours["hour"].max())
    return dg.MaterializeResult(
        metadata={k: v if isinstance(v, int | float) else str(v) for k, v in summary.items()}
    )
