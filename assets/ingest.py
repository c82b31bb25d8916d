"""Ingest: probe each admitted upload; good ones become media_items, bad ones go to quarantine."""

from datetime import UTC, datetime

import dagster as dg

from assets.common import OWNER, StreamlakeResource, media_partitions, table_metadata, write_metadata
from models.lake import tables
from models.lake.quality import validate_media_items
from models.media import library
from models.media.probe import MediaRejected, probe, verify_decodes


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "media_items",
            description="One row per playable media item, probed with ffprobe (duration, size, codecs).",
            skippable=True,
            metadata=table_metadata("media_items"),
            kinds={"ffmpeg", "delta"},
            owners=[OWNER],
        ),
        dg.AssetSpec(
            "quarantine",
            description="Uploads we refused, with the reason; files moved aside under media/quarantine.",
            skippable=True,
            metadata=table_metadata("quarantine"),
            kinds={"delta"},
            owners=[OWNER],
        ),
    ],
    partitions_def=media_partitions,
    group_name="ingest",
    can_subset=False,
)
def ingest(context: dg.AssetExecutionContext, streamlake: StreamlakeResource):
    """Probe the partition's upload; a bad file is quarantined without failing the run."""
    settings = streamlake.settings()
    media_id = context.partition_key
    held = settings.quarantine_dir / media_id
    if held.exists() and not (settings.library / media_id).exists():
        reason = (held / library.REASON_FILE).read_text().strip()
        context.log.info("media %s already quarantined: %s", media_id, reason)
        return
    source = library.source_file(settings.library, media_id)
    origin = library.origin(settings.library, media_id)
    try:
        if source.is_symlink():
            raise MediaRejected("symbolic link (not followed)")
        probed = probe(source)
        verify_decodes(source, probed, settings.ffmpeg_timeout_s)
    except MediaRejected as rejected:
        moved = library.quarantine(settings.library, settings.quarantine_dir, media_id, str(rejected))
        row = {
            "source_uri": origin["source_uri"],
            "sha256": origin["sha256"],
            "reason": str(rejected),
            "quarantined_path": str(moved),
            "detected_at": datetime.now(UTC),
        }
        context.log.warning("quarantined %s (%s): %s", media_id, origin["name"], rejected)
        result = tables.upsert(settings, "quarantine", [row])
        yield dg.MaterializeResult(
            asset_key="quarantine", metadata=write_metadata(result, reason=str(rejected))
        )
        return
    row = {
        "media_id": media_id,
        "source_uri": origin["source_uri"],
        "sha256": origin["sha256"],
        "title": origin.get("title") or source.stem.replace("_", " ").title(),
        "description": origin.get("description", ""),
        "tags": origin.get("tags", []),
        "duration_s": probed.duration_s,
        "width": probed.width,
        "height": probed.height,
        "fps": probed.fps,
        "video_codec": probed.video_codec,
        "audio_codec": probed.audio_codec,
        "bitrate": probed.bitrate,
        "ingested_at": datetime.fromtimestamp(source.stat().st_mtime, UTC),
        "status": "ready",
    }
    result = tables.upsert(settings, "media_items", [row])
    yield dg.MaterializeResult(
        asset_key="media_items",
        metadata=write_metadata(
            result, duration_s=probed.duration_s, resolution=f"{probed.width}x{probed.height}"
        ),
    )


@dg.asset_check(asset="media_items", blocking=True, description="Great Expectations suite over media_items.")
def media_items_expectations(
    context: dg.AssetCheckExecutionContext, streamlake: StreamlakeResource
) -> dg.AssetCheckResult:
    """Ids, durations, resolutions and codecs are plausible; a failure stops downstream assets.

    In a per-item run only that item's row is checked, so one bad row cannot block every later
    item; a run without a partition checks the whole table.
    """
    frame = tables.read_table(streamlake.settings(), "media_items")
    partition = context.run.tags.get("dagster/partition")
    if partition is not None:
        frame = frame.filter(media_id=partition)
    report = validate_media_items(frame.to_pandas())
    return dg.AssetCheckResult(
        passed=report.success,
        metadata={
            "expectations": report.evaluated,
            "rows": frame.height,
            "failures": "\n".join(report.failures),
        },
    )
