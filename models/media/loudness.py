"""Loudness: measure a source's programme loudness (EBU R128 with FFmpeg's ebur128 filter) and
the gain that brings it to the platform target without pushing the true peak over its ceiling.

A single linear gain (no compressor) keeps the mix as it was made; quiet titles whose peaks would
clip get less gain and stay a little below target, which is what streaming services do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from models.media import tools
from models.media.probe import safe_input_args

OUTPUT_FORMAT = {"sample_rates": 48000, "channel_layouts": "stereo"}  # what the AAC rendition carries
MEASURE_FILTER = "aformat=sample_rates=48000:channel_layouts=stereo,ebur128=peak=true:framelog=verbose"
SILENCE_LUFS = -70.0  # R128's absolute gate: below it nothing was measured


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_db: float
    range_lu: float


def _value(summary: str, label: str) -> float:
    match = re.search(rf"{label}:\s+(-?inf|-?[0-9.]+)", summary)
    if match is None:
        raise ValueError(f"ebur128 summary without {label}")
    return float(match.group(1))


def measure(source: Path, demuxer: str, timeout_s: float) -> Loudness:
    """Integrated loudness, true peak and loudness range of the first audio stream."""
    args = [
        tools.require("ffmpeg"), "-hide_banner", "-nostats", "-nostdin", "-v", "info",
        *safe_input_args(source, demuxer),
        "-map", "0:a:0", "-af", MEASURE_FILTER, "-f", "null", "-",
    ]  # fmt: skip
    log = tools.run_for_log(args, timeout_s)
    summary = log[log.rfind("Summary:") :]
    return Loudness(
        integrated_lufs=_value(summary, "I"),
        true_peak_db=_value(summary, "Peak"),
        range_lu=_value(summary, "LRA"),
    )


def gain_db(measured: Loudness, target_lufs: float, peak_ceiling_db: float) -> float:
    """The linear gain to the target, limited so the true peak stays under the ceiling."""
    if measured.integrated_lufs <= SILENCE_LUFS:
        return 0.0
    return round(min(target_lufs - measured.integrated_lufs, peak_ceiling_db - measured.true_peak_db), 2)
