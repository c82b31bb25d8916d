"""Content-based recommendations from item embeddings: the answer for items nobody has watched yet.

A user's profile is the weighted mean of the embeddings of what they watched; items score by
cosine to it. Every embedded item is scored, including catalogue items absent from training
(cold items), and a visitor unknown to the model can be served from a few seed items.
"""

from __future__ import annotations

import hashlib
from typing import Self

import numpy as np
import polars as pl
from scipy import sparse

from models.recsys.base import Recommender


def embedding_matrix(item_embeddings: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(media_ids, unit float32 rows) from a frame of media_id and a fixed-size `embedding`.

    The embedding column may be a list or an array; rows of different lengths fail here. Zero
    vectors stay zero (they score 0 against everything).
    """
    if item_embeddings["media_id"].is_duplicated().any():
        raise ValueError("item_embeddings repeats a media_id")
    column = item_embeddings["embedding"]
    if isinstance(column.dtype, pl.List):
        column = column.cast(pl.Array(pl.Float32, int(column.list.len().max() or 0)))
    vectors = column.cast(pl.Array(pl.Float32, column.dtype.size)).to_numpy().reshape(len(column), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return item_embeddings["media_id"].to_numpy(), vectors / np.where(norms > 0, norms, 1.0)


class ContentBased(Recommender):
    """Cosine between the user's weighted-mean embedding and each item's embedding."""

    name = "content"

    def __init__(self, item_embeddings: pl.DataFrame) -> None:
        self._embedded_ids, self._embeddings = embedding_matrix(item_embeddings)

    def params(self) -> dict[str, object]:
        """Also a digest of the embeddings: new vectors must not pass for the model already trained."""
        digest = hashlib.sha256(self._embeddings.tobytes())
        digest.update("\n".join(self._embedded_ids).encode())
        return {
            "embedding_dim": self._embeddings.shape[1],
            "embedded_items": len(self._embedded_ids),
            "embedding_sha256": digest.hexdigest()[:16],
        }

    def fit(self, train: pl.DataFrame) -> Self:
        """Index training items first, then the embedded items nobody interacted with."""
        super().fit(train)
        self._add_items(self._embedded_ids)
        self._index = pl.DataFrame({"media_id": self._items}).with_row_index("i")
        rows = self._index.join(
            pl.DataFrame({"media_id": self._embedded_ids}).with_row_index("e"), on="media_id"
        )
        self._vectors = np.zeros((len(self._items), self._embeddings.shape[1]), dtype=np.float32)
        self._vectors[rows["i"].to_numpy()] = self._embeddings[rows["e"].to_numpy()]
        return self

    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        profiles = np.asarray(seen @ self._vectors)
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        return (profiles / np.where(norms > 0, norms, 1.0)) @ self._vectors.T

    def recommend_for_items(self, media_ids: list[str], k: int) -> pl.DataFrame:
        """Top-k (rank, media_id, score) for a visitor known only by a few seed items.

        The seeds are left out of the answer. Seeds unknown to the catalogue are ignored; with no
        embedded seed at all the answer is the popularity list (score = summed weight).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not hasattr(self, "_index"):
            raise RuntimeError("ContentBased is not fitted: call fit(train) first")
        seeds = self._index.filter(pl.col("media_id").is_in(media_ids))["i"].to_numpy()
        row = sparse.csr_matrix(
            (np.ones(len(seeds)), (np.zeros(len(seeds), dtype=np.int64), seeds)), shape=(1, len(self._items))
        )
        if np.abs(self._vectors[seeds]).sum() > 0:
            scores = self._score(row).astype(np.float64)
        else:
            scores = self._popularity[None, :].astype(np.float64)
        scores[0, seeds] = -np.inf
        _, rank, item, score = self._top_k_arrays(scores, k)
        return pl.DataFrame(
            {"rank": rank, "media_id": self._items[item], "score": score},
            schema={"rank": pl.Int32, "media_id": pl.String, "score": pl.Float64},
        )
