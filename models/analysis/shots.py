"""Shot boundaries with PySceneDetect's content detector (TransNetV2 joins behind the same
function signature in the analysis issue)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Shot:
    shot_idx: int
    start_s: float
    end_s: float


def detect_shots(source: Path, duration_s: float, threshold: float = 27.0) -> list[Shot]:
    """Shots covering the whole running time; a clip with no cut is one shot."""
    from scenedetect import ContentDetector, detect

    scenes = detect(str(source), ContentDetector(threshold=threshold))
    if not scenes:
        return [Shot(0, 0.0, round(duration_s, 3))]
    return [
        Shot(i, round(start.get_seconds(), 3), round(end.get_seconds(), 3))
        for i, (start, end) in enumerate(scenes)
    ]
