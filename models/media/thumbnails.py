"""Stills a viewer sees before pressing play: a poster that is neither a black leader nor a blurred
frame, one still per shot, and trickplay sprite sheets with a WebVTT map for scrub previews (the
layout Jellyfin trickplay and Mux storyboards use).

Frames are picked by number (`select=eq(n,K)`) in a single decoding pass, so one FFmpeg process
serves every candidate or shot; frame K is the one on screen at K/fps.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from models.media import tools
from models.media.ladder import even, output_size
from models.media.probe import Probe, safe_input
from models.media.webvtt import timestamp

POSTER_CANDIDATES = 12
POSTER_WINDOW = (0.05, 0.60)  # share of the running time: past cold opens, before the credits
SCORE_WIDTH = 160  # candidates are scored on small grayscale frames
DARK, BRIGHT, FLAT = 24.0, 235.0, 8.0  # mean luma below/above, or std dev below: not a usable poster
SHOT_OFFSET_S = 0.5  # a little into each shot, past the cut's transition frames
SELECT_BATCH = 1000  # frames per select expression, well under the 128 KiB limit on one argument
SPRITE_QUALITY = 5


@dataclass(frozen=True)
class Thumb:
    path: Path
    width: int
    height: int
    time_s: float


@dataclass(frozen=True)
class Trickplay:
    vtt: Path
    sprites: list[Path]
    interval_s: float
    tile_width: int
    tile_height: int
    columns: int
    rows: int
    frame_count: int


def _frame(time_s: float, probed: Probe) -> int:
    """The frame on screen at time_s (frames counted from the first decoded one at a constant rate)."""
    return int(time_s * probed.fps + 1e-6)


def _last_time(probed: Probe) -> float:
    """The start of the last whole frame, so a clamped time still lands on a decodable frame."""
    return max(0.0, probed.duration_s - 1.0 / probed.fps)


def _select(frames: Sequence[int]) -> str:
    return "+".join(f"eq(n,{k})" for k in frames)


def _grab_small(source: Path, probed: Probe, frames: Sequence[int], timeout_s: float) -> np.ndarray:
    """The given frames as small grayscale arrays, decoded in one pass; frames past the end are absent."""
    width = SCORE_WIDTH
    height = even(width * probed.height / probed.width)
    output = (
        safe_input(source, probed.demuxer)
        .video.filter("select", _select(frames))
        .filter("scale", width, height)
        .output("pipe:", f="rawvideo", pix_fmt="gray", fps_mode="passthrough", vframes=len(frames))
    )
    raw = tools.run_graph(output, timeout_s)
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width)


def sharpness(frame: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: high for crisp edges, low for blur and motion smear."""
    f = frame.astype(np.float32)
    lap = 4 * f[1:-1, 1:-1] - f[:-2, 1:-1] - f[2:, 1:-1] - f[1:-1, :-2] - f[1:-1, 2:]
    return float(lap.var())


def _best(frames: np.ndarray) -> int:
    """Index of the sharpest frame that is neither dark, blown out nor flat; else the most varied one."""
    means, stds = frames.mean(axis=(1, 2)), frames.std(axis=(1, 2))
    usable = [i for i in range(len(frames)) if DARK <= means[i] <= BRIGHT and stds[i] >= FLAT]
    if usable:
        return max(usable, key=lambda i: sharpness(frames[i]))
    return max(range(len(frames)), key=lambda i: (stds[i], means[i]))


def _poster_times(probed: Probe) -> dict[int, float]:
    """Candidate frame -> time, spread over the window; fewer for short clips, never frame 0."""
    start, end = (probed.duration_s * share for share in POSTER_WINDOW)
    count = max(1, min(POSTER_CANDIDATES, int((end - start) * probed.fps)))
    first = 1.0 / probed.fps if probed.duration_s * probed.fps >= 2 else 0.0
    candidates: dict[int, float] = {}
    for t in np.linspace(start, end, count):
        at = round(min(max(float(t), first), _last_time(probed)), 3)
        candidates.setdefault(_frame(at, probed), at)
    return candidates


def choose_poster(source: Path, probed: Probe, target: Path, timeout_s: float, height: int = 360) -> Thumb:
    """A JPEG of the sharpest usable candidate frame (black leaders and flat fades are skipped)."""
    candidates = _poster_times(probed)
    frames = sorted(candidates)
    small = _grab_small(source, probed, frames, timeout_s)
    if not len(small):
        raise tools.FFmpegFailed("ffmpeg decoded none of the poster candidates")
    chosen = frames[_best(small)]
    width, fitted = output_size(probed, height)
    target.parent.mkdir(parents=True, exist_ok=True)
    # an input seek half a frame early makes FFmpeg's accurate seek land exactly on frame `chosen`
    seek = {"ss": f"{(chosen - 0.5) / probed.fps:.6f}"} if chosen else {}
    output = (
        safe_input(source, probed.demuxer, **seek)
        .video.filter("scale", width, fitted)
        .output(str(target), vframes=1, **{"q:v": 3})
    )
    tools.run_graph(output, timeout_s, overwrite=True)
    return Thumb(target, width, fitted, candidates[chosen])


def shot_thumbnails(
    source: Path,
    probed: Probe,
    shot_starts_s: Sequence[float],
    out_dir: Path,
    timeout_s: float,
    height: int = 180,
) -> list[Thumb]:
    """One JPEG per shot (`shot_0000.jpg`...), a little into the shot, from one decoding pass."""
    ends = [*shot_starts_s[1:], probed.duration_s]
    times = [
        round(min(max(s + min(SHOT_OFFSET_S, max(0.0, e - s) / 3), 0.0), _last_time(probed)), 3)
        for s, e in zip(shot_starts_s, ends, strict=True)
    ]
    wanted = sorted({_frame(t, probed) for t in times})
    width, fitted = output_size(probed, height)
    scratch = out_dir / ".frames"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for offset in range(0, len(wanted), SELECT_BATCH):
        batch = wanted[offset : offset + SELECT_BATCH]
        output = (
            safe_input(source, probed.demuxer)
            .video.filter("select", _select(batch))
            .filter("scale", width, fitted)
            .output(
                str(scratch / "%06d.jpg"),
                start_number=offset,
                fps_mode="passthrough",
                vframes=len(batch),
                **{"q:v": 3},
            )
        )
        tools.run_graph(output, timeout_s, overwrite=True)
    made = {k: scratch / f"{i:06d}.jpg" for i, k in enumerate(wanted) if (scratch / f"{i:06d}.jpg").is_file()}
    if not made:
        raise tools.FFmpegFailed("ffmpeg decoded none of the shot frames")
    thumbs = []
    for index, t in enumerate(times):
        k = _frame(t, probed)
        # a container longer than its video track leaves tail frames undecoded: reuse the last one
        grabbed = made.get(k) or made[max(j for j in made if j <= k)]
        path = out_dir / f"shot_{index:04d}.jpg"
        shutil.copyfile(grabbed, path)
        thumbs.append(Thumb(path, width, fitted, t))
    shutil.rmtree(scratch)
    return thumbs


def default_interval(duration_s: float) -> float:
    """About 100 frames per video, 1-10 s apart, on a half-second grid."""
    return round(min(max(duration_s / 100, 1.0), 10.0) * 2) / 2


def trickplay(
    source: Path,
    probed: Probe,
    out_dir: Path,
    timeout_s: float,
    tile_width: int = 160,
    columns: int = 10,
    rows: int = 10,
    interval_s: float | None = None,
) -> Trickplay:
    """Sheets of a frame per interval (`sprite_000.jpg`...) and `trickplay.vtt` mapping time to tile."""
    interval = interval_s or default_interval(probed.duration_s)
    tile_width = even(tile_width)
    tile_height = even(tile_width * probed.height / probed.width)
    frame_count = math.ceil(round(probed.duration_s / interval, 6))
    per_sheet = columns * rows
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("sprite_*.jpg"):
        stale.unlink()
    rate = Fraction(interval).limit_denominator(1000)
    # round=up: tile i shows the frame on screen at i*interval, and the count is ceil(duration/interval)
    output = (
        safe_input(source, probed.demuxer)
        .video.filter("fps", fps=f"{rate.denominator}/{rate.numerator}", round="up")
        .filter("scale", tile_width, tile_height)
        .filter("tile", f"{columns}x{rows}")
        .output(str(out_dir / "sprite_%03d.jpg"), start_number=0, **{"q:v": SPRITE_QUALITY})
    )
    tools.run_graph(output, timeout_s, overwrite=True)
    sheets = sorted(out_dir.glob("sprite_*.jpg"), key=lambda p: int(p.stem.removeprefix("sprite_")))
    expected = math.ceil(frame_count / per_sheet)
    if len(sheets) < expected:
        raise tools.FFmpegFailed(f"ffmpeg made {len(sheets)} sprite sheets, {expected} expected")
    for extra in sheets[expected:]:
        extra.unlink()
    sheets = sheets[:expected]
    cues = ["WEBVTT", ""]
    for i in range(frame_count):
        start, end = i * interval, min((i + 1) * interval, probed.duration_s)
        sheet, slot = divmod(i, per_sheet)
        x, y = (slot % columns) * tile_width, (slot // columns) * tile_height
        cues += [
            f"{timestamp(start)} --> {timestamp(end)}",
            f"{sheets[sheet].name}#xywh={x},{y},{tile_width},{tile_height}",
            "",
        ]
    vtt = out_dir / "trickplay.vtt"
    vtt.write_text("\n".join(cues))
    return Trickplay(vtt, sheets, interval, tile_width, tile_height, columns, rows, frame_count)
