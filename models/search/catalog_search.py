"""Hybrid catalog search: BM25 (bm25s) over the catalog's words, fused with MiniLM cosine similarity.

Why both: BM25 finds the exact words a viewer types (names, rare terms), which an embedding blurs;
the embedding finds paraphrases that share no word with the item. Reciprocal-rank fusion (Cormack
et al. 2009, k = 60) adds 1 / (k + rank) from each retriever: it fuses ranks, not scores, so
neither retriever's scale needs calibrating against the other's, and an item both rank well wins.

Filters (genres, duration) apply before ranking: each retriever ranks only items that pass, so a
filter never shortens a page because good matches were cut after ranking.

Any string is a safe query: it is cut to MAX_QUERY_CHARS, NFKC-normalised and split into words by a
fixed pattern; no user text ever becomes a regex, SQL or a lake filter.

An index is immutable once built, so one instance serves concurrent requests; when one of
SOURCE_TABLES gets a new Delta version the caller builds a new index and swaps it in.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import bm25s
import numpy as np
import polars as pl
from bm25s.stopwords import STOPWORDS_EN

from models.analysis.text_embeddings import BUNDLED_MODEL_NAME, embed_texts
from models.lake.tables import read_table
from models.settings import Settings

RRF_K = 60
DEPTH = 100  # each retriever's top DEPTH take part in the fusion
# Below this MiniLM cosine an item is no vector match, so a query with no real neighbour does not
# return the whole catalog. Measured on short queries against one-line items: unrelated pairs reach
# 0.31 ("cars" vs a biking clip), related ones start near 0.37 ("weather" vs ocean waves).
MIN_SIMILARITY = 0.35
MAX_QUERY_CHARS = 256
MAX_QUERY_TOKENS = 32
TITLE_REPEAT = 2  # title words count twice: what an item is called says most about it
SOURCE_TABLES = ("media_items", "transcripts", "media_content", "text_embeddings")
ITEM_COLUMNS = ["media_id", "title", "description", "tags", "duration_s"]  # read from media_items
CATALOG_COLUMNS = ("media_id", "title", "description", "tags", "transcript", "duration_s", "genres")

_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, in any script
_STOP_WORDS = frozenset(STOPWORDS_EN)

Embed = Callable[[Sequence[str]], np.ndarray]


def tokenize(text: str | None) -> list[str]:
    """Case-folded words of any script, English stop words left out."""
    if not text:
        return []
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return [word for word in words if word not in _STOP_WORDS]


@dataclass(frozen=True)
class Filters:
    genres: tuple[str, ...] = ()  # items with any of these genres (case-insensitive); () = all
    min_duration_s: float | None = None  # items of unknown duration fail either duration bound
    max_duration_s: float | None = None


@dataclass(frozen=True)
class Hit:
    media_id: str
    title: str | None
    score: float  # the fused RRF score
    matched_by: tuple[str, ...]  # which retrievers found it: "bm25", "vector"
    bm25_rank: int | None
    vector_rank: int | None
    duration_s: float | None
    genres: tuple[str, ...]


def catalog_frame(items: pl.DataFrame, transcripts: pl.DataFrame, content: pl.DataFrame) -> pl.DataFrame:
    """CATALOG_COLUMNS per item from media_items, transcripts (segments joined in order) and
    media_content (genres)."""
    spoken = (
        transcripts.sort("media_id", "segment_id")
        .group_by("media_id", maintain_order=True)
        .agg(pl.col("text").drop_nulls().str.join(" ").alias("transcript"))
    )
    return (
        items.select(ITEM_COLUMNS)
        .join(spoken, on="media_id", how="left", maintain_order="left")
        .join(content.select("media_id", "genres"), on="media_id", how="left", maintain_order="left")
        .select(CATALOG_COLUMNS)
    )


def _document(row: dict) -> list[str]:
    """The words BM25 indexes for one item."""
    title = tokenize(row["title"])
    rest = [" ".join(row["tags"] or []), row["description"], row["transcript"]]
    return title * TITLE_REPEAT + [word for text in rest for word in tokenize(text)]


def _unit_rows(catalog: pl.DataFrame, embeddings: pl.DataFrame) -> np.ndarray | None:
    """Unit vectors aligned with the catalog's rows (zeros where an item has none); None if none has."""
    vectors = catalog.select("media_id").join(
        embeddings.select("media_id", "embedding"), on="media_id", how="left", maintain_order="left"
    )["embedding"]
    present = vectors.is_not_null().to_numpy()
    if not present.any():
        return None
    known = np.asarray(vectors.drop_nulls().to_list(), dtype=np.float32)
    matrix = np.zeros((len(catalog), known.shape[1]), dtype=np.float32)
    matrix[present] = known / np.maximum(np.linalg.norm(known, axis=1, keepdims=True), 1e-12)
    return matrix  # a zero row scores 0 < MIN_SIMILARITY: an item without a vector never matches


def _best(scores: np.ndarray, passes: np.ndarray) -> np.ndarray:
    """Indices of the passing items, best score first (ties in catalog order), at most DEPTH."""
    candidates = np.flatnonzero(passes)
    return candidates[np.argsort(-scores[candidates], kind="stable")[:DEPTH]]


class CatalogIndex:
    """BM25 and vector indexes over one catalog snapshot; `search` ranks, filters and fuses."""

    def __init__(self, catalog: pl.DataFrame, embeddings: pl.DataFrame, embed: Embed = embed_texts) -> None:
        """catalog: CATALOG_COLUMNS (see catalog_frame); embeddings: media_id + embedding, any order."""
        rows = catalog.select(CATALOG_COLUMNS).to_dicts()
        self._ids = [row["media_id"] for row in rows]
        self._titles = [row["title"] for row in rows]
        self._genres = [tuple(row["genres"] or ()) for row in rows]
        self._durations = np.array([np.nan if r["duration_s"] is None else r["duration_s"] for r in rows])
        by_genre: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(rows), dtype=bool))
        for index, genres in enumerate(self._genres):
            for genre in genres:
                by_genre[genre.casefold()][index] = True
        self._by_genre = dict(by_genre)
        self._bm25 = bm25s.BM25()
        if rows:
            self._bm25.index([_document(row) for row in rows], show_progress=False)
        self._vectors = _unit_rows(catalog, embeddings)
        self._embed = embed

    @classmethod
    def from_lake(cls, settings: Settings) -> CatalogIndex:
        """The index over the lake's current snapshots, querying with the model that embedded it."""
        model = settings.text_model or BUNDLED_MODEL_NAME
        embeddings = read_table(settings, "text_embeddings", columns=["media_id", "model", "embedding"])
        catalog = catalog_frame(
            read_table(settings, "media_items", columns=ITEM_COLUMNS),
            read_table(settings, "transcripts", columns=["media_id", "segment_id", "text"]),
            read_table(settings, "media_content", columns=["media_id", "genres"]),
        )
        embed = functools.partial(embed_texts, model_path=settings.text_model)
        return cls(catalog.sort("media_id"), embeddings.filter(pl.col("model") == model), embed)

    def __len__(self) -> int:
        return len(self._ids)

    def search(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        """Up to k items best first; a query without a letter or digit matches nothing."""
        text = query[:MAX_QUERY_CHARS]
        if not self._ids or not _WORD.search(text):
            return []
        allowed = self._allowed(filters or Filters())
        rankings = {"bm25": self._bm25_ranking(text, allowed), "vector": self._vector_ranking(text, allowed)}
        return self._fuse(rankings, k)

    def _allowed(self, filters: Filters) -> np.ndarray:
        allowed = np.ones(len(self._ids), dtype=bool)
        if filters.genres:
            masks = [self._by_genre[g] for g in map(str.casefold, filters.genres) if g in self._by_genre]
            allowed &= np.any(masks, axis=0) if masks else False
        if filters.min_duration_s is not None:
            allowed &= self._durations >= filters.min_duration_s  # NaN compares False
        if filters.max_duration_s is not None:
            allowed &= self._durations <= filters.max_duration_s
        return allowed

    def _bm25_ranking(self, text: str, allowed: np.ndarray) -> np.ndarray:
        known = [word for word in dict.fromkeys(tokenize(text)) if word in self._bm25.vocab_dict]
        if not known:
            return np.array([], dtype=int)
        scores = self._bm25.get_scores(known[:MAX_QUERY_TOKENS])
        return _best(scores, allowed & (scores > 0))

    def _vector_ranking(self, text: str, allowed: np.ndarray) -> np.ndarray:
        if self._vectors is None:
            return np.array([], dtype=int)
        similarity = self._vectors @ self._embed([text])[0]
        return _best(similarity, allowed & (similarity >= MIN_SIMILARITY))

    def _fuse(self, rankings: dict[str, np.ndarray], k: int) -> list[Hit]:
        scores: dict[int, float] = defaultdict(float)
        ranks: dict[str, dict[int, int]] = {}
        for name, order in rankings.items():
            ranks[name] = {int(index): rank for rank, index in enumerate(order, start=1)}
            for index, rank in ranks[name].items():
                scores[index] += 1.0 / (RRF_K + rank)
        best = sorted(scores, key=lambda index: (-scores[index], index))[:k]
        return [
            Hit(
                media_id=self._ids[i],
                title=self._titles[i],
                score=scores[i],
                matched_by=tuple(name for name in rankings if i in ranks[name]),
                bm25_rank=ranks["bm25"].get(i),
                vector_rank=ranks["vector"].get(i),
                duration_s=None if np.isnan(self._durations[i]) else float(self._durations[i]),
                genres=self._genres[i],
            )
            for i in best
        ]
