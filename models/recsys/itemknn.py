"""ItemKNN: items similar to what a user watched, by shrunk cosine over co-watch weights."""

from __future__ import annotations

from typing import Self

import numpy as np
import polars as pl
from scipy import sparse

from models.recsys.base import Recommender

# Similarity columns computed per block: bounds the dense (items x block) slab in memory.
ITEM_BLOCK = 1024


def shrunk_cosine(interactions: sparse.csr_matrix, neighbours: int, shrink: float) -> sparse.csr_matrix:
    """Item-item sim(i, j) = x_i . x_j / (|x_i| |x_j| + shrink), top `neighbours` kept per column.

    Shrinkage damps similarities resting on few co-watches; column j keeps the items most like
    j, so `seen @ sim` scores j from a user's watched neighbours of j. No self-similarity.
    """
    gram = (interactions.T @ interactions).tocsc()
    norms = np.sqrt(gram.diagonal())
    n_items = gram.shape[0]
    drop = n_items - min(neighbours, n_items - 1)
    blocks = []
    for start in range(0, n_items, ITEM_BLOCK):
        stop = min(start + ITEM_BLOCK, n_items)
        block = gram[:, start:stop].toarray()
        block /= np.outer(norms, norms[start:stop]) + shrink
        block[np.arange(start, stop), np.arange(stop - start)] = 0.0
        weakest = np.argpartition(block, drop - 1, axis=0)[:drop]
        np.put_along_axis(block, weakest, 0.0, axis=0)
        blocks.append(sparse.csc_matrix(block))
    return sparse.hstack(blocks, format="csr")


class ItemKNN(Recommender):
    """Score = a user's weights times the pruned item-item similarity, all users of a block at once."""

    name = "itemknn"

    def __init__(self, neighbours: int = 50, shrink: float = 10.0) -> None:
        if neighbours < 1 or shrink < 0:
            raise ValueError(f"need neighbours >= 1 and shrink >= 0, got {neighbours}, {shrink}")
        self.neighbours = neighbours
        self.shrink = shrink

    def fit(self, train: pl.DataFrame) -> Self:
        super().fit(train)
        self._similarity = shrunk_cosine(self._seen, self.neighbours, self.shrink)
        return self

    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        return (seen @ self._similarity).toarray()
