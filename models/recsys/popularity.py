"""TopPop: the baseline every model must beat, and the cold-start list for unknown users."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from models.recsys.base import Recommender


class TopPop(Recommender):
    """Rank items by their summed interaction weight, the same list for everyone."""

    name = "toppop"

    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        return np.tile(self._popularity, (seen.shape[0], 1))
