"""Traces through a real `gateway serve` (its HTTP process and children) to a real OTLP/HTTP
receiver on 127.0.0.1, on SQLite and on PostgreSQL: one trace per event, continuing the sender's
W3C traceparent, with spans for ingest, routing, rendering and each delivery attempt (a retry
too), and the attempt's traceparent sent on to an HTTP destination that wants it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway import tracing
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Received, Sink

SENDER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SENDER_SPAN = "00f067aa0ba902b7"


def routes(sink: Sink) -> str:
    return f"""
    version: 1
    settings: {{egress_allow: [127.0.0.0/8]}}
    sources: {{go: {{token: token-de-teste-123, dedupe: false}}}}
    destinations:
      crm: {{type: http, url: "{sink.url('/crm')}", retry: {{first: 100ms, max: 200ms}}}}
      espelho: {{type: http, url: "{sink.url('/espelho')}", traceparent: false}}
    routes:
      - name: pedido
        when: {{event_id: ORDER_CREATED}}
        send: [{{to: crm, body: '{{"id": "{{{{ data.id }}}}"}}'}}, {{to: espelho, body: '{{"id": "{{{{ data.id }}}}"}}'}}]
    """


def first_crm_refused(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
    return (503, {}, b"tente de novo", 0.0) if request.path == "/crm" and count == 1 else (200, {}, b"", 0.0)


@dataclass
class Span:
    name: str
    trace: str
    id: str
    parent: str
    process: str
    attributes: dict[str, Any]


def spans(sink: Sink) -> list[Span]:
    """Every span the receiver got, from the OTLP/HTTP protobuf requests."""
    found = []
    for request in sink.received:
        if request.path != "/v1/traces":
            continue
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource in export.resource_spans:
            process = next(a.value.string_value for a in resource.resource.attributes if a.key == "gateway.process")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}
                    found.append(Span(span.name, span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), process, attributes))
    return found


def test_one_trace_per_event_from_the_senders_span_to_every_attempt(project: Project, store_url: str) -> None:
    """The sender's trace goes on: ingest is its child, routing and rendering follow, and each
    attempt (the refused one and its retry) is a child of ingest, whichever process sends it;
    the CRM gets the attempt's traceparent, the mirror that said `traceparent: false` none."""
    sink = Sink(first_crm_refused)
    project.routes(routes(sink))
    environment = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url(""), "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "gateway-teste"}
    gateway = GatewayProcess(project.root, environment)
    gateway.database = store_url
    gateway.start()
    body = (EVENTS / "order_created.json").read_text()
    try:
        answer = gateway.post("/hooks/go?token=token-de-teste-123", body, headers={"traceparent": f"00-{SENDER_TRACE}-{SENDER_SPAN}-01"})
        assert answer.status_code == 202
        sink.wait_for(2, path="/crm")
        sink.wait_for(1, path="/espelho")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(s.name == "deliver" for s in spans(sink)) < 3:
            time.sleep(0.1)
    finally:
        gateway.terminate()
        sink.close()
    found = spans(sink)
    assert {s.trace for s in found} == {SENDER_TRACE}, found  # one trace, the sender's
    (ingest,) = [s for s in found if s.name == "ingest"]
    (route,) = [s for s in found if s.name == "route"]
    renders = [s for s in found if s.name == "render"]
    delivers = sorted((s for s in found if s.name == "deliver"), key=lambda s: (s.attributes["gateway.destination"], s.attributes["gateway.attempt"]))
    assert ingest.parent == SENDER_SPAN and ingest.process == "serve" and ingest.attributes["gateway.stored_id"] == answer.json()["id"]
    assert route.parent == ingest.id and route.process == ("ingest child" if store_url.startswith("sqlite") else "serve")
    assert sorted(r.attributes["gateway.destination"] for r in renders) == ["crm", "espelho"] and {r.parent for r in renders} == {route.id}
    assert [(d.attributes["gateway.destination"], d.attributes["gateway.attempt"], d.attributes["gateway.outcome"]) for d in delivers] == [
        ("crm", 1, "retry"), ("crm", 2, "delivered"), ("espelho", 1, "delivered"),
    ]
    assert {d.parent for d in delivers} == {ingest.id} and {d.process for d in delivers} == {"delivery child"}
    assert delivers[0].attributes["http.response.status_code"] == 503
    crm = [r for r in sink.received if r.path == "/crm"]
    assert [r.headers["traceparent"] for r in crm] == [f"00-{SENDER_TRACE}-{d.id}-01" for d in delivers[:2]]
    assert all("traceparent" not in r.headers for r in sink.received if r.path == "/espelho")


def test_without_the_otel_variables_nothing_is_traced(project: Project) -> None:
    """Off by default: no receiver is called, no traceparent is sent, the sender's is ignored."""
    sink = Sink(first_crm_refused)
    project.routes(routes(sink))
    gateway = GatewayProcess(project.root).start()
    try:
        answer = gateway.post("/hooks/go?token=token-de-teste-123", (EVENTS / "order_created.json").read_text(), headers={"traceparent": f"00-{SENDER_TRACE}-{SENDER_SPAN}-01"})
        assert answer.status_code == 202
        sink.wait_for(2, path="/crm")
    finally:
        gateway.terminate()
        sink.close()
    assert not any(r.path == "/v1/traces" for r in sink.received)
    assert all("traceparent" not in r.headers for r in sink.received)


def test_the_standard_variables_turn_traces_on_and_off() -> None:
    assert not tracing.wanted({})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.enabled()  # nothing here asked for them
