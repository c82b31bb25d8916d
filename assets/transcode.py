"""Transcode and package: the ABR ladder as HLS/CMAF renditions, and the images around it
(poster, a thumbnail per shot, trickplay sprites)."""

from pathlib import Path

import dagster as dg

from assets.analysis import shot_spans
from assets.common import StreamlakeResource, media_asset, media_source, progress_logger, write_metadata
from models.lake import tables
from models.media import per_title
from models.media import thumbnails as thumbs
from models.media.hls import Package, SubtitleTrack, ladder_markdown, package_hls
from models.media.ladder import load_ladder, plan
from models.settings import Settings

LANGUAGE_NAMES = {"en": "English"}


def _subtitle_tracks(settings: Settings, media_id: str) -> list[SubtitleTrack]:
    rows = tables.read_table(settings, "subtitles").filter(media_id=media_id, format="webvtt")
    return [
        SubtitleTrack(r["lang"], LANGUAGE_NAMES.get(r["lang"], r["lang"]), settings.packaged / r["path"])
        for r in rows.iter_rows(named=True)
    ]


def _rendition_rows(settings: Settings, media_id: str, package: Package) -> list[dict]:
    return [
        {
            "media_id": media_id,
            "rung": r.rung,
            "codec": r.codec,
            "kind": r.kind,
            "width": r.width,
            "height": r.height,
            "fps": r.fps,
            "target_kbps": r.target_kbps,
            "bitrate": r.bitrate,
            "peak_bitrate": r.peak_bitrate,
            "segment_count": len(r.segment_durations),
            "duration_s": round(sum(r.segment_durations), 3),
            "playlist_path": str(r.playlist.relative_to(settings.packaged)),
            "master_path": str(package.master.relative_to(settings.packaged)),
            "codecs": r.codecs,
            "quality_metric": r.quality_metric,
            "quality": r.quality,
            "encoder": r.encoder,
            "encode_fps": r.encode_fps,
            "attempts": r.attempts,
            "error": r.error,
        }
        for r in package.renditions
    ]


@media_asset("transcode", {"ffmpeg", "hls"}, upstream=("media_items", "subtitles"))
def renditions(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """The ABR ladder (H.264 on every rung, HEVC and AV1 from 720p) as HLS with CMAF segments, an AAC
    audio group normalised to the loudness target, the subtitles as a WebVTT group, and quality
    (VMAF, else PSNR) of each rendition against the source. Never upscaled; hardware encoders when
    they work here, software otherwise (the `encoder` column says which)."""
    settings, source, probed = media_source(streamlake, context.partition_key)
    media_id = context.partition_key
    ladder = load_ladder(settings.ladder_file)
    plans = plan(probed, ladder)
    extra: dict = {}
    if settings.per_title:
        fixed = per_title.fixed_rungs(plans)
        fitted = per_title.per_title_ladder(source, probed, fixed, settings.ffmpeg_timeout_s)
        plans = per_title.refit(plans, fitted)
        saved = tables.replace_rows(
            settings, "per_title_ladders", fitted.to_rows(media_id), where=("media_id", media_id)
        )
        extra = {
            "per_title": dg.MetadataValue.md(fitted.summary_markdown()),
            "bits_saved": round(fitted.bits_saved, 4),
            "per_title_delta_version": saved.version,
        }
    package = package_hls(
        source,
        probed,
        settings.packaged / media_id / "hls",
        plans,
        ladder,
        timeout_s=settings.ffmpeg_timeout_s,
        hwaccel=settings.hwaccel,
        progress=progress_logger(context, f"{media_id} encode"),
        subtitles=_subtitle_tracks(settings, media_id),
        executor=settings.transcode_fanout,
        ray_address=settings.ray_address,
    )
    result = tables.replace_rows(
        settings, "renditions", _rendition_rows(settings, media_id, package), where=("media_id", media_id)
    )
    failed = [r for r in package.renditions if not r.ok]
    for r in failed:
        context.log.warning(f"{r.name} failed after {r.attempts} attempts: {r.error}")
    if not any(r.kind == "video" for r in package.published):
        reason = failed[0].error if failed else "none planned"
        raise dg.Failure(f"no video rendition could be encoded: {reason}")
    videos = [r for r in package.published if r.kind == "video"]
    return dg.MaterializeResult(
        metadata=write_metadata(
            result,
            ladder=dg.MetadataValue.md(ladder_markdown(package.renditions)),
            encoders=", ".join(sorted({r.encoder for r in package.renditions})),
            failed_renditions=len(failed),
            package_mb=round(sum(r.bitrate for r in videos) * probed.duration_s / 8 / 1e6, 2),
            master=dg.MetadataValue.path(str(package.master)),
            **extra,
        )
    )


@media_asset("transcode", {"ffmpeg", "jpeg"}, upstream=("media_items", "shots"))
def thumbnails(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """A poster from a sharp, non-black frame; a thumbnail at each shot; trickplay sprite sheets with
    their WebVTT map (`sprite_000.jpg#xywh=…`), as Jellyfin trickplay and Mux storyboards do."""
    settings, source, probed = media_source(streamlake, context.partition_key)
    media_id = context.partition_key
    folder = settings.packaged / media_id / "images"
    timeout = settings.ffmpeg_timeout_s
    shot_starts = [start for start, _ in shot_spans(settings, media_id)]
    poster = thumbs.choose_poster(source, probed, folder / "poster.jpg", timeout)
    shots = thumbs.shot_thumbnails(source, probed, shot_starts, folder / "shots", timeout)
    sprites = thumbs.trickplay(source, probed, folder / "trickplay", timeout)

    def row(kind: str, path: Path, width: int, height: int, time_s: float) -> dict:
        relative = str(path.relative_to(settings.packaged))
        return {"media_id": media_id, "kind": kind, "path": relative, "width": width, "height": height,
                "time_s": time_s}  # fmt: skip

    rows = [
        row("poster", poster.path, poster.width, poster.height, poster.time_s),
        *(row(f"shot-{i:04d}", t.path, t.width, t.height, t.time_s) for i, t in enumerate(shots)),
        row("trickplay", sprites.vtt, sprites.tile_width, sprites.tile_height, sprites.interval_s),
    ]
    result = tables.replace_rows(settings, "thumbnails", rows, where=("media_id", media_id))
    return dg.MaterializeResult(
        metadata=write_metadata(
            result,
            poster=dg.MetadataValue.path(str(poster.path)),
            poster_time_s=poster.time_s,
            shot_thumbnails=len(shots),
            trickplay_sheets=len(sprites.sprites),
        )
    )
