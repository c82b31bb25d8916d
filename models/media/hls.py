"""Package a source as HLS with CMAF (fMP4) segments: the ladder's renditions, one AAC audio
group, WebVTT subtitle groups, and a master playlist whose BANDWIDTH, AVERAGE-BANDWIDTH, CODECS,
RESOLUTION and FRAME-RATE are measured from what was written, then parsed back with the m3u8
library to prove every URI resolves.

Encodes are made in a scratch folder and renamed into place with a marker written last, so a
crash never leaves a half-written package that a later run would mistake for a finished one; a
finished package is reused (only the master is rewritten, e.g. when subtitles arrive).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import m3u8

from models.media import codecs, fanout, quality, tools, transcode
from models.media.ladder import LadderConfig, RungPlan, output_size
from models.media.probe import Probe

log = logging.getLogger("streamlake.hls")
MASTER = "master.m3u8"
MARKER = "encode.json"  # what was encoded, how, and its quality: written last
QUALITY_MAX_HEIGHT = 1080  # VMAF's models are trained for viewing at 1080p
QUALITY_SUBSAMPLE = 4  # score every 4th frame: the pooled mean barely moves, the cost drops 4x


class PackagingError(RuntimeError):
    """The written package does not hold together (a playlist that does not parse, a missing URI)."""


@dataclass(frozen=True)
class SubtitleTrack:
    lang: str
    name: str
    vtt: Path


@dataclass(frozen=True)
class Rendition:
    """One rendition as written: what was asked, what came out, how it was made."""

    name: str
    rung: str
    codec: str
    kind: str  # video | audio
    width: int
    height: int
    fps: float
    target_kbps: int
    bitrate: int  # average bit/s of the media segments (AVERAGE-BANDWIDTH; the init segment is not media)
    peak_bitrate: int  # the largest segment's bit/s (the HLS BANDWIDTH definition)
    segment_durations: list[float]
    playlist: Path
    codecs: str
    encoder: str
    encode_fps: float
    attempts: int
    error: str | None = None
    quality_metric: str | None = None
    quality: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Package:
    master: Path
    renditions: list[Rendition] = field(default_factory=list)

    @property
    def published(self) -> list[Rendition]:
        return [r for r in self.renditions if r.ok]


def _segments(playlist: Path) -> tuple[Path, list[Path], list[float]]:
    parsed = m3u8.load(str(playlist))
    if not parsed.is_endlist or not parsed.segment_map:
        raise PackagingError(f"{playlist.name}: not a finished fMP4 VOD playlist")
    folder = playlist.parent
    return (
        folder / parsed.segment_map[0].uri,
        [folder / s.uri for s in parsed.segments],
        [float(s.duration) for s in parsed.segments],
    )


def _measured(out_dir: Path, outcome: transcode.Outcome, probed: Probe) -> Rendition:
    job, plan = outcome.job, outcome.job.plan
    playlist = out_dir / f"{job.name}.m3u8"
    common = {
        "name": job.name,
        "rung": plan.rung if plan else "audio",
        "codec": plan.codec if plan else "aac",
        "kind": "video" if plan else "audio",
        "width": plan.width if plan else 0,
        "height": plan.height if plan else 0,
        "fps": plan.fps if plan else 0.0,
        "target_kbps": plan.bitrate_kbps if plan else 0,
        "encoder": job.encoder,
        "attempts": outcome.attempts,
        "playlist": playlist,
        "encode_fps": round(probed.duration_s * probed.fps / outcome.seconds, 1) if outcome.seconds else 0.0,
    }
    if outcome.error is not None:
        failed = {"bitrate": 0, "peak_bitrate": 0, "segment_durations": [], "codecs": ""}
        return Rendition(**common, **failed, error=outcome.error)
    init, segments, durations = _segments(playlist)
    sizes = [s.stat().st_size for s in segments]
    total = sum(durations)
    peak = max((size * 8 / d for size, d in zip(sizes, durations, strict=True) if d > 0), default=0)
    return Rendition(
        **common,
        bitrate=round(sum(sizes) * 8 / total) if total else 0,
        peak_bitrate=round(peak),
        segment_durations=durations,
        codecs=codecs.video_codec_string(plan.codec, init) if plan else codecs.AAC_LC,
    )


def joined_fmp4(playlist: Path, target: Path) -> Path:
    """A media playlist's rendition as one fragmented MP4 (init + segments, byte for byte)."""
    init, segments, _ = _segments(playlist)
    with target.open("wb") as out:
        for part in (init, *segments):
            out.write(part.read_bytes())
    return target


def _score(rendition: Rendition, source: Path, probed: Probe, scratch: Path, timeout_s: float) -> Rendition:
    """VMAF (PSNR without libvmaf) against the source, both shown at the source size up to 1080p.

    A score that cannot be computed is left empty: it never costs the rendition its place."""
    joined = joined_fmp4(rendition.playlist, scratch / f"{rendition.name}.score.mp4")
    try:
        scored = quality.score(
            joined, "mov", source, probed.demuxer, output_size(probed, QUALITY_MAX_HEIGHT), timeout_s,
            subsample=QUALITY_SUBSAMPLE,
        )  # fmt: skip
    except tools.FFmpegFailed as err:
        log.warning("%s: no quality score: %s", rendition.name, err)
        return rendition
    finally:
        joined.unlink(missing_ok=True)
    return _with(rendition, quality_metric=scored.metric, quality=scored.value)


def _with(rendition: Rendition, **changes: object) -> Rendition:
    return Rendition(**{**asdict(rendition), "playlist": rendition.playlist, **changes})


def _load_marker(out_dir: Path, fingerprint: str) -> list[Rendition] | None:
    marker = out_dir / MARKER
    if not marker.is_file():
        return None
    saved = json.loads(marker.read_text())
    if saved.get("fingerprint") != fingerprint or any(r["error"] for r in saved["renditions"]):
        return None  # a different ladder, or a rendition to try again (a timeout may not recur)
    return [Rendition(**{**r, "playlist": out_dir / r["playlist"]}) for r in saved["renditions"]]


def _save_marker(out_dir: Path, fingerprint: str, renditions: list[Rendition]) -> None:
    rows = [{**asdict(r), "playlist": r.playlist.name} for r in renditions]
    (out_dir / MARKER).write_text(json.dumps({"fingerprint": fingerprint, "renditions": rows}, indent=1))


def package_hls(
    source: Path,
    probed: Probe,
    out_dir: Path,
    plans: list[RungPlan],
    ladder: LadderConfig,
    *,
    timeout_s: float,
    hwaccel: str = "auto",
    split: bool = True,
    progress: transcode.Progress | None = None,
    subtitles: Sequence[SubtitleTrack] = (),
    executor: str = "process",
    ray_address: str | None = None,
) -> Package:
    """Encode (or reuse) every rendition, score its quality, write and validate the master.

    executor "process" encodes here (one decode split to every rendition); "ray" runs one Ray task
    per codec (see models.media.fanout).
    """
    jobs = transcode.plan_jobs(probed, plans, hwaccel)
    fingerprint = json.dumps([ladder.model_dump(), [asdict(j) for j in jobs]], sort_keys=True)
    renditions = _load_marker(out_dir, fingerprint)
    if renditions is None:
        scratch = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        if executor == "ray":
            outcomes = fanout.encode_on_ray(
                source,
                probed,
                jobs,
                ladder,
                scratch,
                timeout_s=timeout_s,
                hwaccel=hwaccel,
                address=ray_address,
            )
        else:
            outcomes = transcode.encode(
                source, probed, jobs, ladder, scratch, timeout_s=timeout_s, hwaccel=hwaccel, split=split,
                progress=progress,
            )  # fmt: skip
        renditions = [_measured(scratch, o, probed) for o in outcomes]
        renditions = [
            _score(r, source, probed, scratch, timeout_s) if r.ok and r.kind == "video" else r
            for r in renditions
        ]
        _save_marker(scratch, fingerprint, renditions)
        shutil.rmtree(out_dir, ignore_errors=True)
        scratch.rename(out_dir)
        renditions = [_with(r, playlist=out_dir / r.playlist.name) for r in renditions]
    package = Package(out_dir / MASTER, renditions)
    write_master(package, list(subtitles), probed.duration_s)
    validate(package.master)
    return package


def _subtitle_playlist(track: SubtitleTrack, out_dir: Path, duration_s: float) -> str:
    """A one-segment media playlist over a copy of the WebVTT file, kept inside the package."""
    shutil.copyfile(track.vtt, out_dir / f"subs_{track.lang}.vtt")
    name = f"subs_{track.lang}.m3u8"
    (out_dir / name).write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        f"#EXT-X-TARGETDURATION:{math.ceil(duration_s)}\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        f"#EXTINF:{duration_s:.3f},\nsubs_{track.lang}.vtt\n#EXT-X-ENDLIST\n"
    )
    return name


def write_master(package: Package, subtitles: list[SubtitleTrack], duration_s: float) -> None:
    """The master playlist: audio and subtitle groups, then every published video rendition."""
    out_dir = package.master.parent
    audio = next((r for r in package.published if r.kind == "audio"), None)
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio:
        lines.append(
            '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Main",LANGUAGE="und",DEFAULT=YES,AUTOSELECT=YES,'
            f'CHANNELS="2",URI="{audio.playlist.name}"'
        )
    for track in subtitles:
        uri = _subtitle_playlist(track, out_dir, duration_s)
        lines.append(
            f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="{track.name}",LANGUAGE="{track.lang}",'
            f'DEFAULT=NO,AUTOSELECT=YES,URI="{uri}"'
        )
    for video in (r for r in package.published if r.kind == "video"):
        attributes = [
            f"BANDWIDTH={video.peak_bitrate + (audio.peak_bitrate if audio else 0)}",
            f"AVERAGE-BANDWIDTH={video.bitrate + (audio.bitrate if audio else 0)}",
            f"RESOLUTION={video.width}x{video.height}",
            f"FRAME-RATE={video.fps:.3f}",
            f'CODECS="{video.codecs}{"," + audio.codecs if audio else ""}"',
            *(['AUDIO="aud"'] if audio else []),
            *(['SUBTITLES="subs"'] if subtitles else []),
        ]
        lines += [f"#EXT-X-STREAM-INF:{','.join(attributes)}", video.playlist.name]
    package.master.write_text("\n".join(lines) + "\n")


def validate(master: Path) -> m3u8.M3U8:
    """Parse the master and every playlist it names; every segment, map and file must exist."""
    parsed = m3u8.load(str(master))
    if not parsed.is_variant or not parsed.playlists:
        raise PackagingError(f"{master}: a master playlist without variants")
    uris = {p.uri for p in parsed.playlists} | {m.uri for m in parsed.media if m.uri}
    for uri in uris:
        playlist = master.parent / uri
        if not playlist.is_file():
            raise PackagingError(f"{master.name} names {uri}, which does not exist")
        media = m3u8.load(str(playlist))
        names = [s.uri for s in media.segments] + [m.uri for m in media.segment_map]
        missing = [n for n in names if not (playlist.parent / n).is_file()]
        if missing or not media.segments:
            raise PackagingError(f"{uri}: missing segments {missing[:3]}" if missing else f"{uri}: empty")
    return parsed


def ladder_markdown(renditions: list[Rendition]) -> str:
    """The ladder as a markdown table, for the Dagster UI."""
    rows = [
        f"| {r.name} | {r.width}x{r.height} | {r.fps:g} | {r.target_kbps} | {r.bitrate // 1000} "
        f"| {r.peak_bitrate // 1000} | {r.quality_metric or ''} {'' if r.quality is None else r.quality} "
        f"| {r.encoder} | {r.encode_fps} | {'ok' if r.ok else 'FAILED'} |"
        for r in renditions
    ]
    head = "| rendition | size | fps | target kbps | avg kbps | peak kbps | quality | encoder | enc fps | ok"
    return head + " |\n" + "|---" * 10 + "|\n" + "\n".join(rows)
