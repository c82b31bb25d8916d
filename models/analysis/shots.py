"""Shot boundaries with PySceneDetect's content detector (TransNetV2 joins behind the same
function signature in the analysis issue).

Frames come from our guarded FFmpeg process (forced demuxer, file-only protocol, timeout and
memory cap), never from PySceneDetect's OpenCV backend, which would open the untrusted upload
with libavformat's auto-detection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import numpy as np

from models.media import tools
from models.media.probe import Probe, safe_input

# Long side of the frames the detector sees: PySceneDetect's own downscale target
# (scene_manager.DEFAULT_MIN_WIDTH) first, smaller ones only when a long clip would not fit.
ANALYSIS_SIDES = (256, 128, 64, 32)
FRAME_BUDGET_BYTES = 1024**3  # raw bgr24 frames of one clip held in memory at once
MAX_ANALYSIS_FPS = 60.0  # a hostile probed rate must not make FFmpeg emit millions of frames
FALLBACK_FPS = 25.0


@dataclass(frozen=True)
class Shot:
    shot_idx: int
    start_s: float
    end_s: float


def analysis_size(width: int, height: int, long_side: int = ANALYSIS_SIDES[0]) -> tuple[int, int]:
    """The source scaled so its long side is `long_side` (never upscaled), aspect kept, even."""
    factor = max(1.0, max(width, height) / long_side)
    return max(2, 2 * round(width / factor / 2)), max(2, 2 * round(height / factor / 2))


def analysis_rate(fps: float) -> Fraction:
    """The constant frame rate frames are decoded at: the probed rate, bounded to a sane range."""
    rate = min(fps, MAX_ANALYSIS_FPS) if fps > 0 else FALLBACK_FPS
    return Fraction(rate).limit_denominator(1001)


def decode_frames(
    source: Path, probed: Probe, size: tuple[int, int], rate: Fraction, count: int, timeout_s: float
) -> np.ndarray:
    """At most `count` frames on a constant `rate` grid from 0 s, as bgr24, shape (n, h, w, 3)."""
    width, height = size
    stream = (
        safe_input(source, probed.demuxer, noautorotate=None)
        .video.filter("fps", fps=f"{rate.numerator}/{rate.denominator}")
        .filter("scale", width, height, flags="bilinear")  # SceneManager resizes with INTER_LINEAR
        .output("-", f="rawvideo", pix_fmt="bgr24", **{"frames:v": count})
    )
    raw = tools.run_graph(stream, timeout_s)
    frames = min(len(raw) // (width * height * 3), count)
    return np.frombuffer(raw, dtype=np.uint8, count=frames * width * height * 3).reshape(
        frames, height, width, 3
    )


def detect_shots(source: Path, probed: Probe, timeout_s: float, threshold: float = 27.0) -> list[Shot]:
    """Shots covering the whole running time; a clip with no cut is one shot.

    One guarded FFmpeg run (`safe_input` + `tools.run`, one `timeout_s`) decodes the probed
    running time to bgr24 at PySceneDetect's analysis size on a constant frame-rate grid, and
    PySceneDetect's ContentDetector scores the frames in order.
    Why whole-clip: `tools.run` returns stdout at once, and windows that seek (`-ss`) land on the
    wrong frames in index-less containers (mpegts), so the clip is decoded in one pass whose raw
    frames must fit FRAME_BUDGET_BYTES: a clip too long for that at 256 px is analysed at 128, 64
    or 32 px (on transnetv2's 212 s reel 123 of 124 cuts survive), and one longer still is refused.
    """
    from scenedetect import ContentDetector, FrameTimecode

    rate = analysis_rate(probed.fps)
    count = max(1, math.ceil(probed.duration_s * rate))  # frames on the grid; caps a lying file too
    sizes = [analysis_size(probed.width, probed.height, side) for side in ANALYSIS_SIDES]
    fitting = [(w, h) for w, h in sizes if count * w * h * 3 <= FRAME_BUDGET_BYTES]
    if not fitting:
        raise ValueError(
            f"too long for shot detection: {count} frames exceed {FRAME_BUDGET_BYTES >> 20} MiB "
            f"of raw frames even at {ANALYSIS_SIDES[-1]} px"
        )
    size = fitting[0]
    frames = decode_frames(source, probed, size, rate, count, timeout_s)

    detector = ContentDetector(threshold=threshold)
    cuts: list[FrameTimecode] = []
    position = FrameTimecode(0, fps=rate)
    for index, frame in enumerate(frames):
        position = FrameTimecode(index, fps=rate)
        cuts += detector.process_frame(position, frame)
    cuts += detector.post_process(position)

    duration = round(probed.duration_s, 3)
    bounds = [0.0]
    for cut in sorted(set(cuts)):
        at = round(cut.seconds, 3)
        if bounds[-1] < at < duration:
            bounds.append(at)
    bounds.append(duration)
    return [Shot(i, start, end) for i, (start, end) in enumerate(pairwise(bounds))]
