"""Prometheus metrics of the API replica, served at GET /metrics in the text exposition format.

A private registry (not prometheus_client's global one) so that only what this module declares
is exposed, and importing the module twice in one process (Serve's proxy imports the app too)
never registers a metric twice. Routes are labelled by their template (`/media/{media_id}`), not
the raw path, so the number of series stays bounded whatever ids callers send. The pipeline's
gauges (backlog, encode and ASR speed, events, drift, QoE) come from the lake through `PipelineCollector`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from models.observability.pipeline_metrics import PipelineStats

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Serve's proxy hop alone costs ~5-50 ms here (DESIGN §7), so the buckets start there.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PipelineCollector(Collector):
    """The pipeline's gauges (models/observability) from the last `PipelineStats` handed over.

    The Api replica's watcher recomputes the stats when a source table's Delta version moves, so a
    scrape only formats numbers held in memory. Nothing is exported before the first reading.
    """

    def __init__(self) -> None:
        self.stats: PipelineStats | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self.stats
        if stats is None:
            return
        yield GaugeMetricFamily(
            "streamlake_media_items", "Media items ingested (media_items rows).", stats.media_items
        )
        yield GaugeMetricFamily(
            "streamlake_transcode_backlog",
            "Ingested media items without a published video rendition yet.",
            stats.transcode_backlog,
        )
        yield _labelled(
            "streamlake_encode_fps",
            "Mean source frames encoded per second of wall time, by codec and encoder (renditions).",
            ["codec", "encoder"],
            stats.encode_fps,
        )
        yield _labelled(
            "streamlake_asr_real_time_factor",
            "Mean seconds of speech recognition per second of audio, by backend (asr_runs).",
            ["backend"],
            {(backend,): value for backend, value in stats.asr_real_time_factor.items()},
        )
        yield GaugeMetricFamily(
            "streamlake_events_ingested", "View events stored (view_events rows).", stats.events_ingested
        )
        yield GaugeMetricFamily(
            "streamlake_events_rejected",
            "View events rejected by validation (events_rejected rows).",
            stats.events_rejected,
        )
        if stats.model_drift_psi is not None:
            yield GaugeMetricFamily(
                "streamlake_model_drift_psi",
                "Largest per-feature population stability index of the latest model_drift window.",
                stats.model_drift_psi,
            )
        if stats.drift_psi_threshold is not None:
            yield GaugeMetricFamily(
                "streamlake_model_drift_psi_threshold",
                "The PSI above which the model_drift check fails (STREAMLAKE_DRIFT_PSI_THRESHOLD).",
                stats.drift_psi_threshold,
            )
        yield _labelled(
            "streamlake_qoe_score",
            "Viewer-experience score (0-100) of the latest hour in qoe_hourly, by device class.",
            ["device_class"],
            {(device_class,): value for device_class, value in stats.qoe_score.items()},
        )


def _labelled(
    name: str, documentation: str, labels: list[str], values: Mapping[tuple[str, ...], float]
) -> GaugeMetricFamily:
    """One gauge family with a series per label-value tuple, in sorted order (stable scrapes)."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family


class Metrics:
    """Request latency per route, rate-limit rejections per tier, the served model version, and the
    pipeline's gauges."""

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
        self.pipeline = PipelineCollector()
        self.registry.register(self.pipeline)

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
