"""`python -m serving.run`: start Ray (or join RAY_ADDRESS), start Serve, run the API until Ctrl-C.

`python -m serving.run --token USER TIER` prints a bearer token instead, signed with the key the
API uses (STREAMLAKE_API_SECRET, or the local data dir's own), for trying the API by hand.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray import serve

from models.settings import Settings, get_settings, ray_runtime_env
from serving.app import APP_NAME, RELOAD_INTERVAL_S, build_app
from serving.security import tokens
from serving.security.rate_limit import DEFAULT_RATES, Rate

# A request still unanswered after this long gets a 408 from the proxy instead of hanging.
REQUEST_TIMEOUT_S = 30.0


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
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` shuts down as cleanly as Ctrl-C
    if settings.ray_address:
        ray.init(address=settings.ray_address, runtime_env=ray_runtime_env())
    else:
        ray.init(runtime_env=ray_runtime_env(), include_dashboard=False)
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
