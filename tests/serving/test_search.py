"""Hybrid catalog search and similar items over real HTTP."""

from __future__ import annotations

import time
from typing import Any

import httpx
import polars as pl
import pytest

from models.lake.tables import read_table, upsert


def search(client: httpx.Client, lake: Any, **params: Any) -> httpx.Response:
    return client.get("/search", params=params, headers=lake.auth("searcher"))


def test_search_finds_by_words_and_by_meaning(client: httpx.Client, sample_lake: Any) -> None:
    words = search(client, sample_lake, q="pasta").json()
    assert words["items"][0]["media_id"] == sample_lake.media[2]
    assert "bm25" in words["items"][0]["matched_by"]
    meaning = search(client, sample_lake, q="musicians performing live", k=1).json()
    assert [hit["media_id"] for hit in meaning["items"]] == [sample_lake.media[5]]


def test_search_filters_by_genre_and_duration(client: httpx.Client, sample_lake: Any) -> None:
    nature = search(client, sample_lake, q="ocean", genre="nature").json()["items"]
    assert {hit["media_id"] for hit in nature} <= {sample_lake.media[0], sample_lake.media[4]}
    assert nature
    short = search(client, sample_lake, q="ocean", max_duration_s=600).json()["items"]
    assert [hit["media_id"] for hit in short] == [sample_lake.media[0]]
    none = search(client, sample_lake, q="ocean", genre="music", min_duration_s=1).json()["items"]
    assert all(hit["media_id"] == sample_lake.media[5] for hit in none)


def test_a_query_without_words_finds_nothing(client: httpx.Client, sample_lake: Any) -> None:
    assert search(client, sample_lake, q="?!").json()["items"] == []


@pytest.mark.parametrize(
    "params",
    [{}, {"q": ""}, {"q": "x" * 257}, {"q": "ocean", "k": 0}, {"q": "ocean", "min_duration_s": -1},
     {"q": "ocean", "min_duration_s": 100, "max_duration_s": 10}],
)  # fmt: skip
def test_bad_search_params_are_422(client: httpx.Client, sample_lake: Any, params: dict) -> None:
    assert search(client, sample_lake, **params).status_code == 422


def test_similar_fuses_content_and_co_watch(client: httpx.Client, sample_lake: Any) -> None:
    media = sample_lake.media
    response = client.get(f"/media/{media[0]}/similar", headers=sample_lake.auth("similar"))
    assert response.status_code == 200
    items = response.json()["items"]
    assert items[0]["media_id"] == media[4]  # the other ocean film, also the most co-watched
    assert items[0]["content"] is not None and items[0]["co_watch"] == 3.0
    assert media[0] not in {item["media_id"] for item in items}
    bike = next(item for item in items if item["media_id"] == media[1])
    assert bike["co_watch"] == 1.0
    assert all(item["title"] == sample_lake.titles[item["media_id"]] for item in items)


def test_similar_errors(client: httpx.Client, sample_lake: Any) -> None:
    headers = sample_lake.auth("similar-errors")
    assert client.get("/media/0123456789abcdef/similar", headers=headers).status_code == 404
    assert client.get("/media/zz/similar", headers=headers).status_code == 422
    assert client.get(f"/media/{sample_lake.media[0]}/similar?k=0", headers=headers).status_code == 422


def test_a_new_catalog_version_is_searchable_without_restart(
    client: httpx.Client, sample_lake: Any, reload_interval_s: float
) -> None:
    def word_matches() -> list[str]:
        items = search(client, sample_lake, q="zeppelin").json()["items"]
        return [hit["media_id"] for hit in items if "bm25" in hit["matched_by"]]

    assert word_matches() == []
    row = read_table(sample_lake.settings, "media_items").filter(pl.col("media_id") == sample_lake.media[3])
    recut = row.with_columns(description=pl.lit("a zeppelin over the city"))
    upsert(sample_lake.settings, "media_items", recut)
    deadline = time.monotonic() + 10 * reload_interval_s
    while not (found := word_matches()):
        assert time.monotonic() < deadline, "the new media_items version was not indexed"
        time.sleep(0.2)
    assert found == [sample_lake.media[3]]
