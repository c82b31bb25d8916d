"""Per-title ladder: spend only the bits this title needs for the quality the fixed ladder gives.

We encode a few sample windows at each rung resolution over a sweep of CRFs, measure (bitrate,
quality) per point, and take the convex hull. Each fixed rung keeps its resolution but gets the
smallest bitrate that reaches the quality the fixed bitrate would have given (capped by a ceiling
where more bits are invisible), so easy titles save bits and hard ones never get more than before.
The geometry (hull, interpolation, choice) is pure so it can be tested without FFmpeg.
"""

from __future__ import annotations

import itertools
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from models.media import quality, tools
from models.media.ladder import RungPlan
from models.media.probe import Probe, safe_input_args

log = logging.getLogger("streamlake.per_title")

QUALITY_CEILING = {"vmaf": 95.0, "psnr": 45.0}  # above these, viewers see no difference


@dataclass(frozen=True)
class FixedRung:
    name: str
    width: int
    height: int
    bitrate_kbps: int


@dataclass(frozen=True)
class RDPoint:
    width: int
    height: int
    crf: int
    kbps: float
    quality: float


@dataclass(frozen=True)
class ChosenRung:
    name: str
    width: int
    height: int
    fixed_kbps: int
    chosen_kbps: int
    target_quality: float
    hull_height: int  # the resolution the hull would use for this quality (information only)
    hull_kbps: float


@dataclass(frozen=True)
class PerTitleLadder:
    metric: str
    points: list[RDPoint]
    hull: list[RDPoint]
    rungs: list[ChosenRung]
    bits_saved: float  # 1 - sum(chosen)/sum(fixed), at equal quality

    def to_rows(self, media_id: str) -> list[dict[str, Any]]:
        """Plain rows for the per-title Delta table."""
        return [
            {
                "media_id": media_id,
                "rung": r.name,
                "width": r.width,
                "height": r.height,
                "fixed_kbps": r.fixed_kbps,
                "chosen_kbps": r.chosen_kbps,
                "target_quality": r.target_quality,
                "metric": self.metric,
                "hull_height": r.hull_height,
            }
            for r in self.rungs
        ]

    def summary_markdown(self) -> str:
        """A small table for the UI."""
        lines = [
            f"| rung | size | fixed kbps | chosen kbps | {self.metric} | hull |",
            "|---|---|---:|---:|---:|---|",
            *(
                f"| {r.name} | {r.width}x{r.height} | {r.fixed_kbps} | {r.chosen_kbps} | "
                f"{r.target_quality:.1f} | {r.hull_height}p @ {r.hull_kbps:.0f} |"
                for r in self.rungs
            ),
        ]
        return "\n".join(lines) + f"\n\nBits saved at equal quality: {self.bits_saved:.1%}"


# ---- pure geometry ---------------------------------------------------------------------------


def sample_windows(duration_s: float, samples: int, sample_s: float) -> list[tuple[float, float]]:
    """(start, length) windows centred at (i+1)/(samples+1) of the title; one when it is too short."""
    if duration_s < samples * sample_s:
        length = min(sample_s, duration_s)
        return [(round(max(0.0, (duration_s - length) / 2), 3), round(length, 3))]
    centres = [duration_s * (i + 1) / (samples + 1) for i in range(samples)]
    return [(round(min(max(0.0, c - sample_s / 2), duration_s - sample_s), 3), sample_s) for c in centres]


def convex_hull(points: Sequence[RDPoint]) -> list[RDPoint]:
    """Upper-left hull in (kbps, quality): drop dominated points, then a monotone-chain upper hull."""
    frontier: list[RDPoint] = []
    for p in sorted(points, key=lambda p: (p.kbps, -p.quality)):
        if not frontier or p.quality > frontier[-1].quality:  # else more bits for no more quality
            frontier.append(p)
    hull: list[RDPoint] = []
    for p in frontier:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:  # hull[-1] lies on or under the chord
            hull.pop()
        hull.append(p)
    return hull


def _cross(o: RDPoint, a: RDPoint, b: RDPoint) -> float:
    return (a.kbps - o.kbps) * (b.quality - o.quality) - (a.quality - o.quality) * (b.kbps - o.kbps)


def quality_at(curve: Sequence[tuple[float, float]], kbps: float) -> float:
    """Quality at a bitrate on a (kbps, quality) curve, linear between points, clamped to its ends."""
    pts = sorted(curve)
    if kbps <= pts[0][0]:
        return pts[0][1]
    for (k0, q0), (k1, q1) in itertools.pairwise(pts):
        if kbps <= k1:
            return q0 + (q1 - q0) * (kbps - k0) / (k1 - k0) if k1 > k0 else q1
    return pts[-1][1]


def kbps_for(curve: Sequence[tuple[float, float]], target: float) -> float:
    """Smallest bitrate on the curve reaching `target` (linear between points); its top when never reached."""
    pts = sorted(curve)
    if pts[0][1] >= target:
        return pts[0][0]
    for (k0, q0), (k1, q1) in itertools.pairwise(pts):
        if q1 >= target:
            return k0 + (k1 - k0) * (target - q0) / (q1 - q0)
    return pts[-1][0]


def choose(rung: FixedRung, points: Sequence[RDPoint], hull: Sequence[RDPoint], ceiling: float) -> ChosenRung:
    """The rung at its own resolution, at the fewest bits that match the fixed rung's quality (or ceiling)."""
    own = [(p.kbps, p.quality) for p in points if (p.width, p.height) == (rung.width, rung.height)]
    if not own:
        raise ValueError(f"no RD points measured at {rung.width}x{rung.height} for rung {rung.name}")
    target = min(quality_at(own, rung.bitrate_kbps), ceiling)
    chosen = min(rung.bitrate_kbps, math.ceil(kbps_for(own, target)))
    on_hull = next((p for p in hull if p.quality >= target), hull[-1])
    return ChosenRung(
        name=rung.name,
        width=rung.width,
        height=rung.height,
        fixed_kbps=rung.bitrate_kbps,
        chosen_kbps=chosen,
        target_quality=round(target, 3),
        hull_height=on_hull.height,
        hull_kbps=round(kbps_for([(p.kbps, p.quality) for p in hull], target), 1),
    )


def bits_saved(rungs: Sequence[ChosenRung]) -> float:
    """Fraction of the fixed ladder's bits the chosen ladder does without."""
    fixed = sum(r.fixed_kbps for r in rungs)
    return round(1 - sum(r.chosen_kbps for r in rungs) / fixed, 4) if fixed else 0.0


# ---- measuring -------------------------------------------------------------------------------


def _encode_window(
    source: Path, probed: Probe, window: tuple[float, float], size: tuple[int, int], crf: int, out: Path,
    timeout_s: float,
) -> None:  # fmt: skip
    start, length = window
    args = [
        tools.require("ffmpeg"), "-v", "error", "-nostdin", "-y",
        *safe_input_args(source, probed.demuxer, start_s=start, duration_s=length),
        "-map", "0:v:0", "-an", "-sn", "-dn",
        "-vf", f"scale={size[0]}:{size[1]}:flags=bicubic,format=yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
        "-f", "mp4", str(out),
    ]  # fmt: skip
    tools.run(args, timeout_s)


def per_title_ladder(
    source: Path,
    probed: Probe,
    ladder: Sequence[FixedRung],
    timeout_s: float,
    *,
    crf_points: Sequence[int] = (20, 26, 32, 38),
    samples: int = 3,
    sample_s: float = 2.0,
    quality_ceiling: float | None = None,
) -> PerTitleLadder:
    """Measure this title's RD curves per rung resolution and re-price the fixed ladder on them.

    Quality is judged at the largest rung's size (what the top display shows); timeout_s bounds each
    FFmpeg run.
    """
    metric = quality.chosen_metric()
    ceiling = QUALITY_CEILING[metric] if quality_ceiling is None else quality_ceiling
    windows = sample_windows(probed.duration_s, samples, sample_s)
    top = max(((r.width, r.height) for r in ladder), key=lambda s: s[0] * s[1])
    points: list[RDPoint] = []
    with tempfile.TemporaryDirectory(prefix="streamlake-per-title-") as scratch:
        for width, height in sorted({(r.width, r.height) for r in ladder}, key=lambda s: s[0] * s[1]):
            for crf in crf_points:
                rates, scores = [], []
                for i, window in enumerate(windows):
                    out = Path(scratch) / f"{width}x{height}-crf{crf}-{i}.mp4"
                    _encode_window(source, probed, window, (width, height), crf, out, timeout_s)
                    rates.append(out.stat().st_size * 8 / 1000 / window[1])
                    scores.append(
                        quality.score(
                            out, "mov", source, probed.demuxer, top, timeout_s,
                            start_s=window[0], duration_s=window[1], metric=metric,
                        ).value
                    )  # fmt: skip
                    out.unlink()
                kbps, score = round(sum(rates) / len(rates), 1), round(sum(scores) / len(scores), 3)
                points.append(RDPoint(width, height, crf, kbps, score))
            own = points[-len(crf_points) :]
            curve = ", ".join(f"crf{p.crf}={p.kbps:.0f}kbps/{p.quality:.1f}" for p in own)
            log.info("per-title %dx%d (%s, %d windows): %s", width, height, metric, len(windows), curve)
    hull = convex_hull(points)
    rungs = [choose(rung, points, hull, ceiling) for rung in ladder]
    return PerTitleLadder(metric=metric, points=points, hull=hull, rungs=rungs, bits_saved=bits_saved(rungs))


def fixed_rungs(plans: Sequence[RungPlan]) -> list[FixedRung]:
    """The fixed ladder as the sweep sees it: one entry per rung, priced by its H.264 bitrate."""
    return [FixedRung(p.rung, p.width, p.height, p.bitrate_kbps) for p in plans if p.codec == "h264"]


def refit(plans: Sequence[RungPlan], fitted: PerTitleLadder) -> list[RungPlan]:
    """Every codec's rendition of a rung scaled by the rung's chosen/fixed ratio (VBV kept proportional)."""
    ratio = {r.name: r.chosen_kbps / r.fixed_kbps for r in fitted.rungs if r.fixed_kbps}
    return [
        replace(
            p,
            bitrate_kbps=max(1, round(p.bitrate_kbps * ratio.get(p.rung, 1.0))),
            maxrate_kbps=max(1, round(p.maxrate_kbps * ratio.get(p.rung, 1.0))),
            bufsize_kbps=max(1, round(p.bufsize_kbps * ratio.get(p.rung, 1.0))),
        )
        for p in plans
    ]
