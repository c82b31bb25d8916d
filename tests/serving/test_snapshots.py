"""Snapshot loading over tables that delta-rs has rewritten with MERGE (string_view files)."""

from __future__ import annotations

from pathlib import Path

from models.lake.tables import upsert
from models.settings import get_settings
from serving.snapshots import load_cold_start


def test_cold_start_list_reads_after_a_merge(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path)
    rows = [
        {"user_id": user, "rank": rank, "media_id": f"m{rank}", "score": 10.0 - rank, "model_version": "1"}
        for user in ("*", "u1")
        for rank in (1, 2, 3)
    ]
    upsert(settings, "recs_topk", rows)
    rows[0]["score"] = 99.0  # forces a MERGE that rewrites the file
    upsert(settings, "recs_topk", rows)
    cold = load_cold_start(settings)
    assert [item["media_id"] for item in cold.items] == ["m1", "m2", "m3"]
    assert cold.items[0]["score"] == 99.0 and cold.version == 1
