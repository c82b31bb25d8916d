"""A generated, labelled shot-boundary test set: lavfi segments joined at frame numbers we chose.

Real footage with hand labels cannot ship in git and is never exact to the frame; synthetic
segments joined by FFmpeg are, so precision, recall and F1 of a detector are measured against a
truth we constructed. Each segment is a different moving lavfi source (or the same one with other
colours, seeds or positions), so neighbours differ the way two shots do and nothing inside a
segment jumps the way a cut does. Clips are built deterministically (seeded sources, bit-exact
single-threaded x264) into a folder the caller names, in seconds, and are never committed.

Frame numbers are 0-based on the clip's constant 25 fps grid. A hard cut is labelled with the
first frame of the new shot; a gradual transition with its span, first to last mixed frame.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from models.media import tools
from models.media.samples import BITEXACT, H264

FPS = 25
SIZE = (320, 180)
DISSOLVE_FRAMES = 12  # ~0.5 s, a typical edit-suite cross-dissolve
FADE_FRAMES = 8  # each of fade-out and fade-in
BLACK_FRAMES = 4  # held black between a fade-out and the next fade-in
BUILD_TIMEOUT_S = 300.0
SOURCE_COUNT = 9
# gradients' colours default to an unseeded random pick, so they are spelled out
GRADIENT_COLOURS = ("c0=#e05020:c1=#2040c0:c2=#f0e0a0", "c0=#30a060:c1=#d0d040:c2=#602080")
WARM_UP_FRAMES = 10  # source frames skipped before a segment starts
TOLERANCE = 2  # frames either side a prediction may miss a transition by and still count


@dataclass(frozen=True)
class Transition:
    kind: str  # "cut", "dissolve" or "fade" (through black)
    start: int  # first frame of the transition; for a cut, the first frame of the new shot
    end: int  # last frame of the transition; equal to start for a cut

    @property
    def centre(self) -> int:
        return (self.start + self.end + 1) // 2


@dataclass(frozen=True)
class LabelledClip:
    path: Path
    frames: int
    fps: int
    transitions: tuple[Transition, ...]

    @property
    def spans(self) -> list[tuple[int, int]]:
        return [(t.start, t.end) for t in self.transitions]


def _source(position: int) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """The lavfi source of segment `position` as (source spec, filters to apply).

    Sources are cycled, so neighbours never share one; each round of the cycle shifts colours,
    seeds and positions, so repeats differ too.
    Every source moves (its own animation, a scroll, or temporal noise) so a segment looks like a
    shot rather than a still, and sources whose own look is close to black are lifted so that a
    dark frame only ever means a fade.
    """
    variant = position // SOURCE_COUNT
    w, h = SIZE
    size = f"size={w}x{h}:rate={FPS}"
    seed = 1000 + 17 * variant
    noise = ("noise", {"alls": 12, "allf": "t", "all_seed": seed})
    sources: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = [
        (f"testsrc2={size}", [("hue", {"h": 70 * variant})]),
        (
            f"mandelbrot={size}:maxiter=200:start_scale={3 / (1 + variant % 4):.3f}"
            f":start_x={-0.743644 + 0.01 * variant:.6f}",
            [("lutyuv", {"y": "val*0.8+40"})],
        ),
        (f"smptebars={size}", [("scroll", {"h": 0.004 * (1 + variant % 3)}), noise]),
        (
            f"life={size}:random_seed={seed}:mold=12:life_color=#f0d040:death_color=#304878",
            [("lutyuv", {"y": "val*0.6+70"}), ("hue", {"h": 50 * variant})],
        ),
        (f"gradients={size}:seed={seed}:speed=0.03:nb_colors=3:{GRADIENT_COLOURS[variant % 2]}", [noise]),
        (
            f"cellauto={size}:rule={(30, 90, 110, 150)[variant % 4]}:random_seed={seed}",
            [("lutrgb", {"r": "val*0.5+60", "g": "val*0.7+40", "b": "200-val*0.5"})],
        ),
        (
            f"color=c={('#a04030', '#2f7fa0', '#6fa040', '#c0a060')[variant % 4]}:{size}",
            [("noise", {"alls": 40, "allf": "t+u", "all_seed": seed}), ("scroll", {"v": 0.01})],
        ),
        (f"pal100bars={size}", [("rotate", {"a": f"{0.1 + 0.05 * variant}*t", "c": "#406080"}), noise]),
        (f"testsrc={size}", [("hflip", {}), ("scroll", {"h": -0.003}), ("hue", {"h": 90 + 40 * variant})]),
    ]
    assert len(sources) == SOURCE_COUNT
    return sources[position % SOURCE_COUNT]


def _segment(position: int, frames: int) -> Any:
    """Segment `position` of a clip: exactly `frames` frames, yuv420p, square pixels, t from 0."""
    spec, filters = _source(position)
    # Trimmed first: ffmpeg-python merges equal nodes, and repeats of a source differ in their
    # start (the warm-up grows each round), not always in their filters.
    warm_up = WARM_UP_FRAMES + 7 * (position // SOURCE_COUNT)  # life's random start settles too
    stream = ffmpeg.input(spec, f="lavfi").video.filter(
        "trim", start_frame=warm_up, end_frame=warm_up + frames
    )
    for name, options in filters:
        stream = stream.filter(name, **options)
    return stream.filter("setpts", "PTS-STARTPTS").filter("format", "yuv420p").filter("setsar", "1")


def _encode(stream: Any, out: Path, total: int) -> None:
    options = {key.lstrip("-"): value for key, value in zip(H264[::2], H264[1::2], strict=True)}
    options |= {key.lstrip("-"): value for key, value in zip(BITEXACT[::2], BITEXACT[1::2], strict=True)}
    out.parent.mkdir(parents=True, exist_ok=True)
    node = stream.output(str(out), r=FPS, **{"frames:v": total}, **options)
    tools.run_graph(node, BUILD_TIMEOUT_S, overwrite=True)


def _lengths(count: int, low: int, high: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(count)]


def _write_truth(clip: LabelledClip) -> LabelledClip:
    truth = {"frames": clip.frames, "fps": clip.fps, "transitions": [asdict(t) for t in clip.transitions]}
    clip.path.with_suffix(".json").write_text(json.dumps(truth, indent=1) + "\n")
    return clip


def build_hard_cuts(folder: Path, cuts: int = 10, seed: int = 7, name: str = "hard_cuts") -> LabelledClip:
    """`cuts + 1` segments of 24-70 frames back to back: a cut where each segment starts."""
    lengths = _lengths(cuts + 1, 24, 70, seed)
    segments = [_segment(i, n) for i, n in enumerate(lengths)]
    starts = [sum(lengths[:i]) for i in range(1, len(lengths))]
    total = sum(lengths)
    path = folder / f"{name}.mp4"
    _encode(ffmpeg.concat(*segments, v=1, a=0), path, total)
    return _write_truth(LabelledClip(path, total, FPS, tuple(Transition("cut", s, s) for s in starts)))


def build_gradual(
    folder: Path, dissolves: int = 4, fades: int = 2, seed: int = 11, name: str = "gradual"
) -> LabelledClip:
    """Segments of 45-80 frames joined by cross-dissolves (xfade fade/dissolve, DISSOLVE_FRAMES)
    and fades through black (FADE_FRAMES out, BLACK_FRAMES black, FADE_FRAMES in), interleaved.

    A dissolve's span runs from the last frame that is still pure shot A to the first that is
    pure shot B (xfade's offset to offset + duration); a fade's from the first frame of the
    fade-out to the last of the fade-in.
    """
    joins = dissolves + fades
    fade_at = {round((k + 0.5) * joins / fades) for k in range(fades)}  # spread among the dissolves
    kinds = ["fade" if i in fade_at else "dissolve" for i in range(joins)]
    lengths = _lengths(len(kinds) + 1, 45, 80, seed)
    black = (
        ffmpeg.input(f"color=c=black:size={SIZE[0]}x{SIZE[1]}:rate={FPS}", f="lavfi")
        .video.filter("trim", end_frame=BLACK_FRAMES)
        .filter("format", "yuv420p")
        .filter("setsar", "1")
    )
    gaps = iter(black.filter_multi_output("split", fades) if fades else [])  # a graph node is used once
    chain = None
    total = 0
    transitions = []
    for i, length in enumerate(lengths):
        segment = _segment(i, length)
        if i > 0 and kinds[i - 1] == "fade":
            segment = segment.filter("fade", type="in", start_frame=0, nb_frames=FADE_FRAMES)
        if i < len(kinds) and kinds[i] == "fade":
            segment = segment.filter(
                "fade", type="out", start_frame=length - FADE_FRAMES, nb_frames=FADE_FRAMES
            )
        if chain is None:
            chain, total = segment, length
        elif kinds[i - 1] == "dissolve":
            offset = total - DISSOLVE_FRAMES
            style = ("fade", "dissolve")[i % 2]
            timing = {"duration": DISSOLVE_FRAMES / FPS, "offset": offset / FPS}
            chain = ffmpeg.filter([chain, segment], "xfade", transition=style, **timing)
            transitions.append(Transition("dissolve", offset, offset + DISSOLVE_FRAMES))
            total += length - DISSOLVE_FRAMES
        else:
            gap = next(gaps)
            last = total + BLACK_FRAMES + FADE_FRAMES - 1
            transitions.append(Transition("fade", total - FADE_FRAMES, last))
            chain = ffmpeg.concat(chain, gap, segment, v=1, a=0).filter("settb", f"1/{FPS}")  # xfade needs it
            total += BLACK_FRAMES + length
    path = folder / f"{name}.mp4"
    _encode(chain, path, total)
    return _write_truth(LabelledClip(path, total, FPS, tuple(transitions)))


def f1(
    predicted_frames: Sequence[int],
    truth_frames: Sequence[int | tuple[int, int]],
    tolerance: int = TOLERANCE,
) -> tuple[float, float, float]:
    """(precision, recall, F1) with one-to-one matching: each truth (a frame, or a (start, end)
    span for a gradual transition) takes at most one prediction within `tolerance` frames of it.

    Greedy in frame order, each prediction to the open truth window that closes first: optimal
    for matching points to intervals, so a detector is never penalised for an unlucky pairing.
    """
    windows = sorted(
        (t - tolerance, t + tolerance) if isinstance(t, int) else (t[0] - tolerance, t[1] + tolerance)
        for t in truth_frames
    )
    taken = [False] * len(windows)
    matched = 0
    for frame in sorted(predicted_frames):
        open_ = [i for i, (lo, hi) in enumerate(windows) if not taken[i] and lo <= frame <= hi]
        if open_:
            taken[min(open_, key=lambda i: windows[i][1])] = True
            matched += 1
    precision = matched / len(predicted_frames) if predicted_frames else float(not truth_frames)
    recall = matched / len(windows) if windows else 1.0
    score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, score
