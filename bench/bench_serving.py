"""HTTP latency and throughput of the Serve API (/recommendations and /media/{id}/playback) at 1, 8
and 32 concurrent clients, against the same handlers on plain FastAPI + uvicorn in the same run.

Ours is the real application: Ray (local, 2 CPUs) and Serve started by serving.run.init_ray and
start, as the serving tests do, behind its default HAProxy ingress, over a published lake: the
tests' sample lake built in a temp dir, or `--data-dir` (a lake `make demo` materialized). The
baseline is that very FastAPI object (serving.app.api: the same routes, middleware, Api methods, its
Catalog and Recommender) on one uvicorn worker in its own process, with Serve's per-replica `self`
overridden to an Api built in that process: what differs is exactly what Serve adds (ingress,
router, replica). The baseline runs first, alone; Ray starts after it is gone, once behind Serve's
Python proxy (8 clients only, for the record) and then behind HAProxy.

The load generator is closed-loop: N clients on one uvloop, each with one keep-alive HTTP/1.1
connection (TCP_NODELAY, loopback only) sending its next request as soon as the last one is
answered, for a fixed time after a warm-up; a request unanswered after --timeout counts as a
timeout. Throughput cells use premium tokens at an unlimited rate (a bind argument), so the rate
limiter runs but never refuses; the overload cell sends 32 clients at one free-tier user (the
production 10/min) and counts 429s against timeouts. ratio = ours / baseline 2xx req/s at 8
clients, the lower of the two endpoints. Fails loudly if the two servers answer the same request
differently (signed-URL expiry and signature aside).
Run from the repository root: `python bench/bench_serving.py [--quick] [--data-dir data]`.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvloop
from _result import run_stamp, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from models.recsys.registry import load_champion  # noqa: E402
from models.settings import Settings, get_settings, ray_runtime_env  # noqa: E402
from serving.run import free_port  # noqa: E402
from serving.security import tokens  # noqa: E402
from serving.security.rate_limit import DEFAULT_RATES, Rate  # noqa: E402
from serving.snapshots import load_catalog  # noqa: E402
from tests.serving.conftest import build_sample_lake  # noqa: E402

LOOPBACK = "127.0.0.1"
CONCURRENCY = (1, 8, 32)
OVERLOAD_CLIENTS = 32
K = 10
# Premium unlimited for the throughput cells; free keeps the production limit for the overload cell.
RATES = {**DEFAULT_RATES, "premium": Rate(10**9)}
THROUGHPUT_TIER, OVERLOAD_TIER = "premium", "free"
PATHS: dict[str, Callable[[str, str], str]] = {
    "recommendations": lambda user, media: f"/recommendations/{user}?k={K}",
    "playback": lambda user, media: f"/media/{media}/playback",
}
GOAL = {"p99_ms_at_8_clients": 50.0, "throughput_ratio_at_8_clients": 0.8, "overload_timeouts": 0}
STARTUP_TIMEOUT_S = 180.0
TIMEOUT_STATUSES = {408, 504}  # the proxy's request timeout, a gateway's: a timeout all the same
# Signed URLs carry their expiry and signature, both of which move with the clock.
VOLATILE = re.compile(r"\b(exp|sig)=[^&\"]*")


@dataclass(frozen=True)
class Lake:
    """A published lake and whom to ask about what in it."""

    settings: Settings
    users: list[str]  # the champion's, so /recommendations ranks rather than reads the cold-start list
    media: list[str]
    source: str

    def token(self, user: str, tier: str = THROUGHPUT_TIER) -> str:
        return tokens.issue(user, tier, tokens.api_secret(self.settings))


def open_lake(settings: Settings, source: str) -> Lake:
    catalog = load_catalog(settings)
    try:
        users = sorted(load_champion(settings).known_users)[:OVERLOAD_CLIENTS]
    except LookupError:
        users = []
    if not catalog.rows or not users:
        sys.exit(f"{settings.data_dir} has no published api_catalog or no champion: run `make demo`")
    return Lake(settings, users, sorted(catalog.rows), source)


# --- the load generator ------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection with TCP_NODELAY: a client that reuses its socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self.reusable = True

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request, read the whole answer (Content-Length or chunked); status and body."""
        self._writer.write(raw)
        head = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            body = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = await self._chunked()
        else:
            raise ValueError(f"answer {status} has neither Content-Length nor chunked encoding")
        self.reusable = headers.get("connection") != "close"
        return status, body

    async def _chunked(self) -> bytes:
        parts = []
        while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await self._reader.readexactly(size + 2))[:-2])
        while await self._reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
            pass
        return b"".join(parts)

    def close(self) -> None:
        self._writer.close()


def http_get(port: int, path: str, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()


@dataclass
class Cell:
    """What one server answered one endpoint at one concurrency, inside the measured window."""

    clients: int
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    timeouts: int = 0  # no answer within --timeout
    errors: Counter[str] = field(default_factory=Counter)  # connection errors, malformed answers

    @property
    def ok_per_s(self) -> float:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300) / self.duration_s

    def summary(self) -> dict[str, Any]:
        latencies = np.array(self.latencies_ms or [float("nan")])
        quantiles = {f"p{q}_ms": round(float(np.percentile(latencies, q)), 2) for q in (50, 95, 99)}
        answered = sum(self.statuses.values())
        return {
            "clients": self.clients,
            "req_per_s": round(self.ok_per_s, 1),
            **quantiles,
            "max_ms": round(float(latencies.max()), 2),
            "requests": answered + self.timeouts + sum(self.errors.values()),
            "statuses": {str(status): n for status, n in sorted(self.statuses.items())},
            "timeouts": self.timeouts,
            # anything but a 200: other statuses, timeouts, connection errors
            "errors": answered - self.statuses.get(200, 0) + self.timeouts + sum(self.errors.values()),
            "error_kinds": dict(self.errors),
        }


async def drive(
    port: int, plans: list[list[bytes]], warmup_s: float, duration_s: float, timeout_s: float
) -> Cell:
    """One client per plan, each cycling through its requests back to back until the time is up;
    requests started during the warm-up are sent but not counted."""
    cell = Cell(len(plans), duration_s)
    measure_from = time.perf_counter() + warmup_s
    stop = measure_from + duration_s

    async def client(plan: list[bytes]) -> None:
        connection: Connection | None = None
        for raw in itertools.cycle(plan):
            started = time.perf_counter()
            if started >= stop:
                break
            measured = started >= measure_from
            try:
                async with asyncio.timeout(timeout_s):
                    connection = connection or await Connection.open(port)
                    status, _ = await connection.request(raw)
            except TimeoutError:
                if measured:
                    cell.timeouts += 1
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as err:
                if measured:
                    cell.errors[type(err).__name__] += 1
                await asyncio.sleep(0.01)  # a refused connection must not spin
            else:
                if measured:
                    cell.latencies_ms.append((time.perf_counter() - started) * 1000)
                    cell.statuses[status] += 1
                if connection.reusable:
                    continue
            if connection is not None:  # after a failure or `Connection: close`: start afresh
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    await asyncio.gather(*(client(plan) for plan in plans))
    return cell


def throughput_plans(lake: Lake, port: int, endpoint: str, clients: int) -> list[list[bytes]]:
    """Client i is user i (mod the champion's users); playback clients walk the catalog from item i."""
    plans = []
    for i in range(clients):
        user = lake.users[i % len(lake.users)]
        token = lake.token(user)
        media = lake.media[i % len(lake.media) :] + lake.media[: i % len(lake.media)]
        paths = dict.fromkeys(PATHS[endpoint](user, m) for m in media)  # one, for /recommendations
        plans.append([http_get(port, path, token) for path in paths])
    return plans


def overload_plans(lake: Lake, port: int) -> list[list[bytes]]:
    """Every client is the same free-tier user: one bucket, far more demand than its rate."""
    user = lake.users[0]
    request = http_get(port, PATHS["recommendations"](user, lake.media[0]), lake.token(user, OVERLOAD_TIER))
    return [[request]] * OVERLOAD_CLIENTS


# --- the two servers ---------------------------------------------------------------------------


def wait_healthy(port: int, server: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"http://{LOOPBACK}:{port}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server is not None and server.poll() is not None:
            sys.exit(f"the plain uvicorn server exited with {server.returncode}")
        if time.monotonic() > deadline:
            sys.exit(f"no healthy answer on port {port} in {STARTUP_TIMEOUT_S} s")
        time.sleep(0.2)


@contextmanager
def ray_serve(settings: Settings, ingress: str) -> Iterator[int]:
    """The real app, as the serving tests start it: Ray (local, 2 CPUs) and Serve on a free port,
    behind `ingress` (haproxy or Serve's Python proxy: STREAMLAKE_SERVE_INGRESS)."""
    import ray
    from ray import serve

    from serving.run import init_ray, start

    update = {"serve_host": LOOPBACK, "serve_port": free_port(), "serve_ingress": ingress}
    settings = settings.model_copy(update=update)
    # The replicas' logs stay in their files: streamed here they would take the load generator's CPU.
    init_ray(settings, num_cpus=2, log_to_driver=False)
    try:
        start(settings, rates=RATES)
        wait_healthy(settings.serve_port)
        yield settings.serve_port
    finally:
        serve.shutdown()
        ray.shutdown()


@contextmanager
def plain_uvicorn(settings: Settings) -> Iterator[int]:
    """The baseline in its own process (see _serve_plain), with the environment Ray gives replicas."""
    port = free_port()
    env = {**os.environ, **ray_runtime_env()["env_vars"], "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--plain-server", str(settings.data_dir), str(port)]
    server = subprocess.Popen(command, env=env)
    try:
        wait_healthy(port, server)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


class Unused:
    """For the deployments the benchmarked routes never call (Search, Similar, EventWriter)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"the plain baseline serves no route that needs {name}")


async def _construct(cls: type, *args: Any) -> Any:
    """A deployment's own class, built here the way Serve builds a replica (its __init__ is async)."""
    instance = cls.__new__(cls)
    await instance.__init__(*args)
    return instance


def _servable_dependency(app: Any) -> Callable[..., Any]:
    """serve.ingress gives every route method `self=Depends(<the replica's instance>)`: that callable."""
    routes = list(app.routes)
    while routes:
        route = routes.pop()
        routes += getattr(getattr(route, "original_router", None), "routes", [])
        if hasattr(route, "endpoint") and "self" in (
            parameters := inspect.signature(route.endpoint).parameters
        ):
            return parameters["self"].default.dependency
    raise LookupError("no class-based route in the app")


async def _serve_plain(settings: Settings, port: int) -> None:
    """serving.app.api on one uvicorn worker, the deployments as local objects, no Ray at all."""
    import uvicorn

    from serving import app as served

    api_class = served.Api.func_or_class.__bases__[0]  # serve.ingress subclasses the class it wraps
    unused = Unused()
    ingress = await _construct(api_class, settings, RATES, served.RELOAD_INTERVAL_S, unused, unused, unused)
    served.api.dependency_overrides[_servable_dependency(served.api)] = lambda: ingress
    # No access log: Serve's replicas write theirs to files, so it is counted in ours.
    config = uvicorn.Config(served.api, host=LOOPBACK, port=port, access_log=False, log_level="warning")
    await uvicorn.Server(config).serve()


# --- the run -----------------------------------------------------------------------------------


def comparable(body: dict[str, Any]) -> Any:
    """The answer without what moves with the clock (signed URLs' expiry and signature)."""
    body = {key: value for key, value in body.items() if key != "expires_at"}
    return json.loads(VOLATILE.sub(r"\1=*", json.dumps(body)))


def sample_answers(lake: Lake, port: int) -> dict[str, Any]:
    """One answer per endpoint for the same request, to hold the two servers' against each other."""
    user = lake.users[0]
    answers = {}
    for endpoint, path in PATHS.items():
        response = httpx.get(
            f"http://{LOOPBACK}:{port}{path(user, lake.media[0])}",
            headers={"Authorization": f"Bearer {lake.token(user)}"},
            timeout=30,
        )
        if response.status_code != 200:
            sys.exit(f"{endpoint} answered {response.status_code}: {response.text[:500]}")
        answers[endpoint] = comparable(response.json())
    return answers


@dataclass(frozen=True)
class Load:
    warmup_s: float
    duration_s: float
    timeout_s: float

    def run(self, port: int, plans: list[list[bytes]]) -> Cell:
        return uvloop.run(drive(port, plans, self.warmup_s, self.duration_s, self.timeout_s))


def measure(
    server: str, lake: Lake, port: int, load: Load, concurrency: tuple[int, ...] = CONCURRENCY
) -> dict[str, dict[int, Cell]]:
    cells: dict[str, dict[int, Cell]] = {}
    for endpoint in PATHS:
        for clients in concurrency:
            cell = load.run(port, throughput_plans(lake, port, endpoint, clients))
            cells.setdefault(endpoint, {})[clients] = cell
            print(server, endpoint, json.dumps(cell.summary()), flush=True)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="a materialized data dir (default: the sample lake)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds before a request is a timeout")
    parser.add_argument("--quick", action="store_true", help="2 s cells after 0.5 s warm-ups")
    args = parser.parse_args()
    load = Load(0.5, 2.0, args.timeout) if args.quick else Load(args.warmup, args.duration, args.timeout)
    with tempfile.TemporaryDirectory() as scratch:
        if args.data_dir:
            lake = open_lake(get_settings(data_dir=args.data_dir.resolve()), str(args.data_dir))
        else:
            sample = build_sample_lake(Path(scratch) / "data")
            lake = open_lake(sample.settings, "tests/serving/conftest.py build_sample_lake (temp dir)")
        with plain_uvicorn(lake.settings) as port:
            baseline_answers = sample_answers(lake, port)
            baseline = measure("baseline", lake, port, load)
        with ray_serve(lake.settings, "proxy") as port:
            proxy = measure("ours via Serve's proxy", lake, port, load, concurrency=(8,))
        with ray_serve(lake.settings, "haproxy") as port:
            ours_answers = sample_answers(lake, port)
            for endpoint, answer in ours_answers.items():
                if answer != baseline_answers[endpoint]:
                    sys.exit(
                        f"{endpoint}: the servers answer differently\nours     {answer}\n"
                        f"baseline {baseline_answers[endpoint]}"
                    )
            ours = measure("ours", lake, port, load)
            overload = load.run(port, overload_plans(lake, port))
            print("ours overload", json.dumps(overload.summary()), flush=True)
    report(lake, load, args.quick, ours, baseline, proxy, overload)


def report(
    lake: Lake,
    load: Load,
    quick: bool,
    ours: dict[str, dict[int, Cell]],
    baseline: dict[str, dict[int, Cell]],
    proxy: dict[str, dict[int, Cell]],
    overload: Cell,
) -> None:
    ratios = {endpoint: ours[endpoint][8].ok_per_s / baseline[endpoint][8].ok_per_s for endpoint in PATHS}
    worst = min(ratios, key=ratios.__getitem__)
    p99_at_8 = {endpoint: ours[endpoint][8].summary()["p99_ms"] for endpoint in PATHS}
    overload_summary = overload.summary()
    timed_out = overload.timeouts + sum(overload.statuses[status] for status in TIMEOUT_STATUSES)
    result = {
        "name": "serving_http",
        "ours": round(ours[worst][8].ok_per_s, 1),
        "baseline": round(baseline[worst][8].ok_per_s, 1),
        "ratio": round(ratios[worst], 3),
        "unit": (
            f"2xx req/s at 8 clients on {worst}, the endpoint with the lower ours/baseline ratio "
            "(ours: the Ray Serve app behind HAProxy; baseline: the same FastAPI app and handlers on one "
            "uvicorn worker; cells also hold ours behind Serve's Python proxy at 8 clients)"
        ),
        **run_stamp(),
        "params": {
            "quick": quick,
            "warmup_s": load.warmup_s,
            "duration_s": load.duration_s,
            "timeout_s": load.timeout_s,
            "concurrency": list(CONCURRENCY),
            "lake": {
                "source": lake.source,
                "champion_users": len(lake.users),
                "catalog_items": len(lake.media),
            },
            "requests": {endpoint: path("{user}", "{media_id}") for endpoint, path in PATHS.items()},
            "client": "closed loop, one keep-alive HTTP/1.1 connection per client, TCP_NODELAY, uvloop",
            "tiers": {
                "throughput": f"{THROUGHPUT_TIER}, unlimited rate",
                "overload": f"{OVERLOAD_TIER}, 10/min",
            },
            "cells": {
                endpoint: {
                    str(clients): {
                        "ours": ours[endpoint][clients].summary(),
                        "baseline": baseline[endpoint][clients].summary(),
                        **(
                            {"ours_via_serve_proxy": proxy[endpoint][clients].summary()}
                            if clients in proxy[endpoint]
                            else {}
                        ),
                    }
                    for clients in CONCURRENCY
                }
                for endpoint in PATHS
            },
            "throughput_ratio_at_8_clients": {
                endpoint: round(ratio, 3) for endpoint, ratio in ratios.items()
            },
            "overload": {
                **overload_summary,
                "endpoint": "recommendations",
                "rate_limited_429": overload.statuses[429],
                "timed_out": timed_out,
            },
            "goal": GOAL,
            "goals_met": {
                "p99_ms_at_8_clients": all(p99 < GOAL["p99_ms_at_8_clients"] for p99 in p99_at_8.values()),
                "throughput_ratio_at_8_clients": ratios[worst] >= GOAL["throughput_ratio_at_8_clients"],
                "overload_429s_not_timeouts": overload.statuses[429] > 0 and timed_out == 0,
            },
            "responses_identical": True,
            "baseline_setup": (
                "serving.app.api in its own process, Serve's `self` dependency overridden to an Api built "
                "there; uvicorn without access log; "
                "OMP_NUM_THREADS=1 as Ray gives replicas; run before Ray starts"
            ),
        },
    }
    out = ROOT / "bench" / "results" / "serving.json"
    write_result(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--plain-server":
        uvloop.run(_serve_plain(get_settings(data_dir=Path(sys.argv[2])), int(sys.argv[3])))
    else:
        main()
