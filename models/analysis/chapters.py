"""Chapters: where a video changes subject, and a few words that say what each part is about.

Speech carries the subject, so boundaries come first from the transcript (TextTiling with sentence
embeddings: the text just before and just after each pause between segments is embedded, and a
dip in their cosine similarity marks a topic shift). Cuts are where an editor already decided a
scene ends, so a shift is moved onto a nearby cut; where nobody speaks, cuts are all we have.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from models.analysis.asr import Segment
from models.analysis.shots import Shot
from models.analysis.text_embeddings import STOP_WORDS, embed_texts
from models.media.webvtt import timestamp

Embed = Callable[[Sequence[str]], np.ndarray]

MIN_CHAPTER_S = 30.0  # shorter parts are scenes, not chapters (YouTube's own minimum is 10 s)
WINDOW_S = 30.0  # speech on each side of a pause compared for a topic shift (~75 words)
SHIFT_THRESHOLD = 0.4  # MiniLM cosine of adjacent windows: same subject 0.45+ (dips included), new one ~0.1
SNAP_S = 5.0  # a topic shift this close to a cut moves onto the cut
PAUSE_STRENGTH = 0.25  # a speechless stretch of WINDOW_S starts/ends a chapter, after topic shifts
TITLE_WORDS = 3


@dataclass(frozen=True)
class Chapter:
    idx: int
    start_s: float
    end_s: float
    title: str


def _span(shot: Shot | tuple[float, float]) -> tuple[float, float]:
    return (shot.start_s, shot.end_s) if isinstance(shot, Shot) else (float(shot[0]), float(shot[1]))


def _spoken(segments: Sequence[Segment]) -> list[Segment]:
    return sorted((s for s in segments if s.text.strip()), key=lambda s: (s.start_s, s.end_s))


def topic_shifts(
    segments: Sequence[Segment], embed: Embed, window_s: float, threshold: float
) -> list[tuple[float, float]]:
    """(time, similarity) at pauses where adjacent speech windows are least alike (a local minimum
    of their cosine similarity, and below `threshold`)."""
    spoken = _spoken(segments)
    if len(spoken) < 2:
        return []
    starts = [s.start_s for s in spoken]
    ends = np.maximum.accumulate([s.end_s for s in spoken]).tolist()  # bisectable despite overlaps
    gaps = [(a.end_s + b.start_s) / 2 for a, b in pairwise(spoken)]
    lefts, rights = [], []
    for i, t in enumerate(gaps):  # gap i lies between segment i and segment i + 1
        first = min(bisect.bisect_right(ends, t - window_s), i)
        last = max(bisect.bisect_left(starts, t + window_s), i + 2)
        lefts.append(" ".join(s.text.strip() for s in spoken[first : i + 1]))
        rights.append(" ".join(s.text.strip() for s in spoken[i + 1 : last]))
    unique = list(dict.fromkeys(lefts + rights))
    vectors = np.asarray(embed(unique), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    row = {text: k for k, text in enumerate(unique)}
    sims = [float(vectors[row[a]] @ vectors[row[b]]) for a, b in zip(lefts, rights, strict=True)]
    padded = [math.inf, *sims, math.inf]
    return [
        (gaps[i], sim)
        for i, sim in enumerate(sims)
        if sim < threshold and sim <= padded[i] and sim <= padded[i + 2]
    ]


def _snap(at_s: float, cuts: Sequence[float], snap_s: float) -> float:
    if not cuts:
        return at_s
    nearest = min(cuts, key=lambda cut: abs(cut - at_s))
    return nearest if abs(nearest - at_s) <= snap_s else at_s


def _pause_edges(spoken: Sequence[Segment], duration_s: float, window_s: float) -> list[float]:
    """Where speech stops before, or starts after, at least `window_s` without it."""
    if not spoken:
        return []
    edges = [spoken[0].start_s] if spoken[0].start_s >= window_s else []
    for a, b in pairwise(spoken):
        if b.start_s - a.end_s >= window_s:
            edges += [a.end_s, b.start_s]
    return [*edges, *([spoken[-1].end_s] if duration_s - spoken[-1].end_s >= window_s else [])]


def _silent_cuts(cuts: Sequence[float], spoken: Sequence[Segment], margin_s: float) -> list[float]:
    """Cuts with no speech within `margin_s`: there the picture is the only sign of a new part."""
    return [c for c in cuts if not any(s.start_s < c + margin_s and s.end_s > c - margin_s for s in spoken)]


def _select(candidates: list[tuple[float, float]], duration_s: float, min_chapter_s: float) -> list[float]:
    """Strongest first, each kept only if every chapter stays at least `min_chapter_s` long."""
    kept: list[float] = []
    for at, _ in sorted(candidates, key=lambda c: (-c[1], c[0])):
        if not min_chapter_s <= at <= duration_s - min_chapter_s:
            continue
        k = bisect.bisect_left(kept, at)
        after_previous = k == 0 or at - kept[k - 1] >= min_chapter_s
        if after_previous and (k == len(kept) or kept[k] - at >= min_chapter_s):
            kept.insert(k, at)
    return kept


def _terms(text: str) -> list[str]:
    words = (w.removesuffix("'s") for w in re.findall(r"[a-z][a-z']+", text.lower()))
    return [w for w in words if len(w) >= 3 and "'" not in w and w not in STOP_WORDS]


def keyword_titles(texts: Sequence[str], words: int = TITLE_WORDS) -> list[str]:
    """Per text, its most distinctive words (tf * smoothed idf across the texts), or "" if none."""
    counts = [Counter(_terms(text)) for text in texts]
    df = Counter(term for c in counts for term in c)
    titles = []
    for text, c in zip(texts, counts, strict=True):
        order = {term: k for k, term in enumerate(dict.fromkeys(_terms(text)))}
        score = {t: n * (1 + math.log((1 + len(texts)) / (1 + df[t]))) for t, n in c.items()}
        top = sorted(score, key=lambda t: (-score[t], order[t]))[:words]
        titles.append(", ".join(t.capitalize() for t in top))
    return titles


def _fallback_title(idx: int, start: float, end: float, spans: Sequence[tuple[float, float]]) -> str:
    inside = [k + 1 for k, (a, b) in enumerate(spans) if a < end and b > start]
    if not inside:
        return f"Chapter {idx + 1}"
    return f"Shot {inside[0]}" if len(inside) == 1 else f"Shots {inside[0]}–{inside[-1]}"


def chapters(
    duration_s: float,
    shots: Sequence[Shot | tuple[float, float]],
    segments: Sequence[Segment],
    embed: Embed = embed_texts,
    min_chapter_s: float = MIN_CHAPTER_S,
    window_s: float = WINDOW_S,
    shift_threshold: float = SHIFT_THRESHOLD,
    snap_s: float = SNAP_S,
) -> list[Chapter]:
    """Contiguous chapters covering [0, duration_s], none shorter than `min_chapter_s` (but one).

    Boundaries, strongest first: topic shifts (snapped onto a cut within `snap_s`), the edges of
    speechless stretches, then cuts where nobody speaks. Titles are the chapter's keywords; a
    chapter without usable speech is named after its shots.
    """
    duration = round(max(0.0, duration_s), 3)
    if duration == 0:
        return []
    spans = sorted(_span(s) for s in shots)
    cuts = sorted({round(a, 3) for a, _ in spans if 0 < a < duration})
    spoken = _spoken(segments)
    shifts = topic_shifts(spoken, embed, window_s, shift_threshold)
    candidates = [(_snap(t, cuts, snap_s), 1.0 - sim) for t, sim in shifts]
    candidates += [(_snap(t, cuts, snap_s), PAUSE_STRENGTH) for t in _pause_edges(spoken, duration, window_s)]
    candidates += [(cut, 0.0) for cut in _silent_cuts(cuts, spoken, window_s / 2)]
    bounds = [0.0, *(round(b, 3) for b in _select(candidates, duration, min_chapter_s)), duration]
    texts = [
        " ".join(s.text.strip() for s in spoken if a <= (s.start_s + s.end_s) / 2 < b)
        for a, b in pairwise(bounds)
    ]
    titles = keyword_titles(texts)
    return [
        Chapter(k, a, b, titles[k] or _fallback_title(k, a, b, spans))
        for k, (a, b) in enumerate(pairwise(bounds))
    ]


def _cue_text(title: str) -> str:
    """One line of cue text: WebVTT reads '-->' as timing, '&' and '<' as markup, a blank line as the end."""
    text = " ".join(title.split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text or "Untitled"


def chapters_webvtt(found: Sequence[Chapter]) -> str:
    """A WebVTT chapters track (<track kind="chapters">, HLS players' chapter menus)."""
    cues = [
        f"{c.idx + 1}\n{timestamp(c.start_s)} --> {timestamp(c.end_s)}\n{_cue_text(c.title)}\n" for c in found
    ]
    return "WEBVTT\n\n" + "\n".join(cues)
