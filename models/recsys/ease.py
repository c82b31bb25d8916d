"""EASE (Steck 2019): a closed-form item-item linear model, the strongest simple baseline on ML-100K.

B minimises ||X - XB||² + λ||B||² with diag(B) = 0, whose solution is B = I - P·diag(1/diag(P)),
P = (XᵀX + λI)⁻¹. One dense (items x items) inverse: fine up to tens of thousands of items.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import polars as pl
from scipy import sparse

from models.recsys.base import Recommender


def ease_weights(interactions: sparse.csr_matrix, l2: float) -> np.ndarray:
    """The (items x items) EASE matrix B, zero diagonal, float64."""
    gram = (interactions.T @ interactions).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


class EASE(Recommender):
    """Score = a user's interaction row times B.

    binary=True fits on 0/1 interactions (the Microsoft Recommenders protocol, and what scored best
    on ML-100K); False uses the weights as given. Default l2 is the value tuned on ML-100K.
    """

    name = "ease"

    def __init__(self, l2: float = 300.0, binary: bool = True) -> None:
        if l2 <= 0:
            raise ValueError(f"l2 must be positive, got {l2}")
        self.l2 = l2
        self.binary = binary

    def _input(self, seen: sparse.csr_matrix) -> sparse.csr_matrix:
        return (seen != 0).astype(np.float64) if self.binary else seen

    def fit(self, train: pl.DataFrame) -> Self:
        super().fit(train)
        self.weights = ease_weights(self._input(self._seen), self.l2)
        return self

    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        return np.asarray(self._input(seen) @ self.weights)

    def onnx_inputs(self, users: np.ndarray) -> np.ndarray:
        """What the exported graph takes for these fitted users: their dense float32 rows."""
        return self._input(self._seen[users]).toarray().astype(np.float32)

    def torch_scorer(self):  # -> torch.nn.Module
        """interactions (batch x items) -> scores as a float32 torch module, for ONNX export."""
        import torch

        linear = torch.nn.Linear(*self.weights.shape, bias=False)
        linear.weight.data = torch.from_numpy(self.weights.T.astype(np.float32))
        return linear.eval()
