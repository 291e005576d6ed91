"""Traces (OpenTelemetry), off by default: one trace per event, from ingest through routing and
rendering to every delivery attempt, across the gateway's processes and across retries.

On with the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_BSP_*`, ...) and the `otel`
extra installed (`pip install 'go-webhook-gateway[otel]'`); `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none` keeps it off. The trace crosses processes as W3C `traceparent`
text: the sender's is continued at ingest, the ingest span's travels to the ingest child and is
stored with each delivery, each attempt's span is sent on to HTTP destinations (their
`traceparent: false` keeps it). Off, every function here costs a flag test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

log = logging.getLogger("gateway.tracing")
_tracer: Any = None  # the OpenTelemetry tracer once tracing is on; None: off


def enabled() -> bool:
    return _tracer is not None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces (the standard OTEL_* variables)."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or environ.get("OTEL_TRACES_EXPORTER", "").lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup(process: str, environ: Mapping[str, str] | None = None) -> bool:
    """Turn traces on in this process when the environment asks (each of serve's processes
    calls it); a missing SDK is a warning, never a failed start."""
    global _tracer
    if not wanted(os.environ if environ is None else environ):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: pip install 'go-webhook-gateway[otel]'; no traces")
        return False
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "go-gateway"), "gateway.process": process})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("gateway")
    return True


def shutdown() -> None:
    """Export what is still buffered (at a clean stop)."""
    if _tracer is not None:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if hasattr(provider, "shutdown"):
            provider.shutdown()


OFF = nullcontext()  # what a span is while tracing is off: entered and left at no cost (hot paths use it
# directly, so that not even a span's attributes are built)


def span(name: str, parent: str | None = None, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A span, child of `parent` (a traceparent text) or of the current span; None when off."""
    return OFF if _tracer is None else _span(name, parent, attributes)


@contextmanager
def _span(name: str, parent: str | None, attributes: Mapping[str, Any] | None) -> Iterator[Any]:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract({"traceparent": parent}) if parent else None
    with _tracer.start_as_current_span(name, context=context, attributes=dict(attributes or {})) as current:
        yield current


def traceparent() -> str | None:
    """The current span as W3C traceparent text (what crosses to another process or receiver)."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def note(current: Any, **attributes: Any) -> None:
    """Attributes learnt as the span goes (an attempt's outcome); nothing when off."""
    if current is not None:
        current.set_attributes({k: v for k, v in attributes.items() if v is not None})
