"""POST /events over real HTTP: validation, exactly-once, durable acknowledgements, shutdown flush."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import polars as pl
from ray import serve

from models.lake.tables import read_table
from serving.app import EventWriter


def event(user: str, media_id: str, n: int, session: str = "s1", **changes: Any) -> dict[str, Any]:
    ts = datetime(2026, 11, 1, 10, tzinfo=UTC) + timedelta(seconds=10 * n)
    row = {
        "event_id": f"{user}-{session}-{n}",
        "user_id": user,
        "media_id": media_id,
        "session_id": f"{user}-{session}",
        "event_type": "play" if n == 0 else "heartbeat",
        "position_s": 10.0 * n,
        "ts": ts.isoformat().replace("+00:00", "Z"),
        "device": "web",
        "tier": "free",
    }
    return row | changes


def stored(settings: Any, prefix: str) -> pl.DataFrame:
    return read_table(settings, "view_events").filter(pl.col("event_id").str.starts_with(prefix))


def test_a_batch_is_stored_and_a_replay_counts_once(client: httpx.Client, sample_lake: Any) -> None:
    user = "viewer-events"
    headers = sample_lake.auth(user, "free")
    batch = {"events": [event(user, sample_lake.media[0], n) for n in range(3)]}
    first = client.post("/events", json=batch, headers=headers)
    assert first.status_code == 202
    assert first.json() == {"accepted": 3, "duplicates": 0, "rejected": 0}
    assert stored(sample_lake.settings, user).height == 3  # durable once acknowledged
    replay = client.post("/events", json=batch, headers=headers)
    assert replay.json() == {"accepted": 0, "duplicates": 3, "rejected": 0}
    assert stored(sample_lake.settings, user).height == 3


def test_invalid_rows_are_rejected_one_by_one(client: httpx.Client, sample_lake: Any) -> None:
    user = "viewer-mixed"
    rows = [
        event(user, sample_lake.media[1], 0),
        event(user, sample_lake.media[1], 1, position_s=-5),
        event(user, sample_lake.media[1], 2, event_type="rewind"),
        event(user, sample_lake.media[1], 0),  # the first row again, within the batch
    ]
    response = client.post("/events", json={"events": rows}, headers=sample_lake.auth(user, "free"))
    assert response.json() == {"accepted": 1, "duplicates": 1, "rejected": 2}
    rejected = read_table(sample_lake.settings, "events_rejected").filter(
        pl.col("event_id").str.starts_with(user)
    )
    assert set(rejected["reason"]) == {
        "position_s: negative",
        "event_type: not one of play, pause, seek, heartbeat, complete",
    }


def test_concurrent_requests_share_a_commit_with_their_own_counts(
    client: httpx.Client, sample_lake: Any
) -> None:
    users = [f"viewer-burst{i}" for i in range(4)]
    results: dict[str, dict] = {}

    def send(user: str) -> None:
        rows = [event(user, sample_lake.media[2], n) for n in range(2)]
        rows.append(event(users[0], sample_lake.media[2], 0) | {"user_id": None})  # rejected: no user
        response = client.post("/events", json={"events": rows}, headers=sample_lake.auth(user, "free"))
        results[user] = response.json()

    threads = [threading.Thread(target=send, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[user] == {"accepted": 2, "duplicates": 0, "rejected": 1} for user in users)


def test_hourly_stats_are_refreshed_for_the_touched_hours(client: httpx.Client, sample_lake: Any) -> None:
    user = "viewer-stats"
    media_id = sample_lake.media[3]
    rows = [event(user, media_id, n, ts=f"2026-11-02T07:00:{n:02d}Z") for n in range(2)]
    assert (
        client.post("/events", json={"events": rows}, headers=sample_lake.auth(user, "free")).status_code
        == 202
    )
    deadline = time.monotonic() + 10
    while True:
        stats = read_table(sample_lake.settings, "hourly_stats").filter(pl.col("media_id") == media_id)
        if stats.height:
            break
        assert time.monotonic() < deadline, "hourly_stats was not refreshed"
        time.sleep(0.1)
    assert stats["views"].to_list() == [1] and stats["hour"][0] == datetime(2026, 11, 2, 7, tzinfo=UTC)


def test_event_errors(client: httpx.Client, sample_lake: Any) -> None:
    headers = sample_lake.auth("viewer-bad", "free")
    assert client.post("/events", json={"events": []}, headers=headers).status_code == 422
    assert client.post("/events", json={"rows": [{}]}, headers=headers).status_code == 422
    assert client.post("/events", content=b"not json", headers=headers).status_code == 422
    too_many = {"events": [event("viewer-bad", sample_lake.media[0], n) for n in range(1001)]}
    assert client.post("/events", json=too_many, headers=headers).status_code == 422
    for_another = {"events": [event("somebody-else", sample_lake.media[0], 0)]}
    assert client.post("/events", json=for_another, headers=headers).status_code == 403
    assert client.post("/events", json=for_another).status_code == 401


def test_events_accepted_right_before_shutdown_are_stored(api_url: str, sample_lake: Any) -> None:
    """A writer of its own, so the shared app lives on: its replicas shut down as serve.shutdown()'s do
    (the graceful drain, then the `__del__` hook)."""
    name = f"events-drain-{uuid.uuid4().hex[:6]}"
    handle = serve.run(EventWriter.bind(sample_lake.settings, 2.0, 10_000), name=name, route_prefix=None)
    batches = [[event(f"viewer-drain{i}", sample_lake.media[4], n) for n in range(3)] for i in range(5)]
    responses = [handle.add.remote(batch) for batch in batches]
    time.sleep(0.3)  # buffered, not yet flushed (the writer's interval is 2 s)
    assert stored(sample_lake.settings, "viewer-drain").is_empty()
    deleting = threading.Thread(target=serve.delete, args=(name,))
    deleting.start()
    counts = [response.result(timeout_s=60) for response in responses]
    deleting.join()
    assert counts == [{"accepted": 3, "duplicates": 0, "rejected": 0}] * 5
    assert stored(sample_lake.settings, "viewer-drain").height == 15


def test_playback_beacons_share_the_endpoint_and_land_in_their_table(
    client: httpx.Client, sample_lake: Any
) -> None:
    user = "viewer-beacons"
    rows = [
        event(user, sample_lake.media[0], 0, event_type="load_start"),
        event(user, sample_lake.media[0], 1, event_type="first_frame", duration_ms=1200),
        event(
            user,
            sample_lake.media[0],
            2,
            event_type="rendition_switch",
            bitrate=800_000,
            width=640,
            height=360,
        ),
        event(user, sample_lake.media[0], 3, event_type="rebuffer_end"),  # no duration_ms: rejected
    ]
    for row in rows:
        del row["position_s"]
    response = client.post("/events", json={"events": rows}, headers=sample_lake.auth(user, "free"))
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": 1}
    beacons = read_table(sample_lake.settings, "playback_beacons").filter(pl.col("user_id") == user)
    assert sorted(beacons["event_type"]) == ["first_frame", "load_start", "rendition_switch"]
    assert stored(sample_lake.settings, user).is_empty()
