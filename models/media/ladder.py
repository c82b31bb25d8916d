"""The ABR ladder as data: which rungs exist, in which codecs, at what bitrates.

The default follows common streaming practice (Apple's HLS authoring guidance for H.264, about
35% less for HEVC and 50% less for AV1 at equal quality). A YAML file with the same fields
replaces it (`STREAMLAKE_LADDER_FILE`). `plan` fits the ladder to one source: it never
upscales, keeps the aspect ratio with even dimensions, and halves the frame rate of rungs that
cap it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from models.media.probe import Probe

Codec = Literal["h264", "hevc", "av1", "vp9"]


class RungConfig(BaseModel):
    """One rung: a height and a target bitrate per codec (a codec absent here skips the rung)."""

    name: str
    height: int = Field(gt=0, description="Output height in pixels; width follows the source aspect.")
    bitrates_kbps: dict[Codec, int] = Field(description="Target video bitrate per codec, kbit/s.")
    max_fps: float = Field(60.0, gt=0, description="Above this the frame rate is halved (repeatedly).")


class LadderConfig(BaseModel):
    """The ladder, the codecs switched on, and how the encoder is held to its target bitrate."""

    rungs: list[RungConfig]
    codecs: list[Codec] = Field(
        ["h264", "hevc", "av1"], description="Codecs to encode; VP9 is available by adding 'vp9'."
    )
    segment_s: float = Field(4.0, gt=0, description="Target segment (and GOP) duration in seconds.")
    maxrate_factor: float = Field(1.1, ge=1.0, description="VBV peak rate as a multiple of the target.")
    bufsize_factor: float = Field(2.0, gt=0, description="VBV buffer as a multiple of the target.")
    audio_kbps: int = Field(128, gt=0, description="AAC stereo bitrate.")
    loudness_lufs: float = Field(-16.0, description="Integrated loudness target (EBU R128).")
    true_peak_db: float = Field(-1.5, description="Normalisation never pushes true peak above this.")

    @model_validator(mode="after")
    def _rungs_sorted_and_unique(self) -> LadderConfig:
        heights = [r.height for r in self.rungs]
        if heights != sorted(set(heights)):
            raise ValueError(f"rungs must have distinct heights in ascending order, got {heights}")
        return self

    @classmethod
    def from_yaml(cls, path: Path) -> LadderConfig:
        return cls.model_validate(yaml.safe_load(path.read_text()))


def _rung(name: str, height: int, max_fps: float, **kbps: int) -> RungConfig:
    return RungConfig(name=name, height=height, max_fps=max_fps, bitrates_kbps=kbps)


DEFAULT_LADDER = LadderConfig(
    rungs=[
        _rung("240p", 240, 30, h264=400, vp9=280),
        _rung("360p", 360, 30, h264=800, vp9=550),
        _rung("480p", 480, 30, h264=1400, vp9=950),
        _rung("720p", 720, 60, h264=2800, hevc=1800, av1=1400, vp9=1800),
        _rung("1080p", 1080, 60, h264=5000, hevc=3400, av1=2700, vp9=3400),
        _rung("2160p", 2160, 60, h264=16000, hevc=10000, av1=8000, vp9=10000),
    ]
)


@dataclass(frozen=True)
class RungPlan:
    """One video rendition to encode for one source."""

    rung: str
    codec: Codec
    width: int
    height: int
    fps: float
    bitrate_kbps: int
    maxrate_kbps: int
    bufsize_kbps: int

    @property
    def name(self) -> str:
        return f"{self.codec}_{self.rung}"


def even(value: float) -> int:
    """The nearest even size, at least 2: 4:2:0 chroma needs even dimensions."""
    return max(2, round(value / 2) * 2)


def output_size(probed: Probe, height: int) -> tuple[int, int]:
    """Never upscale: a target taller than the source is made at the source height."""
    fitted = even(min(height, probed.height))
    return even(probed.width * fitted / probed.height), fitted


def rung_fps(source_fps: float, max_fps: float) -> float:
    """The source rate, halved until it fits under the rung's cap (keeps frames evenly spaced)."""
    fps = source_fps
    while fps > max_fps:
        fps /= 2
    return round(fps, 3)


def plan(probed: Probe, ladder: LadderConfig = DEFAULT_LADDER) -> list[RungPlan]:
    """The rungs this source gets: those no taller than it; the lowest, fitted, for tiny sources."""
    fitting = [r for r in ladder.rungs if r.height <= probed.height] or ladder.rungs[:1]
    plans = []
    for rung in fitting:
        width, height = output_size(probed, rung.height)
        for codec in ladder.codecs:
            kbps = rung.bitrates_kbps.get(codec)
            if kbps is None:
                continue
            plans.append(
                RungPlan(
                    rung=rung.name,
                    codec=codec,
                    width=width,
                    height=height,
                    fps=rung_fps(probed.fps, rung.max_fps),
                    bitrate_kbps=kbps,
                    maxrate_kbps=round(kbps * ladder.maxrate_factor),
                    bufsize_kbps=round(kbps * ladder.bufsize_factor),
                )
            )
    return plans


def load_ladder(path: Path | None) -> LadderConfig:
    """The configured ladder file, or the default ladder."""
    return LadderConfig.from_yaml(path) if path else DEFAULT_LADDER
