"""Score an encode against its source: VMAF where we have an FFmpeg with libvmaf, else PSNR.

Debian's FFmpeg has no libvmaf, so VMAF runs on the static build that imageio-ffmpeg ships; when
that is missing (or STREAMLAKE_QUALITY_METRIC=psnr) we fall back to PSNR on the system FFmpeg.
Both inputs are untrusted, so each is opened with its demuxer forced and only the file protocol.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models.media import tools
from models.media.probe import safe_input_args

METRIC_ENV = "STREAMLAKE_QUALITY_METRIC"
PSNR_CAP_DB = 100.0  # identical frames give infinite PSNR; a finite cap keeps averages and tables sane
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./-]+")  # log paths go inside a filtergraph: no escaping games


@dataclass(frozen=True)
class QualityScore:
    metric: str  # "vmaf" or "psnr"
    value: float


@functools.cache
def vmaf_ffmpeg() -> str | None:
    """The bundled static FFmpeg when it has the libvmaf filter; None when there is no such binary."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
        listing = subprocess.run(
            [exe, "-hide_banner", "-filters"], capture_output=True, timeout=30, check=False
        ).stdout.decode("utf-8", "replace")
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return None
    return exe if re.search(r"^\s*\S+\s+libvmaf\s", listing, re.MULTILINE) else None


def chosen_metric() -> str:
    """VMAF when available, unless STREAMLAKE_QUALITY_METRIC=psnr forces the fallback (tests, speed)."""
    if os.environ.get(METRIC_ENV, "").strip().lower() == "psnr" or vmaf_ffmpeg() is None:
        return "psnr"
    return "vmaf"


def _prepare(label: str, size: tuple[int, int]) -> str:
    # same size, pixel format, time base and zero start, so frame n meets frame n
    width, height = size
    return f"scale={width}:{height}:flags=bicubic,format=yuv420p,settb=AVTB,setpts=PTS-STARTPTS[{label}]"


def score(
    distorted: Path,
    distorted_demuxer: str,
    reference: Path,
    reference_demuxer: str,
    size: tuple[int, int],
    timeout_s: float,
    *,
    start_s: float | None = None,
    duration_s: float | None = None,
    subsample: int = 1,
    metric: str | None = None,
) -> QualityScore:
    """Mean quality of `distorted` against `reference`, both scaled to `size` (the display size we judge at).

    start_s/duration_s cut a window from the reference only: the distorted file is taken to be that window
    already (an encode of it), starting at its own first frame. `distorted` may be a fragmented MP4 (init
    segment + .m4s segments concatenated) read with the "mov" demuxer. `metric` defaults to chosen_metric();
    subsample scores every n-th frame (VMAF only). FFmpeg errors propagate as tools.FFmpegFailed.
    """
    metric = metric or chosen_metric()
    with tempfile.TemporaryDirectory(prefix="streamlake-quality-") as scratch:
        log = Path(scratch) / f"{metric}.log"
        if not _SAFE_PATH.fullmatch(str(log)):
            raise ValueError(f"temp dir {scratch!r} has characters a filtergraph would need escaped")
        if metric == "vmaf":
            exe = vmaf_ffmpeg()
            if exe is None:
                raise tools.ToolMissing("no FFmpeg with libvmaf: pip install imageio-ffmpeg, or use psnr")
            compare = f"libvmaf=n_subsample={subsample}:n_threads=2:log_fmt=json:log_path={log}:shortest=1"
        elif metric == "psnr":
            exe = tools.require("ffmpeg")
            compare = f"psnr=stats_file={log}:shortest=1"
        else:
            raise ValueError(f"unknown quality metric {metric!r} (vmaf or psnr)")
        graph = f"[0:v]{_prepare('dist', size)};[1:v]{_prepare('ref', size)};[dist][ref]{compare}"
        args = [
            exe, "-v", "error", "-nostdin",
            *safe_input_args(distorted, distorted_demuxer),
            *safe_input_args(reference, reference_demuxer, start_s=start_s, duration_s=duration_s),
            "-filter_complex", graph,
            "-f", "null", "-",
        ]  # fmt: skip
        tools.run(args, timeout_s)
        text = log.read_text() if log.exists() else ""
    value = _vmaf_mean(text) if metric == "vmaf" else _psnr_mean(text.splitlines())
    return QualityScore(metric=metric, value=round(value, 3))


def _vmaf_mean(log_json: str) -> float:
    try:
        return float(json.loads(log_json)["pooled_metrics"]["vmaf"]["mean"])
    except (ValueError, KeyError, TypeError) as err:
        raise tools.FFmpegFailed("libvmaf wrote no pooled score: no frames were compared") from err


def _psnr_mean(lines: Sequence[str]) -> float:
    """PSNR of the mean MSE over frames (how FFmpeg reports its average), capped at PSNR_CAP_DB."""
    mses = [float(m.group(1)) for line in lines if (m := re.search(r"\bmse_avg:([0-9.eE+-]+|inf|nan)", line))]
    if not mses:
        raise tools.FFmpegFailed("psnr wrote no frame stats: no frames were compared")
    mse = sum(mses) / len(mses)
    return PSNR_CAP_DB if mse <= 0 else min(PSNR_CAP_DB, 10 * math.log10(255.0**2 / mse))
