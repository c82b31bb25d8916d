"""BPR-MF (Rendle et al. 2009): matrix factorisation trained to rank a user's items above others.

Each epoch visits every observed (user, item) pair once in a seeded random order, pairs it with
a uniformly drawn item the user has not seen, and takes Adam steps on mini-batches of
-log σ(x_ui - x_uj) + L2. torch is imported in fit only; the fitted model is plain numpy.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import polars as pl
from scipy import sparse

from models.recsys.base import Recommender

# Redraws of negatives that hit a seen item; what still clashes after them is kept (a user who saw
# nearly everything), which only adds noise to that user's gradient.
NEGATIVE_REDRAWS = 10


def sample_negatives(
    rng: np.random.Generator, users: np.ndarray, seen_keys: np.ndarray, n_items: int
) -> np.ndarray:
    """One uniform unseen item per entry of `users`; seen_keys = sorted user * n_items + item."""
    negatives = rng.integers(0, n_items, len(users))
    for _ in range(NEGATIVE_REDRAWS):
        clash = np.isin(users * n_items + negatives, seen_keys, assume_unique=False)
        if not clash.any():
            break
        negatives[clash] = rng.integers(0, n_items, int(clash.sum()))
    return negatives


class BPR(Recommender):
    """Score = user factors · item factors + item bias. Defaults are the values tuned on ML-100K."""

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        lr: float = 0.001,
        regularization: float = 0.01,
        epochs: int = 200,
        batch_size: int = 1024,
        seed: int = 42,
    ) -> None:
        if factors < 1 or epochs < 1 or batch_size < 1 or lr <= 0 or regularization < 0:
            raise ValueError("need factors, epochs, batch_size >= 1, lr > 0 and regularization >= 0")
        self.factors = factors
        self.lr = lr
        self.regularization = regularization
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed

    def fit(self, train: pl.DataFrame) -> Self:
        import torch

        super().fit(train)
        pairs = self._seen.tocoo()
        users, items = pairs.row.astype(np.int64), pairs.col.astype(np.int64)
        n_users, n_items = self._seen.shape
        seen_keys = np.sort(users * n_items + items)
        rng = np.random.default_rng(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        user_f = torch.nn.Parameter(0.1 * torch.randn(n_users, self.factors, generator=generator))
        item_f = torch.nn.Parameter(0.1 * torch.randn(n_items, self.factors, generator=generator))
        bias = torch.nn.Parameter(torch.zeros(n_items))
        optimizer = torch.optim.Adam([user_f, item_f, bias], lr=self.lr)
        for _ in range(self.epochs):
            order = rng.permutation(len(users))
            negatives = sample_negatives(rng, users[order], seen_keys, n_items)
            for start in range(0, len(order), self.batch_size):
                u = torch.from_numpy(users[order[start : start + self.batch_size]])
                i = torch.from_numpy(items[order[start : start + self.batch_size]])
                j = torch.from_numpy(negatives[start : start + self.batch_size])
                pu, qi, qj, bi, bj = user_f[u], item_f[i], item_f[j], bias[i], bias[j]
                margin = (pu * (qi - qj)).sum(1) + bi - bj
                penalty = (pu.square() + qi.square() + qj.square()).sum(1) + bi.square() + bj.square()
                loss = -torch.nn.functional.logsigmoid(margin).mean() + self.regularization * penalty.mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.user_factors = user_f.detach().numpy().copy()
        self.item_factors = item_f.detach().numpy().copy()
        self.item_bias = bias.detach().numpy().copy()
        return self

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T + self.item_bias

    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        """Rows outside the fit: the user vector is the weighted mean of their items' factors."""
        weights = sparse.diags(1.0 / np.maximum(np.asarray(seen.sum(axis=1)).ravel(), 1e-12)) @ seen
        return (weights @ self.item_factors) @ self.item_factors.T + self.item_bias

    def onnx_inputs(self, users: np.ndarray) -> np.ndarray:
        """What the exported graph takes: the users' int64 indices."""
        return np.asarray(users, dtype=np.int64)

    def torch_scorer(self):  # -> torch.nn.Module
        """user index (batch,) -> scores (batch x items) as a float32 torch module, for ONNX export."""
        import torch

        embedding = torch.nn.Embedding.from_pretrained(torch.from_numpy(self.user_factors))
        linear = torch.nn.Linear(self.factors, len(self.item_bias))
        linear.weight.data = torch.from_numpy(self.item_factors)
        linear.bias.data = torch.from_numpy(self.item_bias)
        return torch.nn.Sequential(embedding, linear).eval()
