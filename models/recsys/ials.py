"""Implicit ALS (Hu, Koren, Volinsky 2008) in numpy: every (user, item) cell is a 0/1 preference
with confidence 1 + alpha * weight where observed, 1 elsewhere.

Each half-step solves the regularised weighted least squares of all users (or items) at once by a
few steps of conjugate gradient warm-started from the previous factors (as Takács et al. and the
`implicit` package do). A CG step costs O(nnz * factors), never a dense users x items matrix.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import polars as pl
from scipy import sparse

from models.recsys.base import Recommender


def _conjugate_gradient(
    factors: np.ndarray, fixed: np.ndarray, confidence: sparse.csr_matrix, regularization: float, steps: int
) -> np.ndarray:
    """Improve every row x_u of `factors` towards (YᵀC_uY + λI)x_u = YᵀC_u p_u; Y = `fixed`.

    `confidence` holds c_ui - 1 = alpha * w_ui on the observed cells (p_ui = 1 exactly there), so
    YᵀC_uY = YᵀY + Σ_i (c_ui - 1) y_i y_iᵀ and YᵀC_u p_u = Σ_i c_ui y_i.
    """
    gram = fixed.T @ fixed + regularization * np.eye(fixed.shape[1])
    rows = np.repeat(np.arange(confidence.shape[0]), np.diff(confidence.indptr))
    cols = confidence.indices

    def product(vectors: np.ndarray) -> np.ndarray:
        along = np.einsum("nf,nf->n", vectors[rows], fixed[cols]) * confidence.data
        weighted = sparse.csr_matrix((along, cols, confidence.indptr), shape=confidence.shape)
        return vectors @ gram + weighted @ fixed

    target = sparse.csr_matrix((confidence.data + 1.0, cols, confidence.indptr), shape=confidence.shape)
    x = factors.copy()
    residual = target @ fixed - product(x)
    direction = residual.copy()
    norm = np.einsum("uf,uf->u", residual, residual)
    for _ in range(steps):
        step_product = product(direction)
        curvature = np.einsum("uf,uf->u", direction, step_product)
        alpha = np.divide(norm, curvature, out=np.zeros_like(norm), where=curvature > 0)
        x += alpha[:, None] * direction
        residual -= alpha[:, None] * step_product
        new_norm = np.einsum("uf,uf->u", residual, residual)
        beta = np.divide(new_norm, norm, out=np.zeros_like(norm), where=norm > 0)
        direction = residual + beta[:, None] * direction
        norm = new_norm
    return x


class IALS(Recommender):
    """Score = user factors · item factors. Defaults are the values tuned on ML-100K."""

    name = "ials"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 40.0,
        alpha: float = 4.0,
        iterations: int = 15,
        cg_steps: int = 3,
        seed: int = 42,
    ) -> None:
        if factors < 1 or iterations < 1 or cg_steps < 1 or regularization < 0 or alpha < 0:
            raise ValueError("need factors, iterations, cg_steps >= 1 and regularization, alpha >= 0")
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.cg_steps = cg_steps
        self.seed = seed

    def fit(self, train: pl.DataFrame) -> Self:
        super().fit(train)
        confidence = (self.alpha * self._seen).astype(np.float64).tocsr()
        by_item = confidence.T.tocsr()
        rng = np.random.default_rng(self.seed)
        n_users, n_items = confidence.shape
        users = rng.normal(0.0, 0.01, (n_users, self.factors))
        items = rng.normal(0.0, 0.01, (n_items, self.factors))
        for _ in range(self.iterations):
            users = _conjugate_gradient(users, items, confidence, self.regularization, self.cg_steps)
            items = _conjugate_gradient(items, users, by_item, self.regularization, self.cg_steps)
        self.user_factors, self.item_factors = users, items
        return self

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        """Rows outside the fit are folded in: CG run for `factors` steps solves their system exactly."""
        confidence = (self.alpha * seen).astype(np.float64).tocsr()
        start = np.zeros((seen.shape[0], self.factors))
        return (
            _conjugate_gradient(start, self.item_factors, confidence, self.regularization, self.factors)
            @ self.item_factors.T
        )
