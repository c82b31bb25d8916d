"""Observability of the served API: /metrics after a small load (request latency per route, the
pipeline's gauges, refreshed when the lake moves) and request spans with their model-call children."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from models.lake.tables import upsert
from serving import tracing
from serving.app import OVERFETCH
from serving.observe import Observe
from tests.serving.conftest import SampleLake

PIPELINE_GAUGES = (
    "streamlake_media_items",
    "streamlake_transcode_backlog",
    "streamlake_events_ingested",
    "streamlake_events_rejected",
)


def scrape(client: httpx.Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    """/metrics as sample name -> [(labels, value)]."""
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_metrics_expose_request_latency_and_pipeline_gauges_after_a_small_load(
    client: httpx.Client, sample_lake: SampleLake
) -> None:
    headers = sample_lake.auth("observer")
    routes = {
        f"/media/{sample_lake.media[0]}": "/media/{media_id}",
        "/search?q=ocean": "/search",
        "/recommendations/observer": "/recommendations/{user_id}",
    }
    for path in routes:
        for _ in range(3):
            assert client.get(path, headers=headers).status_code == 200
    samples = scrape(client)
    for route in routes.values():
        ok = {"route": route, "method": "GET", "status": "200"}
        counts = [value for labels, value in samples["streamlake_request_seconds_count"] if labels == ok]
        assert counts and counts[0] >= 3, route
        buckets = [
            labels["le"]
            for labels, _ in samples["streamlake_request_seconds_bucket"]
            if ok.items() <= labels.items()
        ]
        assert "+Inf" in buckets, route
    for gauge in PIPELINE_GAUGES:
        assert len(samples[gauge]) == 1, gauge
    assert samples["streamlake_media_items"][0][1] == len(sample_lake.media)
    assert 0 <= samples["streamlake_transcode_backlog"][0][1] <= len(sample_lake.media)


def test_pipeline_gauges_follow_a_new_lake_version(client: httpx.Client, sample_lake: SampleLake) -> None:
    run = {"media_id": sample_lake.media[0], "model": "whisper-tiny.en (test)", "backend": "test",
           "audio_s": 10.0, "elapsed_s": 2.5, "real_time_factor": 0.25, "measured_at": None}  # fmt: skip
    upsert(sample_lake.settings, "asr_runs", [run])
    reported = ({"backend": "test"}, 0.25)
    deadline = time.monotonic() + 30
    while reported not in scrape(client).get("streamlake_asr_real_time_factor", []):
        assert time.monotonic() < deadline, "the new asr_runs version never reached /metrics"
        time.sleep(0.5)


def read_spans(spans_file: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in spans_file.read_text().splitlines() if line.strip()]


def test_a_request_span_has_the_recommender_call_as_its_child(
    client: httpx.Client, sample_lake: SampleLake, spans_file: Path
) -> None:
    """Through the real app: the Api replica writes its spans with the console exporter."""
    user = next(iter(sample_lake.watched))
    assert client.get(f"/recommendations/{user}?k=7", headers=sample_lake.auth(user)).status_code == 200
    deadline = time.monotonic() + 30
    while True:
        spans = read_spans(spans_file) if spans_file.exists() else []
        calls = [s for s in spans if s["name"] == "recommender.recommend" and s["attributes"].get("k") == 7]
        requests = {
            s["context"]["span_id"]: s for s in spans if s["name"] == "GET /recommendations/{user_id}"
        }
        parents = [requests.get(call["parent_id"]) for call in calls]
        if any(parents):
            break
        assert time.monotonic() < deadline, f"no request span with the recommender call as child in {spans}"
        time.sleep(0.5)
    request = next(p for p in parents if p)
    assert request["attributes"]["http.route"] == "/recommendations/{user_id}"
    assert request["attributes"]["http.response.status_code"] == 200
    assert request["resource"]["attributes"]["service.name"] == tracing.SERVICE_NAME


@pytest.fixture
def memory_spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """This process's spans, kept in memory (the tracer state is restored afterwards)."""
    monkeypatch.setattr(tracing._State, "configured", False)
    monkeypatch.setattr(tracing._State, "tracer", None)
    exporter = InMemorySpanExporter()
    tracing.install(exporter, batch=False)
    return exporter


def test_the_middleware_makes_route_spans_the_parents_of_their_calls(
    memory_spans: InMemorySpanExporter,
) -> None:
    """The API's own middleware on a small app: a route's span opened inside the request is its child,
    and a failing route's request span is marked an error with status 500."""
    app = FastAPI()
    app.add_middleware(Observe)

    @app.get("/recommendations/{user_id}")
    async def recommend(user_id: str) -> dict[str, str]:
        with tracing.span("recommender.recommend", k=10):
            return {"user_id": user_id}

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.get("/recommendations/u1").status_code == 200
        assert http.get("/broken").status_code == 500
    spans = {span.name: span for span in memory_spans.get_finished_spans()}
    request, call = spans["GET /recommendations/{user_id}"], spans["recommender.recommend"]
    assert call.parent is not None and call.parent.span_id == request.context.span_id
    assert call.context.trace_id == request.context.trace_id
    assert request.attributes is not None and request.attributes["http.response.status_code"] == 200
    assert spans["GET /broken"].status.status_code.name == "ERROR"


def test_tracing_is_off_by_default_and_rejects_unknown_exporters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing._State, "configured", False)
    monkeypatch.setattr(tracing._State, "tracer", None)
    monkeypatch.delenv(tracing.EXPORTER_ENV, raising=False)
    with tracing.span("anything") as span:
        assert span is None
    monkeypatch.setattr(tracing._State, "configured", False)
    monkeypatch.setenv(tracing.EXPORTER_ENV, "jaeger")
    with pytest.raises(ValueError, match="none, console or otlp"):
        tracing.tracer()


def test_a_replica_behind_a_handle_joins_the_requests_trace(
    client: httpx.Client, sample_lake: SampleLake, spans_file: Path
) -> None:
    """The trace context travels with the handle call: the Search replica's span is a child of the
    Api replica's `search.search` span, in the same trace as the request."""
    response = client.get("/search", params={"q": "ocean", "k": 9}, headers=sample_lake.auth("tracer"))
    assert response.status_code == 200
    deadline = time.monotonic() + 30
    while True:
        spans = read_spans(spans_file) if spans_file.exists() else []
        by_id = {s["context"]["span_id"]: s for s in spans}
        remote = [s for s in spans if s["name"] == "Search.search" and s["attributes"]["n"] == 9 * OVERFETCH]
        calls = [by_id.get(s["parent_id"]) for s in remote]
        # The request's span ends, and is written, after the answer has gone: wait for it too.
        if any(call and call["name"] == "search.search" and call["parent_id"] in by_id for call in calls):
            break
        assert time.monotonic() < deadline, f"no Search.search span under the Api's call in {spans}"
        time.sleep(0.5)
    call = next(c for c in calls if c and c["name"] == "search.search" and c["parent_id"] in by_id)
    request = by_id[call["parent_id"]]
    assert request["name"] == "GET /search"
    assert {s["context"]["trace_id"] for s in (request, call, remote[calls.index(call)])} == {
        request["context"]["trace_id"]
    }
