"""Package a source as HLS (fMP4 segments + master playlist) and cut a poster frame.

Outputs are built in a scratch folder and renamed into place, so a crash never leaves a
half-written rendition that a later run would mistake for a finished one.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from models.media import tools
from models.media.probe import Probe, safe_input

SEGMENT_S = 2
MASTER = "master.m3u8"
SPEED_FILE = "encode.json"  # encode speed per rung, kept with the package


@dataclass(frozen=True)
class Rung:
    name: str
    height: int
    crf: int
    maxrate_kbps: int


THIN_LADDER = (Rung("360p", 360, 23, 1000),)


@dataclass(frozen=True)
class Rendition:
    rung: str
    codec: str
    width: int
    height: int
    bitrate: int
    segment_count: int
    duration_s: float
    playlist: Path
    master: Path
    encoder: str
    encode_fps: float


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def output_size(probed: Probe, height: int) -> tuple[int, int]:
    """Never upscale: a target taller than the source is made at the source height."""
    fitted = _even(min(height, probed.height))
    return _even(probed.width * fitted / probed.height), fitted


def playlist_durations(playlist: Path) -> list[float]:
    """Segment durations from a media playlist's #EXTINF tags."""
    return [float(m) for m in re.findall(r"#EXTINF:([0-9.]+)", playlist.read_text())]


def _rendition(out_dir: Path, rung: Rung, probed: Probe) -> Rendition:
    playlist = out_dir / f"{rung.name}.m3u8"
    durations = playlist_durations(playlist)
    size = sum(p.stat().st_size for p in out_dir.glob(f"{rung.name}_*"))
    duration = sum(durations)
    width, height = output_size(probed, rung.height)
    encode_fps = json.loads((out_dir / SPEED_FILE).read_text()).get(rung.name, 0.0)
    return Rendition(
        rung=rung.name,
        codec="h264",
        width=width,
        height=height,
        bitrate=int(size * 8 / duration) if duration else 0,
        segment_count=len(durations),
        duration_s=round(duration, 3),
        playlist=playlist,
        master=out_dir / MASTER,
        encoder="libx264",
        encode_fps=encode_fps,
    )


def package_hls(
    source: Path, probed: Probe, out_dir: Path, timeout_s: float, ladder: tuple[Rung, ...] = THIN_LADDER
) -> list[Rendition]:
    """Encode each rung to H.264 fMP4 HLS; reuse a finished package instead of re-encoding."""
    if (out_dir / SPEED_FILE).is_file() and all((out_dir / f"{r.name}.m3u8").is_file() for r in ladder):
        return [_rendition(out_dir, rung, probed) for rung in ladder]
    scratch = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    fps_by_rung = {}
    for rung in ladder:
        started = time.perf_counter()
        _encode_rung(source, probed, scratch, rung, timeout_s)
        fps_by_rung[rung.name] = round(probed.duration_s * probed.fps / (time.perf_counter() - started), 1)
    (scratch / SPEED_FILE).write_text(json.dumps(fps_by_rung))  # written last: marks the package done
    shutil.rmtree(out_dir, ignore_errors=True)
    scratch.rename(out_dir)
    return [_rendition(out_dir, rung, probed) for rung in ladder]


def _encode_rung(source: Path, probed: Probe, out_dir: Path, rung: Rung, timeout_s: float) -> None:
    source_node = safe_input(source, probed.demuxer)
    width, height = output_size(probed, rung.height)
    streams = [source_node.video.filter("scale", width, height)]
    audio: dict[str, str | int] = {}
    if probed.audio_codec:
        streams.append(source_node.audio)
        audio = {"acodec": "aac", "b:a": "96k", "ac": 2}
    output = ffmpeg.output(
        *streams,
        str(out_dir / f"{rung.name}.m3u8"),
        vcodec="libx264",
        preset="veryfast",
        crf=rung.crf,
        maxrate=f"{rung.maxrate_kbps}k",
        bufsize=f"{2 * rung.maxrate_kbps}k",
        pix_fmt="yuv420p",
        force_key_frames=f"expr:gte(t,n_forced*{SEGMENT_S})",
        sc_threshold=0,
        f="hls",
        hls_time=SEGMENT_S,
        hls_playlist_type="vod",
        hls_segment_type="fmp4",
        hls_fmp4_init_filename=f"{rung.name}_init.mp4",
        hls_segment_filename=str(out_dir / f"{rung.name}_%04d.m4s"),
        hls_flags="independent_segments",
        master_pl_name=MASTER,
        **audio,
    )
    tools.run_graph(output, timeout_s, overwrite=True)


def poster(
    source: Path, probed: Probe, target: Path, timeout_s: float, height: int = 360
) -> tuple[int, int, float]:
    """A JPEG frame at 10% of the running time (past cold opens and black leaders)."""
    at = round(probed.duration_s * 0.1, 3)
    width, fitted = output_size(probed, height)
    target.parent.mkdir(parents=True, exist_ok=True)
    output = (
        safe_input(source, probed.demuxer, ss=at)
        .video.filter("scale", width, fitted)
        .output(str(target), vframes=1, **{"q:v": 3})
    )
    tools.run_graph(output, timeout_s, overwrite=True)
    return width, fitted, at


def ladder_markdown(renditions: list[Rendition]) -> str:
    """The ladder as a markdown table, for the Dagster UI."""
    rows = [
        f"| {r.rung} | {r.width}x{r.height} | {r.bitrate // 1000} | {r.segment_count} | {r.encode_fps} |"
        for r in renditions
    ]
    return "| rung | size | kbps | segments | encode fps |\n|---|---|---|---|---|\n" + "\n".join(rows)
