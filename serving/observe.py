"""Each request's latency (to the response's start) per route template into /metrics, and its span,
as plain ASGI middleware.

Plain ASGI rather than Starlette's BaseHTTPMiddleware (`@app.middleware("http")`), which runs every
request through an extra task and a pair of memory streams: at the API's millisecond latencies that
overhead showed in bench_serving. Serve's access log already has one line per request.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import metrics, tracing


class Observe:
    """Time each HTTP request and record it under its route template (`unmatched` when no route
    matched), as the parent span of the spans its route opens (STREAMLAKE_OTEL_EXPORTER)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped the app
        answered: float | None = None

        async def sent(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], time.perf_counter()
            await send(message)

        method = scope["method"]
        with tracing.span(f"{method} request") as span:
            try:
                await self.app(scope, receive, sent)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")  # the router sets it in scope
                # Time to the response's start: an HLS segment's transfer to a slow client is the
                # network's time, not the API's.
                metrics.METRICS.observe(route, method, status, (answered or time.perf_counter()) - started)
                tracing.end_request(span, method, route, status)
