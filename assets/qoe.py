"""Quality of experience: simulated playback beacons for the simulated sessions, and the hourly
QoE table per title and device class (formulas in models/qoe/metrics.py)."""

import dagster as dg

from assets.common import StreamlakeResource, markdown_table, table_asset, write_metadata
from models.events.ingest import ingest_events
from models.lake import tables
from models.qoe.metrics import by_device_class
from models.qoe.metrics import qoe_hourly as qoe_table
from models.qoe.network import simulate_beacons, simulated_sessions, video_ladders


class BeaconParams(dg.Config):
    seed: int = 42


@table_asset("events", {"polars"}, deps=["view_events", "renditions"])
def playback_beacons(streamlake: StreamlakeResource, config: BeaconParams) -> dg.MaterializeResult:
    """Player QoE beacons for the simulator's sessions, streamed over a per-device-class network
    model from each title's H.264 ladder, through POST /events' exactly-once ingest (real players'
    beacons land in the same table)."""
    settings = streamlake.settings()
    events = tables.read_table(settings, "view_events").lazy()
    ladders = video_ladders(tables.read_table(settings, "renditions"))
    beacons = simulate_beacons(simulated_sessions(events), ladders, config.seed)
    received_at = beacons["ts"].max() if beacons.height else None
    result = ingest_events(settings, beacons, received_at=received_at)  # type: ignore[arg-type]
    written = result.beacons or tables.WriteResult("playback_beacons", -1, 0, 0)
    return dg.MaterializeResult(
        metadata=write_metadata(
            written,
            generated=beacons.height,
            duplicates=result.duplicates,
            rejected=result.rejected,
            seed=config.seed,
        )
    )


@table_asset("analytics", {"polars"}, deps=["playback_beacons"])
def qoe_hourly(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Failure and exit-before-start rates, startup p50/p95, rebuffering, delivered resolution
    against the player and a 0-100 viewer-experience score per title x hour x device class;
    replaced whole, so groups whose beacons went away go too."""
    settings = streamlake.settings()
    frame = qoe_table(tables.read_table(settings, "playback_beacons").lazy()).collect()
    result = tables.replace_rows(settings, "qoe_hourly", frame)
    return dg.MaterializeResult(
        metadata=write_metadata(
            result,
            by_device_class=markdown_table(
                ["device class", "sessions", "mean QoE"], by_device_class(frame).rows()
            ),
        )
    )
