"""The lake layer: idempotent upserts, exactly-once inserts, slices, schema errors, concurrency."""

from __future__ import annotations

import threading

import pytest

from models.lake import tables
from models.lake.tables import SchemaMismatch
from models.settings import Settings


def _shots(n: int, media: str = "m1") -> list[dict]:
    return [
        {"media_id": media, "detector": "content", "shot_idx": i, "start_s": float(i), "end_s": i + 1.0}
        for i in range(n)
    ]


def test_upsert_is_idempotent_and_keeps_the_version(lake: Settings) -> None:
    first = tables.upsert(lake, "shots", _shots(3))
    again = tables.upsert(lake, "shots", _shots(3))
    assert (first.rows_written, first.row_count) == (3, 3)
    assert (again.rows_written, again.version) == (0, first.version)


def test_upsert_updates_changed_rows_only(lake: Settings) -> None:
    tables.upsert(lake, "shots", _shots(3))
    changed = _shots(3)
    changed[1]["end_s"] = 9.0
    result = tables.upsert(lake, "shots", changed)
    assert (result.rows_written, result.row_count) == (1, 3)
    assert tables.read_table(lake, "shots").filter(shot_idx=1)["end_s"][0] == 9.0


def test_insert_new_counts_each_key_once_across_retries(lake: Settings) -> None:
    batch = _shots(4)
    assert tables.insert_new(lake, "shots", batch + batch).row_count == 4
    resent = tables.insert_new(lake, "shots", batch[2:] + _shots(6)[4:])
    assert (resent.rows_written, resent.row_count) == (2, 6)


def test_replace_rows_drops_stale_rows_of_that_slice_only(lake: Settings) -> None:
    tables.upsert(lake, "shots", _shots(4) + _shots(2, media="m2"))
    result = tables.replace_rows(lake, "shots", _shots(2), where=("media_id", "m1"))
    assert result.row_count == 4
    per_item = tables.read_table(lake, "shots").group_by("media_id").len().sort("media_id")
    assert per_item["len"].to_list() == [2, 2]
    again = tables.replace_rows(lake, "shots", _shots(2), where=("media_id", "m1"))
    assert again.version == result.version, "an unchanged slice commits nothing"


def test_replace_rows_without_a_slice_replaces_the_table(lake: Settings) -> None:
    tables.upsert(lake, "shots", _shots(3) + _shots(2, media="m2"))
    result = tables.replace_rows(lake, "shots", _shots(1, media="m3"))
    assert result.row_count == 1
    assert tables.read_table(lake, "shots")["media_id"].to_list() == ["m3"]


def test_delete_where_in_removes_only_those_rows(lake: Settings) -> None:
    tables.upsert(lake, "shots", _shots(3) + _shots(2, media="it's"))
    result = tables.delete_where_in(lake, "shots", "media_id", ["it's", "absent"])
    assert (result.row_count, tables.read_table(lake, "shots")["media_id"].unique().to_list()) == (3, ["m1"])


def test_changes_since_names_changed_new_and_deleted_rows(lake: Settings) -> None:
    first = tables.upsert(lake, "shots", _shots(4))
    changed = _shots(5)
    changed[1]["end_s"] = 9.0
    tables.upsert(lake, "shots", changed)  # a MERGE rewrites the file that held all four rows
    tables.delete_where_in(lake, "shots", "shot_idx", [])
    tables.replace_rows(lake, "shots", [r for r in changed if r["shot_idx"] != 3])
    changes = tables.changes_since(lake, "shots", first.version)
    assert changes is not None and not changes.empty
    assert sorted(changes.upserted["shot_idx"].to_list()) == [1, 4]
    assert changes.deleted.to_dicts() == [{"media_id": "m1", "detector": "content", "shot_idx": 3}]
    now = tables.changes_since(lake, "shots", changes.version)
    assert now is not None and now.empty
    assert tables.changes_since(lake, "shots", changes.version + 5) is None


def test_wrong_schema_is_a_clear_error_and_writes_nothing(lake: Settings) -> None:
    with pytest.raises(SchemaMismatch, match=r"missing columns \['end_s'\]"):
        tables.upsert(lake, "shots", [{k: v for k, v in row.items() if k != "end_s"} for row in _shots(2)])
    with pytest.raises(SchemaMismatch, match="shots"):
        tables.upsert(lake, "shots", [{**_shots(1)[0], "start_s": "not a number"}])
    with pytest.raises(SchemaMismatch, match="repeat a key"):
        tables.upsert(lake, "shots", _shots(2) + _shots(1))
    assert tables.open_table(lake, "shots") is None


def test_absent_table_reads_as_empty_with_its_schema(lake: Settings) -> None:
    frame = tables.read_table(lake, "hourly_stats")
    assert frame.is_empty() and "unique_viewers" in frame.columns


def test_concurrent_writers_lose_no_rows(lake: Settings) -> None:
    """Four writers race to create and extend one table; conflicts are retried, all rows land."""
    tables.upsert(lake, "shots", _shots(1, media="seed"))
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for batch in range(3):
                tables.insert_new(lake, "shots", _shots(5, media=f"w{worker}-b{batch}"))
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert tables.read_table(lake, "shots").height == 1 + 4 * 3 * 5


def test_write_result_metadata_names_the_version(lake: Settings) -> None:
    meta = tables.upsert(lake, "shots", _shots(2)).metadata()
    assert meta == {"table": "shots", "delta_version": 0, "rows_written": 2, "row_count": 2}


def test_unexpected_columns_are_named(lake: Settings) -> None:
    with pytest.raises(SchemaMismatch, match=r"unexpected columns \['colour'\]"):
        tables.upsert(lake, "shots", [{**_shots(1)[0], "colour": "red"}])


def test_media_items_suite_flags_implausible_rows() -> None:
    import pandas as pd

    from models.lake.quality import validate_media_items

    good = {"media_id": "0123456789abcdef", "duration_s": 4.0, "width": 640, "height": 360, "fps": 25.0}
    frame = pd.DataFrame(
        [
            {**good, "video_codec": "h264"},
            {**good, "media_id": "0123456789abcdef", "duration_s": -1.0, "video_codec": "h264"},
            {**good, "media_id": "../etc", "width": 99_999, "video_codec": None},
        ]
    )
    report = validate_media_items(frame)
    assert not report.success
    failed = {line.split(":")[0] for line in report.failures}
    assert failed == {
        "expect_column_values_to_be_unique(media_id)",
        "expect_column_values_to_match_regex(media_id)",
        "expect_column_values_to_be_between(duration_s)",
        "expect_column_values_to_be_between(width)",
        "expect_column_values_to_not_be_null(video_codec)",
    }
