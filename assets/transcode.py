"""Transcode and package: HLS renditions and a poster per media item."""

import dagster as dg

from assets.common import StreamlakeResource, media_asset, media_source, write_metadata
from models.lake import tables
from models.media.hls import package_hls, poster


@media_asset("transcode", {"ffmpeg", "hls"})
def renditions(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """H.264 fMP4 HLS renditions with a master playlist (thin ladder: one 360p rung, never upscaled)."""
    settings, source, probed = media_source(streamlake, context.partition_key)
    out_dir = settings.packaged / context.partition_key / "hls"
    rungs = package_hls(source, probed, out_dir, settings.ffmpeg_timeout_s)
    rows = [
        {
            "media_id": context.partition_key,
            "rung": r.rung,
            "codec": r.codec,
            "width": r.width,
            "height": r.height,
            "bitrate": r.bitrate,
            "segment_count": r.segment_count,
            "duration_s": r.duration_s,
            "playlist_path": str(r.playlist.relative_to(settings.packaged)),
            "master_path": str(r.master.relative_to(settings.packaged)),
            "vmaf_or_psnr": None,
            "encoder": r.encoder,
            "encode_fps": r.encode_fps or None,
        }
        for r in rungs
    ]
    if all(r.encode_fps == 0.0 for r in rungs):  # reused package: keep the recorded encode speed
        known = tables.read_table(settings, "renditions").filter(media_id=context.partition_key)
        speeds = dict(zip(known["rung"].to_list(), known["encode_fps"].to_list(), strict=True))
        for row in rows:
            row["encode_fps"] = speeds.get(row["rung"])
    result = tables.replace_slice(settings, "renditions", "media_id", context.partition_key, rows)
    return dg.MaterializeResult(
        metadata=write_metadata(
            result,
            ladder=dg.MetadataValue.md(
                "| rung | size | kbps | segments | fps |\n|---|---|---|---|---|\n"
                + "\n".join(
                    f"| {r['rung']} | {r['width']}x{r['height']} | {r['bitrate'] // 1000} "
                    f"| {r['segment_count']} | {r['encode_fps']} |"
                    for r in rows
                )
            ),
        )
    )


@media_asset("transcode", {"ffmpeg"})
def thumbnails(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """A poster frame per media item, taken at 10% of the running time."""
    settings, source, probed = media_source(streamlake, context.partition_key)
    target = settings.packaged / context.partition_key / "poster.jpg"
    width, height, at = poster(source, probed, target, settings.ffmpeg_timeout_s)
    row = {
        "media_id": context.partition_key,
        "kind": "poster",
        "path": str(target.relative_to(settings.packaged)),
        "width": width,
        "height": height,
        "time_s": at,
    }
    result = tables.upsert(settings, "thumbnails", [row])
    return dg.MaterializeResult(metadata=write_metadata(result, poster=dg.MetadataValue.path(str(target))))
