"""Prometheus metrics of the API replica, served at GET /metrics in the text exposition format.

A private registry (not prometheus_client's global one) so that only what this module declares
is exposed, and importing the module twice in one process (Serve's proxy imports the app too)
never registers a metric twice. Routes are labelled by their template (`/media/{media_id}`), not
the raw path, so the number of series stays bounded whatever ids callers send.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Serve's proxy hop alone costs ~5-50 ms here (DESIGN §7), so the buckets start there.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request latency per route, rate-limit rejections per tier, the served model version."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "streamlake_request_seconds",
            "Time to answer a request, by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "streamlake_rate_limited",
            "Requests refused with 429 by the per-tier token buckets.",
            ["tier"],
            registry=self.registry,
        )
        self.model = Gauge(
            "streamlake_model_info",
            "1 for the model version the recommender serves (cold_start when there is no champion).",
            ["version"],
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.latency.labels(route, method, str(status)).observe(seconds)

    def set_model_version(self, version: str | None) -> None:
        self.model.clear()
        self.model.labels(version or "cold_start").set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# One per process, shared by the replica's middleware and its routes. Code in serving/app.py reads
# it as `metrics.METRICS` at call time: Serve ships the ingress class by value (cloudpickle), and a
# by-value method that named METRICS directly would carry a copy of its own.
METRICS = Metrics()
