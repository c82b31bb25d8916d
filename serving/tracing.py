"""OpenTelemetry spans for API requests and the calls they make (recommender, search, lake reloads).

`STREAMLAKE_OTEL_EXPORTER` picks where spans go: `none` (default), `console` (one JSON line per
span on stdout, or appended to `STREAMLAKE_OTEL_CONSOLE_FILE`) or `otlp` (OTLP over HTTP/protobuf
to the standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, default
http://localhost:4318). With `none` the OpenTelemetry SDK is never imported and `span` is a no-op,
so startup and request cost stay as they were. Each process (every Serve replica) configures itself
from its environment on first use, with its own tracer provider: the global one is left to others.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

EXPORTER_ENV = "STREAMLAKE_OTEL_EXPORTER"
CONSOLE_FILE_ENV = "STREAMLAKE_OTEL_CONSOLE_FILE"
SERVICE_NAME = "streamlake-api"
Exporter = Literal["none", "console", "otlp"]
Carrier = Mapping[str, str]  # a W3C trace context (`traceparent`) in transit between processes


class _State:
    """This process's tracer, set up once: None while tracing is off."""

    configured = False
    tracer: Tracer | None = None


def exporter_kind() -> Exporter:
    kind = os.environ.get(EXPORTER_ENV, "none").strip().lower() or "none"
    if kind not in ("none", "console", "otlp"):
        raise ValueError(f"{EXPORTER_ENV}={kind!r}: choose none, console or otlp")
    return kind  # type: ignore[return-value]


def _exporter(kind: Exporter) -> SpanExporter:
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers and timeout from the OTEL_EXPORTER_OTLP_* env
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    path = os.environ.get(CONSOLE_FILE_ENV)
    out = open(path, "a", buffering=1) if path else sys.stdout  # noqa: SIM115 (open while the process is)
    return ConsoleSpanExporter(service_name=SERVICE_NAME, out=out, formatter=_json_line)


def _json_line(span: ReadableSpan) -> str:
    """One span per line, so that several replicas can append to one file and it stays parseable."""
    return span.to_json(indent=None) + "\n"


def install(exporter: SpanExporter, batch: bool = True) -> Tracer:
    """Send this process's spans to exporter (batched off the request path unless batch is False,
    as tests want: each span is exported as it ends) and return the tracer that `span` uses."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    _State.tracer = provider.get_tracer(__name__)
    _State.configured = True
    return _State.tracer


def tracer() -> Tracer | None:
    """The process's tracer, configured from the environment on first call; None when tracing is off."""
    if not _State.configured:
        kind = exporter_kind()
        if kind != "none":
            install(_exporter(kind), batch=kind == "otlp")
        _State.configured = True
    return _State.tracer


@contextlib.contextmanager
def span(name: str, parent: Carrier | None = None, **attributes: Any) -> Iterator[Span | None]:
    """A span named name, child of the current one (the request's, inside a route), or of `parent`,
    a trace context another process sent (see context_carrier); None when tracing is off."""
    active = tracer()
    if active is None:
        yield None
        return
    context = None
    if parent:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        context = TraceContextTextMapPropagator().extract(parent)
    with active.start_as_current_span(name, context=context, attributes=attributes) as current:
        yield current


def context_carrier() -> dict[str, str]:
    """The current span's W3C trace context (`traceparent`), sent along a deployment handle call so
    the replica's span joins the request's trace; empty when tracing is off."""
    if tracer() is None:
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def end_request(current: Span | None, method: str, route: str, status: int) -> None:
    """Name the request's span after its route template (known only once routed) and record the status."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    current.update_name(f"{method} {route}")
    current.set_attributes(
        {"http.request.method": method, "http.route": route, "http.response.status_code": status}
    )
    if status >= 500:
        current.set_status(Status(StatusCode.ERROR))
