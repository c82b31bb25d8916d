"""The API over real HTTP: catalog rows, recommendations (champion and cold start), validation, reload."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from models.lake.tables import upsert
from models.recsys.itemknn import ItemKNN
from models.recsys.registry import champion_version, load_champion, promote_if_better, train_and_log
from models.settings import Settings, get_settings
from serving.similar import SimilarIndex
from serving.snapshots import load_catalog, load_cold_start, load_extras, read_versioned
from tests.serving.conftest import interactions, put


def test_health_reports_the_served_versions(client: httpx.Client, serving_settings: Settings) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert isinstance(body["catalog_version"], int)
    assert body["model_version"] == load_champion(serving_settings).version


def test_openapi_documents_the_routes(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert {
        "/health",
        "/metrics",
        "/media/{media_id}",
        "/media/{media_id}/playback",
        "/media/{media_id}/similar",
        "/hls/{media_id}/{path}",
        "/search",
        "/events",
        "/recommendations/{user_id}",
    } <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_an_unpublished_lake_gives_empty_snapshots_and_no_champion(
    tmp_path: Path,
) -> None:
    """What the API starts from before the pipeline has run; probing must create nothing."""
    settings = get_settings(data_dir=tmp_path / "data")
    assert load_catalog(settings).version is None
    assert load_cold_start(settings).items == []
    assert champion_version(settings) is None
    assert load_extras(settings).chapters == {}
    embeddings = read_versioned(settings, "text_embeddings", ["media_id", "embedding"])[1]
    co_watch = read_versioned(settings, "co_watch", ["media_a", "media_b", "weight"])[1]
    assert SimilarIndex.build(embeddings, co_watch).similar("0123456789abcdef", 5) == []
    assert not (tmp_path / "data").exists()


def test_media_returns_the_catalog_row_with_the_tiers_renditions(
    client: httpx.Client, sample_lake: Any
) -> None:
    media_id = sample_lake.media[1]
    response = client.get(f"/media/{media_id}", headers=sample_lake.auth())
    assert response.status_code == 200
    body = response.json()
    assert body["media_id"] == media_id
    assert body["master_playlist"] == f"{media_id}/hls/master.m3u8"
    assert [r["rung"] for r in body["renditions"]] == ["360p", "720p", "720p", "2160p"]
    assert body["subtitles"] == [{"lang": "en", "format": "webvtt", "path": f"{media_id}/subtitles/en.vtt"}]
    free = client.get(f"/media/{media_id}", headers=sample_lake.auth("free-media", "free")).json()
    assert [r["rung"] for r in free["renditions"]] == ["360p", "720p", "720p"]


def test_unknown_media_is_404_with_its_id(client: httpx.Client, sample_lake: Any) -> None:
    response = client.get("/media/0123456789abcdef", headers=sample_lake.auth())
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown media_id '0123456789abcdef'"}


@pytest.mark.parametrize("media_id", ["0123456789ABCDEF", "0123", "0123456789abcdefa", "not-hex-at-all!!"])
def test_malformed_media_id_is_422(client: httpx.Client, sample_lake: Any, media_id: str) -> None:
    response = client.get(f"/media/{media_id}", headers=sample_lake.auth())
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "media_id"]


def test_known_user_gets_the_champions_unseen_items(
    client: httpx.Client, sample_lake: Any, serving_settings: Settings
) -> None:
    body = client.get("/recommendations/u1", params={"k": 2}, headers=sample_lake.auth("u1")).json()
    assert body["source"] == "champion"
    assert body["model_version"] == load_champion(serving_settings).version
    assert [item["rank"] for item in body["items"]] == [1, 2]
    assert not {item["media_id"] for item in body["items"]} & set(sample_lake.watched["u1"])
    assert all(item["title"] == sample_lake.titles[item["media_id"]] for item in body["items"])


def test_recommendations_are_only_for_their_user(client: httpx.Client, sample_lake: Any) -> None:
    response = client.get("/recommendations/u1", headers=sample_lake.auth("u2"))
    assert response.status_code == 403


def test_items_missing_from_the_catalog_are_dropped(client: httpx.Client, sample_lake: Any) -> None:
    watched = sample_lake.watched["u2"]
    unseen = [mid for mid in sample_lake.media if mid not in watched]
    assert sample_lake.not_in_catalog not in watched  # so the champion may well rank it
    body = client.get("/recommendations/u2", params={"k": 10}, headers=sample_lake.auth("u2")).json()
    assert body["source"] == "champion"
    assert sorted(item["media_id"] for item in body["items"]) == sorted(unseen)
    assert [item["rank"] for item in body["items"]] == list(range(1, len(unseen) + 1))


def test_unknown_user_gets_the_cold_start_list(client: httpx.Client, sample_lake: Any) -> None:
    headers = sample_lake.auth("someone-new_42")
    body = client.get("/recommendations/someone-new_42", params={"k": 3}, headers=headers).json()
    assert body["source"] == "cold_start"
    assert body["model_version"] == "toppop-1"
    published = [mid for mid in sample_lake.cold_start if mid != sample_lake.not_in_catalog]
    assert [item["media_id"] for item in body["items"]] == published[:3]
    assert [item["rank"] for item in body["items"]] == [1, 2, 3]


@pytest.mark.parametrize("k", ["0", "101", "-1", "ten"])
def test_invalid_k_is_422(client: httpx.Client, sample_lake: Any, k: str) -> None:
    response = client.get("/recommendations/u1", params={"k": k}, headers=sample_lake.auth("u1"))
    assert response.status_code == 422


@pytest.mark.parametrize("user_id", ["", "a" * 65, "bad.user", "who%20me", "star*"])
def test_malformed_user_id_is_422(client: httpx.Client, sample_lake: Any, user_id: str) -> None:
    assert client.get(f"/recommendations/{user_id}", headers=sample_lake.auth()).status_code == 422


def test_a_republished_catalog_row_is_served_without_restart(
    client: httpx.Client, serving_settings: Settings, sample_lake: Any, reload_interval_s: float
) -> None:
    media_id = sample_lake.media[-1]
    headers = sample_lake.auth("republish")
    before = client.get("/health").json()["catalog_version"]
    row = client.get(f"/media/{media_id}", headers=headers).json() | {"description": "recut edition"}
    written = upsert(serving_settings, "api_catalog", [row])
    assert written.version > before
    deadline = time.monotonic() + 5 * reload_interval_s
    while client.get(f"/media/{media_id}", headers=headers).json()["description"] != "recut edition":
        assert time.monotonic() < deadline, "the new catalog version was not picked up"
        time.sleep(0.1)
    assert client.get("/health").json()["catalog_version"] == written.version


def test_exploration_gives_a_slot_to_an_unseen_title_outside_the_top(
    client: httpx.Client, sample_lake: Any
) -> None:
    headers = sample_lake.auth("u1")
    plain = client.get("/recommendations/u1", params={"k": 1}, headers=headers).json()
    assert [item["explored"] for item in plain["items"]] == [False]
    explored = client.get("/recommendations/u1", params={"k": 1, "explore": 1.0}, headers=headers).json()
    (item,) = explored["items"]
    assert item["explored"] and item["rank"] == 1
    assert item["media_id"] != plain["items"][0]["media_id"]
    assert item["media_id"] not in sample_lake.watched["u1"]
    assert explored["model_version"] == plain["model_version"]


def test_cold_users_explore_the_published_list(client: httpx.Client, sample_lake: Any) -> None:
    headers = sample_lake.auth("newcomer")
    body = client.get("/recommendations/newcomer", params={"k": 1, "explore": 1.0}, headers=headers).json()
    (item,) = body["items"]
    assert body["source"] == "cold_start" and item["explored"]
    assert item["media_id"] in set(sample_lake.cold_start[2:])  # not the top two it was swapped into


@pytest.mark.parametrize("explore", ["-0.1", "1.5", "often"])
def test_invalid_exploration_share_is_422(client: httpx.Client, sample_lake: Any, explore: str) -> None:
    response = client.get("/recommendations/u1", params={"explore": explore}, headers=sample_lake.auth("u1"))
    assert response.status_code == 422


def test_a_new_champion_is_served_without_restart(
    client: httpx.Client, serving_settings: Settings, sample_lake: Any, reload_interval_s: float
) -> None:
    """A newly promoted model that knows a new viewer takes over from the running champion."""
    headers = sample_lake.auth("u5")
    assert client.get("/recommendations/u5", headers=headers).json()["source"] == "cold_start"
    known = interactions()
    train = known.vstack(known.filter(pl.col("user_id") == "u4").with_columns(user_id=pl.lit("u5")))
    run = train_and_log(ItemKNN(neighbours=5), train, train.head(4), serving_settings)
    assert promote_if_better(serving_settings, run.model_version, replace_incomparable=True)
    deadline = time.monotonic() + 5 * reload_interval_s
    while client.get("/health").json()["model_version"] != run.model_version:
        assert time.monotonic() < deadline, "the new champion was not picked up"
        time.sleep(0.1)
    body = client.get("/recommendations/u5", headers=headers).json()
    assert (body["source"], body["model_version"]) == ("champion", run.model_version)
    assert not {item["media_id"] for item in body["items"]} & set(sample_lake.watched["u4"])


def test_qoe_demotion_moves_a_title_that_stalls_on_the_callers_device_down(
    client: httpx.Client, serving_settings: Settings, sample_lake: Any, reload_interval_s: float
) -> None:
    headers = sample_lake.auth("u1")
    plain = [i["media_id"] for i in client.get("/recommendations/u1", headers=headers).json()["items"]]
    stalls = plain[0]
    hour = datetime(2026, 1, 1, tzinfo=UTC)
    put(
        serving_settings,
        "qoe_hourly",
        [
            {
                "media_id": mid,
                "hour": hour,
                "device_class": "mobile",
                "sessions": 10,
                "qoe_score": 5.0 if mid == stalls else 95.0,
            }
            for mid in plain
        ],
    )
    demoted_on = {"device_class": "mobile", "qoe_weight": 1.0}
    deadline = time.monotonic() + 5 * reload_interval_s
    while True:
        body = client.get("/recommendations/u1", params=demoted_on, headers=headers).json()
        if body["items"][0]["media_id"] != stalls:
            break
        assert time.monotonic() < deadline, "the QoE table was not picked up"
        time.sleep(0.1)
    demoted = [i["media_id"] for i in body["items"]]
    assert sorted(demoted) == sorted(plain) and demoted[0] == plain[1]
    assert [mid for mid in demoted if mid != stalls] == plain[1:]  # the others keep their order
    elsewhere = {"device_class": "tv", "qoe_weight": 1.0}
    on_tv = client.get("/recommendations/u1", params=elsewhere, headers=headers).json()
    assert [i["media_id"] for i in on_tv["items"]] == plain  # no QoE figures for tv: no penalty


@pytest.mark.parametrize("params", [{"device_class": "fridge"}, {"qoe_weight": "2"}, {"qoe_weight": "-1"}])
def test_invalid_qoe_options_are_422(client: httpx.Client, sample_lake: Any, params: dict[str, str]) -> None:
    response = client.get("/recommendations/u1", params=params, headers=sample_lake.auth("u1"))
    assert response.status_code == 422
