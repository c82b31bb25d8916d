"""Collaborative + content blend: collaborative accuracy on watched items, content reach on new ones.

Raw scores of different models live on different scales, so each is min-max normalised per user
over the items that user has not seen (seen items would stretch the range and are never shown).
Cold items (embedded but absent from training) have no collaborative score: they get the content
term alone, weight * content, as if their collaborative score were the user's lowest. A new item
thus enters the lists of users whose taste it matches once the warm items that beat it are seen;
giving cold items their full content score instead floods every list with them (on ML-100K, NDCG@10
fell by half). Broader exposure for new items is the exploration policy's job (exploration.py).
"""

from __future__ import annotations

from typing import Self

import numpy as np
import polars as pl
from scipy import sparse

from models.recsys.base import Recommender
from models.recsys.content import ContentBased


def minmax_unseen(scores: np.ndarray, seen: sparse.csr_matrix) -> np.ndarray:
    """Scores mapped to [0, 1] per row over that row's unseen items; a flat row becomes 0."""
    mask = seen.toarray() != 0
    low = np.where(mask, np.inf, scores).min(axis=1, keepdims=True)
    high = np.where(mask, -np.inf, scores).max(axis=1, keepdims=True)
    spread = high - low
    usable = np.isfinite(spread) & (spread > 0)
    return np.where(usable, (scores - np.where(usable, low, 0.0)) / np.where(usable, spread, 1.0), 0.0)


class Hybrid(Recommender):
    """(1 - weight) * collaborative + weight * content; cold items get the content term only."""

    name = "hybrid"

    def __init__(self, collaborative: Recommender, content: ContentBased, weight: float = 0.2) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must lie in [0, 1], got {weight}")
        self.collaborative = collaborative
        self.content = content
        self.weight = weight

    def params(self) -> dict[str, object]:
        return {
            "weight": self.weight,
            "collaborative": self.collaborative.name,
            **{f"collaborative.{key}": value for key, value in self.collaborative.params().items()},
            **{f"content.{key}": value for key, value in self.content.params().items()},
        }

    def fit(self, train: pl.DataFrame) -> Self:
        """Fit both parts on the same rows.

        base.fit indexes users and warm items identically for all three, and _add_items appends
        the same sorted cold items as in the content model, so their columns line up.
        """
        self.collaborative.fit(train)
        self.content.fit(train)
        super().fit(train)
        self._add_items(self.content._items)
        return self

    def _blend(self, collaborative: np.ndarray, content: np.ndarray, seen: sparse.csr_matrix) -> np.ndarray:
        warm = collaborative.shape[1]
        blended = self.weight * minmax_unseen(content, seen)
        blended[:, :warm] += (1.0 - self.weight) * minmax_unseen(collaborative, seen[:, :warm])
        return blended

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return self._blend(
            self.collaborative._score_users(users), self.content._score_users(users), self._seen[users]
        )

    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        warm = self.collaborative._seen.shape[1]
        return self._blend(self.collaborative._score(seen[:, :warm]), self.content._score(seen), seen)
