"""Labels for browsing, recommendation features and review queues, from signals we already have.

Zero-shot text labels compare an item's embedding with one sentence describing each label: a
described label matches paraphrases that a keyword list would miss, and a new label is a new
sentence, not a training run. Audio labels are measurements (loudness, share of silence).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from models.analysis.text_embeddings import embed_texts
from models.media import loudness, tools
from models.media.probe import Probe, safe_input_args

Embed = Callable[[Sequence[str]], np.ndarray]

LABEL_SETS: dict[str, dict[str, str]] = {
    "genre": {
        "animation": "an animated cartoon with drawn or computer-generated characters and creatures",
        "documentary": "a documentary that explains real places, people, history or nature",
        "news": "a news report about current events, politics and the economy",
        "sports": "a sports match or race with athletes, players, goals and scores",
        "music": "a music video or concert with a band, a singer and songs",
        "education": "a lecture or tutorial that teaches how something works step by step",
        "comedy": "a comedy sketch with jokes, pranks and people laughing",
        "drama": "a dramatic film scene with actors, dialogue, conflict and emotions",
        "horror": "a horror film with monsters, ghosts, screams and fear",
        "gaming": "a video game being played, with gameplay footage and a player commentating",
        "vlog": "a personal vlog where someone talks to the camera about their day",
    },
    "mood": {
        "calm": "calm, peaceful and relaxing, slow and quiet",
        "cheerful": "cheerful, happy and playful, bright and funny",
        "energetic": "energetic and exciting, fast, loud and full of action",
        "tense": "tense and suspenseful, dangerous and worrying",
        "sad": "sad and melancholic, about loss, grief and tears",
        "dark": "dark, scary and disturbing",
        "informative": "neutral and informative, factual and matter-of-fact",
    },
    "moderation": {
        "safe": "an ordinary video about everyday life, people, places, animals, nature, travel, sport, "
        "food, music or learning",
        "violence": "graphic violence with fighting, weapons, shooting, blood and injuries",
        "sexual": "sexual content with nudity and explicit adult scenes",
        "hate": "hateful speech insulting people for their race, religion or origin",
        "drugs": "taking illegal drugs such as cocaine or heroin, getting drunk",
        "self_harm": "self-harm and suicide",
        "profanity": "crude language full of swearing and obscene insults",
    },
}
# Where an item resembles no description of a set, a plain softmax still names a winner (noise).
# So "none of these" competes at this cosine; in a set with a default label (moderation: "safe")
# the default stands for it: no harm even faintly described means safe.
MIN_COSINE = 0.15
DEFAULT_LABELS = {"moderation": "safe"}
TEMPERATURE = 0.05  # MiniLM was trained with a softmax scale of 20 (= 1 / 0.05) over cosines
MIN_SCORE = 0.3  # besides the top label of a set, others this probable are kept too
SILENCE_NOISE_DB = -50.0
SILENCE_MIN_S = 0.5


@dataclass(frozen=True)
class Label:
    kind: str
    label: str
    score: float
    source: str


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


@lru_cache(maxsize=4)
def _described(embed: Embed) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each set's label names and unit description vectors, embedded once per embedder (so pass the
    same callable each time, e.g. one functools.partial(embed_texts, model_path=...) per process)."""
    return {kind: (list(labels), _unit(embed(list(labels.values())))) for kind, labels in LABEL_SETS.items()}


def zero_shot(
    item_embedding: np.ndarray,
    embed: Embed = embed_texts,
    temperature: float = TEMPERATURE,
    min_score: float = MIN_SCORE,
    min_cosine: float = MIN_COSINE,
) -> list[Label]:
    """Per label set, the most probable label and any other at least `min_score` probable.

    Scores are a softmax of cosine / `temperature` over the set plus "none of these" at
    `min_cosine` (or the set's default label raised to it), so an item unlike every description
    gets no label, or the default; a runner-up below `min_cosine` is never given either. Scores
    rank labels within a set; they are not calibrated probabilities.
    """
    item = _unit(np.reshape(item_embedding, -1))
    out = []
    for kind, (names, vectors) in _described(embed).items():
        cosines = vectors @ item
        if kind in DEFAULT_LABELS:
            at = names.index(DEFAULT_LABELS[kind])
            cosines[at] = max(cosines[at], min_cosine)
        else:
            cosines = np.append(cosines, min_cosine)  # "none of these", never emitted
        probs = np.exp((cosines - cosines.max()) / temperature)
        probs /= probs.sum()
        order = [int(k) for k in np.argsort(-probs, kind="stable")]
        if order[0] == len(names):
            continue
        out += [
            Label(kind, names[k], round(float(probs[k]), 4), "text-zero-shot")
            for k in order
            if k < len(names) and (k == order[0] or (probs[k] >= min_score and cosines[k] >= min_cosine))
        ]
    return out


def silences(log: str, duration_s: float) -> list[tuple[float, float]]:
    """(start, end) of silencedetect's silences, clipped to the running time; one still open at the
    end of the stream (no silence_end) runs to `duration_s`."""
    found, start = [], None
    for kind, value in re.findall(r"silence_(start|end): (-?[0-9.]+)", log):
        if kind == "start":
            start = float(value)
        elif start is not None:
            found.append((start, float(value)))
            start = None
    if start is not None:
        found.append((start, duration_s))
    return [(max(0.0, a), min(b, duration_s)) for a, b in found if min(b, duration_s) > max(0.0, a)]


def silence_ratio(source: Path, probed: Probe, timeout_s: float) -> float:
    """Share of the running time below SILENCE_NOISE_DB for at least SILENCE_MIN_S."""
    args = [
        tools.require("ffmpeg"), "-hide_banner", "-nostats", "-nostdin", "-v", "info",
        *safe_input_args(source, probed.demuxer),
        "-map", "0:a:0", "-af", f"silencedetect=noise={SILENCE_NOISE_DB}dB:d={SILENCE_MIN_S}",
        "-f", "null", "-",
    ]  # fmt: skip
    found = silences(tools.run_for_log(args, timeout_s), probed.duration_s)
    return min(1.0, sum(b - a for a, b in found) / probed.duration_s) if probed.duration_s > 0 else 0.0


def audio_stats(source: Path, probed: Probe, timeout_s: float) -> list[Label]:
    """Integrated loudness (LUFS, floored at R128's -70 gate so silence is a number, not -inf) and
    silence ratio of the first audio stream; nothing for a file without audio."""
    if not probed.audio_codec:
        return []
    measured = loudness.measure(source, probed.demuxer, timeout_s)
    lufs = max(measured.integrated_lufs, loudness.SILENCE_LUFS)
    return [
        Label("audio", "loudness_lufs", round(lufs, 2), "audio"),
        Label("audio", "silence_ratio", round(silence_ratio(source, probed, timeout_s), 4), "audio"),
    ]
