"""Decide whether an uploaded file is media we will touch, and describe it.

Untrusted files never reach FFmpeg's format auto-detection: we sniff the container from its
magic bytes, allow only plain containers, and force that demuxer with a file-only protocol
whitelist, so playlist-style demuxers (hls, concat) cannot be tricked into reading other files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from models.media import tools

# sniffed container -> FFmpeg demuxer to force
ALLOWED_CONTAINERS = {"mp4": "mov", "matroska": "matroska", "mpegts": "mpegts", "avi": "avi", "ogg": "ogg"}
MAX_DIMENSION = 8192
MAX_FPS = 1000.0
PROBE_TIMEOUT_S = 30.0
# A container header (mvhd) may claim any duration; the streams' sample tables say what is there.
# A claim beyond twice theirs (plus 10 s of edit-list leeway) is a forged or broken header.
MAX_DURATION_SLACK = 2.0


class MediaRejected(ValueError):
    """The file is not media we accept; the message is the quarantine reason."""


@dataclass(frozen=True)
class Probe:
    container: str
    duration_s: float
    width: int
    height: int
    fps: float
    video_codec: str
    audio_codec: str | None
    bitrate: int

    @property
    def demuxer(self) -> str:
        return ALLOWED_CONTAINERS[self.container]


def sniff_container(path: Path) -> str | None:
    """The container named by the file's first bytes, or None when it is not one we allow."""
    with path.open("rb") as handle:
        head = handle.read(376)
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if len(head) >= 189 and head[0] == 0x47 and head[188] == 0x47:
        return "mpegts"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"OggS":
        return "ogg"
    return None


def safe_input(path: Path, demuxer: str, **options: Any) -> ffmpeg.nodes.FilterableStream:
    """An ffmpeg-python input node with the demuxer forced and only the file protocol allowed."""
    return ffmpeg.input(str(path), f=demuxer, protocol_whitelist="file", **options)


def safe_input_args(
    path: Path, demuxer: str, *, start_s: float | None = None, duration_s: float | None = None
) -> list[str]:
    """safe_input as an argument list, for commands built by hand (a second FFmpeg, measuring runs):
    an optional window, the forced demuxer, the file protocol only."""
    seek = ["-ss", f"{start_s:.3f}"] if start_s else []
    cut = ["-t", f"{duration_s:.3f}"] if duration_s else []
    return [*seek, *cut, "-protocol_whitelist", "file", "-f", demuxer, "-i", str(path)]


def _ffprobe(path: Path, demuxer: str) -> dict[str, Any]:
    args = [
        tools.require("ffprobe"),
        "-v", "error",
        "-protocol_whitelist", "file",
        "-f", demuxer,
        "-show_format", "-show_streams",
        "-of", "json",
        str(path),
    ]  # fmt: skip
    try:
        return json.loads(tools.run(args, timeout_s=PROBE_TIMEOUT_S))
    except tools.FFmpegFailed as err:  # the reason names the problem, not where we keep the file
        raise MediaRejected(f"unreadable media: {str(err).replace(f'{path}: ', '')}") from err


def _rate(text: str | None) -> float:
    try:
        return float(Fraction(text)) if text and text != "0/0" else 0.0
    except (ValueError, ZeroDivisionError):
        return 0.0


def probe(path: Path) -> Probe:
    """Probe a file that passed the sniff; raise MediaRejected with a reason a person can act on."""
    size = path.stat().st_size
    if size == 0:
        raise MediaRejected("empty file (0 bytes)")
    container = sniff_container(path)
    if container is None:
        raise MediaRejected(
            f"not a recognised media container (allowed: {', '.join(sorted(ALLOWED_CONTAINERS))})"
        )
    info = _ffprobe(path, ALLOWED_CONTAINERS[container])
    video = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"), None)
    audio = next((s for s in info.get("streams", []) if s.get("codec_type") == "audio"), None)
    if video is None:
        raise MediaRejected("no video stream")
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if not (16 <= width <= MAX_DIMENSION and 16 <= height <= MAX_DIMENSION):
        raise MediaRejected(f"implausible resolution {width}x{height}")
    duration = float(info.get("format", {}).get("duration") or video.get("duration") or 0.0)
    if duration <= 0:
        raise MediaRejected("no duration: the file holds no playable frames")
    streams_s = max(
        (float(s["duration"]) for s in info.get("streams", []) if s.get("duration")), default=None
    )
    if streams_s is not None and duration > MAX_DURATION_SLACK * streams_s + 10:
        raise MediaRejected(f"duration claim {duration:.0f} s exceeds its streams' {streams_s:.1f} s")
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    if not 0 < fps <= MAX_FPS:
        raise MediaRejected(f"implausible frame rate {fps:g}")
    if not video.get("codec_name"):
        raise MediaRejected("video stream without a known codec")
    return Probe(
        container=container,
        duration_s=round(duration, 3),
        width=width,
        height=height,
        fps=round(fps, 3),
        video_codec=str(video.get("codec_name")),
        audio_codec=str(audio.get("codec_name")) if audio else None,
        bitrate=int(info.get("format", {}).get("bit_rate") or 0) or int(size * 8 / duration),
    )


def verify_decodes(path: Path, probed: Probe, timeout_s: float) -> None:
    """Decode the video stream once; truncated or corrupt files fail here rather than mid-ladder."""
    stream = safe_input(path, probed.demuxer).video.output("-", f="null").global_args("-xerror")
    try:
        tools.run_graph(stream, timeout_s)
    except tools.FFmpegFailed as err:
        raise MediaRejected(f"video does not decode: {err}") from err
