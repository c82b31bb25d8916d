"""What every recommender shares: id indexing, seen-item masking, top-k and the cold-start list.

A model only says how to score all items for a block of users (`_score`); ranking, exclusion of
seen items and the popularity fallback for unknown users live here once.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from functools import cached_property
from typing import ClassVar, Self

import numpy as np
import polars as pl
from scipy import sparse

RECS_SCHEMA = {"user_id": pl.String, "rank": pl.Int32, "media_id": pl.String, "score": pl.Float64}

# Users scored per block: bounds the dense (users x items) score matrix in memory.
USER_BLOCK = 2048


class Recommender(ABC):
    """fit(train) then recommend(user_ids, k); unknown users get the most popular items."""

    name: ClassVar[str]

    def params(self) -> dict[str, object]:
        """Hyper-parameters, logged to MLflow and part of the idempotence fingerprint: by default the
        constructor's named arguments, read back from the attributes it stores them under."""
        arguments = inspect.signature(type(self).__init__).parameters.values()
        named = [a.name for a in arguments if a.kind in (a.POSITIONAL_OR_KEYWORD, a.KEYWORD_ONLY)]
        return {name: getattr(self, name) for name in named[1:]}  # [0] is self

    def fit(self, train: pl.DataFrame) -> Self:
        """Index users and items; items are ordered by popularity so that ties rank popular first."""
        if train.is_empty():
            raise ValueError("cannot fit a recommender on no interactions")
        items = (
            train.group_by("media_id")
            .agg(pl.col("weight").sum())
            .sort(["weight", "media_id"], descending=[True, False])
            .with_row_index("i")
        )
        self._users = train.select(pl.col("user_id").unique().sort()).with_row_index("u")
        self._items = items["media_id"].to_numpy()
        self._popularity = items["weight"].to_numpy()
        coded = train.join(self._users, on="user_id").join(items.select("media_id", "i"), on="media_id")
        self._seen = sparse.csr_matrix(
            (coded["weight"].to_numpy(), (coded["u"].to_numpy(), coded["i"].to_numpy())),
            shape=(self._users.height, len(self._items)),
        )
        return self

    def _add_items(self, media_ids: np.ndarray) -> None:
        """Append catalogue items nobody interacted with (zero popularity, ranked after the rest).

        For models that can score items without interactions (content-based cold start).
        """
        fresh = np.setdiff1d(media_ids, self._items)
        self._items = np.concatenate([self._items, fresh])
        self._popularity = np.concatenate([self._popularity, np.zeros(len(fresh))])
        self._seen.resize((self._seen.shape[0], len(self._items)))

    @property
    def known_users(self) -> frozenset[str]:
        """Users seen in training; anyone else is a cold start. (Builds the id lookup `recommend`
        uses, so whoever loads a model, such as the API off its event loop, pays for it once.)"""
        return frozenset(self._user_rows)

    @abstractmethod
    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        """Dense scores (len(block) x n_items) for a block of users' train rows."""

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        """Dense scores for fitted users by index; models needing more than the seen row override it."""
        return self._score(self._seen[users])

    def _seen_cells(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(block row, item) of every interaction of users, read off the CSR arrays directly:
        `self._seen[users].nonzero()` costs about 8x more, which a one-user request notices."""
        seen = self._seen
        starts = seen.indptr[users]
        lengths = seen.indptr[users + 1] - starts
        cells = np.arange(lengths.sum()) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        stored = seen.data[cells] != 0  # as nonzero(): explicitly stored zeros are not interactions
        return np.repeat(np.arange(len(users)), lengths)[stored], seen.indices[cells][stored]

    @cached_property
    def _user_rows(self) -> dict[str, int]:
        """user_id → row of the fitted matrices; built on first use, so models pickled without it load."""
        return dict(zip(self._users["user_id"].to_list(), self._users["u"].to_list(), strict=True))

    def recommend(self, user_ids: list[str], k: int, exclude_seen: bool = True) -> pl.DataFrame:
        """Top-k per user in request order: user_id, rank (1..k), media_id, score.

        A user may get fewer than k rows when fewer unseen items exist. Unknown users get the
        popularity list (score = summed weight), nothing excluded. Plain numpy until the one
        frame at the end: serving asks for one user per request, where per-call overhead counts.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not hasattr(self, "_seen"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(train) first")
        requested = list(dict.fromkeys(user_ids))
        rows = np.fromiter((self._user_rows.get(user, -1) for user in requested), np.int64, len(requested))
        known, cold = np.flatnonzero(rows >= 0), np.flatnonzero(rows < 0)
        picks = []  # (request position, rank, item, score) per block
        for start in range(0, len(known), USER_BLOCK):
            positions = known[start : start + USER_BLOCK]
            users = rows[positions]
            scores = self._score_users(users)
            if exclude_seen:
                scores[self._seen_cells(users)] = -np.inf
            block, rank, item, score = self._top_k_arrays(scores, k)
            picks.append((positions[block], rank, item, score))
        if len(cold):
            _, rank, item, score = self._top_k_arrays(self._popularity[None, :], k)
            picks.append((np.repeat(cold, len(rank)), *(np.tile(a, len(cold)) for a in (rank, item, score))))
        position, rank, item, score = (
            np.concatenate([p[i] for p in picks]) if picks else np.empty(0, dtype)
            for i, dtype in enumerate((np.int64, np.int32, np.int64, np.float64))
        )
        order = np.lexsort((rank, position))
        return pl.DataFrame(
            {
                "user_id": np.asarray(requested, dtype=object)[position[order]],
                "rank": rank[order],
                "media_id": self._items[item[order]],
                "score": score[order],
            },
            schema=RECS_SCHEMA,
        )

    def _top_k_arrays(self, scores: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
        """(score row, rank 1..k, item, score) of the k best finite items per row; a stable sort
        ranks popular items first on ties."""
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(scores, order, axis=1)
        n_rows, width = order.shape
        rows = np.repeat(np.arange(n_rows), width)
        rank = np.tile(np.arange(1, width + 1, dtype=np.int32), n_rows)
        finite = np.isfinite(top.ravel())
        return rows[finite], rank[finite], order.ravel()[finite], top.ravel()[finite].astype(np.float64)
