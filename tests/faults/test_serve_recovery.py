"""Serve replicas killed under bounded load (this module runs last against the shared app).

The Api replica is killed while a client sends a steady trickle of reads: the figure is how long
until it answers again, and every answer after that must be right. The EventWriter replica is killed
while events are posted: an acknowledged (202) batch is durable by contract, so every one of them
must be in view_events afterwards, and the producer's retries of the refused batches complete the
set with each event stored once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import polars as pl
import pytest
import ray

from models.lake.tables import read_table
from serving.app import APP_NAME

pytestmark = pytest.mark.faults

RATE_HZ = 10.0  # bounded load: one request every 100 ms
KILL_AFTER_S = 1.0
RECOVERY_LIMIT_S = 90.0
HEALTHY_STREAK = 10  # answers in a row that count as recovered
EVENTS_PER_BATCH = 20
CLIENT_TIMEOUT_S = 10.0


def _replicas(deployment: str) -> set[str]:
    prefix = f"SERVE_REPLICA::{APP_NAME}#{deployment}#"
    return {
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)
    }


def _kill_replica(deployment: str) -> str:
    """End one replica actor as a crash would (Ray does not restart it: Serve's controller must)."""
    name = sorted(_replicas(deployment))[0]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


def _wait_replaced(deployment: str, killed: str) -> None:
    """Proof the kill happened and was healed: a replica other than the killed one serves."""
    deadline = time.monotonic() + RECOVERY_LIMIT_S
    while not _replicas(deployment) - {killed}:
        assert time.monotonic() < deadline, f"{deployment} was not replaced"
        time.sleep(0.2)
    assert killed not in _replicas(deployment)


@dataclass
class Load:
    """Requests sent at RATE_HZ, one at a time, until a healthy streak follows the kill."""

    send: Callable[[int], bool]
    results: list[tuple[float, float, bool]] = field(default_factory=list)  # (sent, answered, ok)
    killed_at: float = 0.0

    def run(self, kill: Callable[[], None]) -> float:
        """Seconds from the kill until the first answer of the healthy streak that ends the run."""
        started = time.monotonic()
        for n in itertools.count():
            if not self.killed_at and time.monotonic() - started >= KILL_AFTER_S:
                kill()
                self.killed_at = time.monotonic()
            sent = time.monotonic()
            ok = self.send(n)
            self.results.append((sent, time.monotonic(), ok))
            after = self.after_kill()
            if len(after) >= HEALTHY_STREAK and all(ok for _, _, ok in after[-HEALTHY_STREAK:]):
                failed = [i for i, (_, _, ok) in enumerate(after) if not ok]
                return after[failed[-1] + 1 if failed else 0][1] - self.killed_at
            if time.monotonic() - started > RECOVERY_LIMIT_S:
                return float("inf")
            time.sleep(max(0.0, 1 / RATE_HZ - (time.monotonic() - sent)))
        raise AssertionError("unreachable")

    def after_kill(self) -> list[tuple[float, float, bool]]:
        return [r for r in self.results if self.killed_at and r[0] >= self.killed_at]

    def figures(self, prefix: str, recovery_s: float) -> dict[str, int]:
        """Counters for the collector: requests, failures, the outage and the slowest answer (ms)."""
        after = self.after_kill()
        return {
            f"{prefix}_requests": len(self.results),
            f"{prefix}_failed_requests": sum(not ok for _, _, ok in self.results),
            f"{prefix}_answers_again_ms": round(recovery_s * 1000) if recovery_s < RECOVERY_LIMIT_S else -1,
            f"{prefix}_slowest_answer_ms": round(
                max((done - sent for sent, done, _ in after), default=0) * 1000
            ),
        }


def _get(client: httpx.Client, path: str, headers: dict[str, str]) -> bool:
    try:
        return client.get(path, headers=headers, timeout=CLIENT_TIMEOUT_S).status_code == 200
    except httpx.TransportError:
        return False


def _kill_and_watch(deployment: str, load: Load) -> float:
    """Run the load with one replica of deployment killed; seconds until it answers again."""
    killed: list[str] = []
    recovery_s = load.run(lambda: killed.append(_kill_replica(deployment)))
    _wait_replaced(deployment, killed[0])
    return recovery_s


def test_a_killed_api_replica_is_replaced_and_answers_again(
    client: httpx.Client, sample_lake: Any, faults: Any
) -> None:
    headers = sample_lake.auth("recovery-reader")
    load = Load(lambda _: _get(client, f"/media/{sample_lake.media[0]}", headers))
    recovery_s = _kill_and_watch("Api", load)
    faults.record(
        "replica kills",
        survived=recovery_s < RECOVERY_LIMIT_S,
        note=f"Api replica not back in {RECOVERY_LIMIT_S:.0f} s",
        **load.figures("api", recovery_s),
    )
    assert recovery_s < RECOVERY_LIMIT_S


def test_a_killed_event_writer_loses_no_acknowledged_event(
    client: httpx.Client, sample_lake: Any, faults: Any
) -> None:
    user = "recovery-producer"
    headers = sample_lake.auth(user)
    acked: set[int] = set()
    refused: list[int] = []

    def post(n: int) -> bool:
        rows = [
            {
                "event_id": f"{user}-{n}-{i}",
                "user_id": user,
                "media_id": sample_lake.media[2],
                "session_id": f"{user}-{n}",
                "event_type": "heartbeat",
                "position_s": float(i),
                "ts": "2026-11-01T10:00:00Z",
            }
            for i in range(EVENTS_PER_BATCH)
        ]
        try:
            response = client.post(
                "/events", json={"events": rows}, headers=headers, timeout=CLIENT_TIMEOUT_S
            )
            ok = response.status_code == 202
        except httpx.TransportError:
            ok = False
        (acked.add if ok else refused.append)(n)
        return ok

    def stored() -> pl.DataFrame:
        events = read_table(sample_lake.settings, "view_events", columns=["event_id"])
        return events.filter(pl.col("event_id").str.starts_with(f"{user}-"))

    load = Load(post)
    recovery_s = _kill_and_watch("EventWriter", load)
    lost = len(acked - {int(i.rsplit("-", 2)[1]) for i in stored()["event_id"]}) * EVENTS_PER_BATCH
    failed_retries = [n for n in list(refused) if not post(n)]  # the producer retries what was refused
    held = stored()
    complete = held.height == len(load.results) * EVENTS_PER_BATCH == held["event_id"].n_unique()
    faults.record(
        "replica kills",
        survived=recovery_s < RECOVERY_LIMIT_S and not lost and not failed_retries and complete,
        lost=lost,
        note=f"EventWriter: back in {recovery_s:.1f} s, {lost} acked events lost, "
        f"{len(failed_retries)} retries failed, {held.height} events stored",
        **load.figures("event_writer", recovery_s),
    )
    assert lost == 0, "acknowledged events are missing"
    assert recovery_s < RECOVERY_LIMIT_S and not failed_retries and complete
