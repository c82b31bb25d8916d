"""What every recommender shares: id indexing, seen-item masking, top-k and the cold-start list.

A model only says how to score all items for a block of users (`_score`); ranking, exclusion of
seen items and the popularity fallback for unknown users live here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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
        """Hyper-parameters, logged to MLflow and part of the idempotence fingerprint."""
        return {}

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
        """Users seen in training; anyone else is a cold start."""
        return frozenset(self._users["user_id"].to_list())

    @abstractmethod
    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        """Dense scores (len(block) x n_items) for a block of users' train rows."""

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        """Dense scores for fitted users by index; models needing more than the seen row override it."""
        return self._score(self._seen[users])

    def recommend(self, user_ids: list[str], k: int, exclude_seen: bool = True) -> pl.DataFrame:
        """Top-k per user in request order: user_id, rank (1..k), media_id, score.

        A user may get fewer than k rows when fewer unseen items exist. Unknown users get the
        popularity list (score = summed weight), nothing excluded.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not hasattr(self, "_seen"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(train) first")
        requests = (
            pl.DataFrame({"user_id": user_ids}, schema={"user_id": pl.String})
            .unique(maintain_order=True)
            .with_row_index("pos")
            .join(self._users, on="user_id", how="left")
        )
        known = requests.filter(pl.col("u").is_not_null())
        frames = [pl.DataFrame(schema={"pos": pl.UInt32, **RECS_SCHEMA})]
        for start in range(0, known.height, USER_BLOCK):
            block = known.slice(start, USER_BLOCK).with_row_index("row")
            users = block["u"].to_numpy()
            seen = self._seen[users]
            scores = self._score_users(users)
            if exclude_seen:
                scores[seen.nonzero()] = -np.inf
            frames.append(block.select("pos", "user_id", "row").join(self._top_k(scores, k), on="row"))
        cold = requests.filter(pl.col("u").is_null()).select("pos", "user_id")
        if cold.height:
            popular = self._top_k(self._popularity[None, :], k)
            frames.append(cold.join(popular, how="cross"))
        return pl.concat([f.select(frames[0].columns) for f in frames]).sort("pos", "rank").drop("pos")

    def _top_k(self, scores: np.ndarray, k: int) -> pl.DataFrame:
        """The k best items per score row (column `row`); a stable sort ranks popular items first on ties."""
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(scores, order, axis=1)
        n_rows, width = order.shape
        frame = pl.DataFrame(
            {
                "row": np.repeat(np.arange(n_rows, dtype=np.uint32), width),
                "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), n_rows),
                "media_id": self._items[order.ravel()],
                "score": top.ravel(),
            },
            schema={"row": pl.UInt32, "rank": pl.Int32, "media_id": pl.String, "score": pl.Float64},
        )
        return frame.filter(np.isfinite(top.ravel()))
