"""Items like a given one: what they are about (text embeddings) and who watched them (co_watch).

Content similarity knows every item from the day it is ingested but not what viewers pair; co-watch
knows what viewers pair but nothing of new items. Each ranks the candidates, and the ranks are fused
by reciprocal rank as catalog search does (no calibration of a cosine against a viewer count).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from models.search.catalog_search import DEPTH, MIN_SIMILARITY, RRF_K


@dataclass(frozen=True)
class SimilarIndex:
    ids: list[str] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))  # unit rows
    co_watch: dict[str, dict[str, float]] = field(default_factory=dict)  # both directions
    position: dict[str, int] = field(default_factory=dict)  # row of each id in vectors

    @classmethod
    def build(cls, embeddings: pl.DataFrame, co_watch: pl.DataFrame) -> SimilarIndex:
        """embeddings: media_id, embedding (one model); co_watch: media_a, media_b, weight."""
        rows = embeddings.filter(pl.col("embedding").is_not_null()).sort("media_id")
        vectors = np.asarray(rows["embedding"].to_list(), dtype=np.float32)
        if rows.height:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        pairs: dict[str, dict[str, float]] = defaultdict(dict)
        for a, b, weight in co_watch.select("media_a", "media_b", "weight").iter_rows():
            if a != b and weight is not None and weight > 0:
                pairs[a][b] = pairs[b][a] = float(weight)
        ids = rows["media_id"].to_list()
        return cls(ids, vectors, dict(pairs), {mid: row for row, mid in enumerate(ids)})

    def similar(self, media_id: str, n: int) -> list[dict]:
        """Up to n other items, best first, with the fused score and each retriever's evidence."""
        cosine = self._content(media_id)
        watched = sorted(self.co_watch.get(media_id, {}).items(), key=lambda p: (-p[1], p[0]))[:DEPTH]
        scores: dict[str, float] = defaultdict(float)
        for ranking in ([mid for mid, _ in cosine], [mid for mid, _ in watched]):
            for rank, mid in enumerate(ranking, start=1):
                scores[mid] += 1.0 / (RRF_K + rank)
        content, pairs = dict(cosine), dict(watched)
        best = sorted(scores, key=lambda mid: (-scores[mid], mid))[:n]
        return [
            {"media_id": mid, "score": scores[mid], "content": content.get(mid), "co_watch": pairs.get(mid)}
            for mid in best
        ]

    def _content(self, media_id: str) -> list[tuple[str, float]]:
        if media_id not in self.position:
            return []
        similarity = self.vectors @ self.vectors[self.position[media_id]]
        order = np.argsort(-similarity, kind="stable")
        ranked = [(self.ids[i], float(similarity[i])) for i in order if self.ids[i] != media_id]
        return [(mid, round(s, 6)) for mid, s in ranked[:DEPTH] if s >= MIN_SIMILARITY]
