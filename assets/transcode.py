"""Transcode and package: HLS renditions and a poster per media item."""

import dagster as dg

from assets.common import StreamlakeResource, media_asset, media_source, write_metadata
from models.lake import tables
from models.media.hls import ladder_markdown, package_hls, poster


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
            "encode_fps": r.encode_fps,
        }
        for r in rungs
    ]
    result = tables.replace_rows(settings, "renditions", rows, where=("media_id", context.partition_key))
    return dg.MaterializeResult(
        metadata=write_metadata(result, ladder=dg.MetadataValue.md(ladder_markdown(rungs)))
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
