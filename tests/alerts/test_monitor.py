"""The alert monitor on a controlled clock, against a real store and a real receiver on 127.0.0.1:
every kind of incident opens once and recovers once, on SQLite with one gateway and on
PostgreSQL with three replicas checking at the same moments; a notice that cannot be sent is
kept with its error and sent later, never alerted about; and through a real `gateway serve`, a
receiver that fails gets its operator a notice, then the recovery."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.alerts.monitor import AlertMonitor
from gateway.config import Config, load_config
from gateway.delivery.client import delivery_client
from gateway.delivery.metrics import DeliveryMetrics
from gateway.store import Store, open_store
from gateway.store.base import DEAD, AttemptResult, DeliveryFilter, DestinationHold, NewDelivery, NewEvent
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Received, Sink, always

pytestmark = pytest.mark.anyio
T0 = 1_765_000_000.0
ROUTES = """
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: token-de-teste-123, dedupe: false}}}}
destinations:
  crm: {{type: http, url: "{sink}/crm"}}
  espelho: {{type: http, url: "{sink}/espelho{version}"}}
  avisos: {{type: http, url: "{sink}/avisos"}}
routes:
  - name: pedido
    when: {{event_id: ORDER_CREATED}}
    send: [{{to: crm, body: '{{"id": "{{{{ data.id }}}}"}}'}}, {{to: espelho, body: '{{"id": "{{{{ data.id }}}}"}}'}}]
alerts:
  to: avisos
  console_url: https://gw.loja.com.br
  failing_for: 10m
  dead_over: 2
  pending_older_than: 30m
"""
KINDS = ["circuit_open", "dead_over", "edit_refused", "failing", "gone", "pending_old"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Replica:
    """One gateway's view: its engine's metrics, its refused edit, its monitor."""

    store: Store
    monitor: AlertMonitor
    metrics: DeliveryMetrics = field(default_factory=DeliveryMetrics)
    refused: list[str] = field(default_factory=list)


def notices(sink: Sink) -> Counter[tuple[str, str]]:
    return Counter((r.json()["alert"], r.json()["state"]) for r in sink.received if r.path == "/avisos")


def write_routes(root: Path, sink: Sink, version: str = "") -> Config:
    (root / "routes.yaml").write_text(ROUTES.format(sink=sink.url(""), version=version))
    return load_config(root / "routes.yaml", {})


async def replicas(stack: AsyncExitStack, stores: list[Store], config: Callable[[], Config], clock: Clock) -> list[Replica]:
    found = []
    for store in stores:
        await store.open()
        stack.push_async_callback(store.close)
        replica = Replica(store, None)  # type: ignore[arg-type]

        async def metrics(replica: Replica = replica) -> bytes:
            return replica.metrics.render()

        replica.monitor = AlertMonitor(store, config, metrics, lambda replica=replica: tuple(replica.refused), clock)  # type: ignore[misc]
        found.append(replica)
    return found


async def store_problems(store: Store, now: float) -> list[str]:
    """Three dead deliveries (over dead_over: 2) and one pending since an hour ago."""
    for number in range(4):
        delivery = NewDelivery(f"d{number}", "pedido", "crm", "{}", "pending")
        await store.add_event(NewEvent(f"e{number}", "go", "ORDER_CREATED", "{}", now - 3600, "v1", (delivery,)))
    for number in range(3):
        await store.record_attempt(AttemptResult(f"d{number}", now, 5.0, "dead", 400, "recusado", "HTTP 400"), now)
    return ["d0", "d1", "d2", "d3"]


async def clear_problems(store: Store, ids: list[str], now: float) -> None:
    """Replayed and delivered: nothing dead, nothing pending."""
    await store.requeue(DeliveryFilter(statuses=(DEAD,)), now)
    for delivery_id in ids:
        await store.record_attempt(AttemptResult(delivery_id, now, 5.0, "delivered", 200, "ok", None), now)


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], list[Store]]:
    """One SQLite gateway, or three replicas on one PostgreSQL database."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        return lambda: [open_store(url) for _ in range(3)]
    return lambda: [open_store(f"sqlite:///{tmp_path / 'gateway.db'}")]


async def test_each_kind_fires_once_per_incident_and_recovers_once(tmp_path: Path, stores: Callable[[], list[Store]]) -> None:
    """Every kind opens once when its condition holds, whatever the number of replicas and of
    checks; a replica that sees nothing of a failing destination does not resolve it; each
    resolves once when it clears, with a recovery notice."""
    sink = Sink(always(200))
    clock = Clock()
    config = {"now": write_routes(tmp_path, sink)}
    async with AsyncExitStack() as stack:
        stack.callback(sink.close)
        gateway = await replicas(stack, stores(), lambda: config["now"], clock)
        client = await stack.enter_async_context(delivery_client(lambda: config["now"].egress_allow))
        first = gateway[0]

        async def check_all() -> None:  # every replica at the same moment
            await asyncio.gather(*(replica.monitor.check(client) for replica in gateway))

        await check_all()
        assert notices(sink) == Counter()  # nothing wrong yet
        ids = await store_problems(first.store, clock.now)
        first.metrics.note_health("crm", False, clock.now)  # only the first replica's engine sends to crm
        first.metrics.circuit_open.labels("crm", "").set(1)
        first.metrics.destination_stopped.labels("espelho", "").set(1)
        await first.store.hold_destination(DestinationHold("espelho", gone="HTTP 410", config_version=config["now"].version))
        for replica in gateway:
            replica.refused.append("routes.yaml:3:1: unknown top-level key 'rotas' (did you mean 'routes'?)")
        await check_all()
        clock.now += 601  # the failing run passes failing_for
        await check_all()
        await check_all()
        assert notices(sink) == Counter({(kind, "opened"): 1 for kind in KINDS})
        assert len(await first.store.incidents()) == 6

        clock.now += 60  # the others see no success to crm: it stays open
        for replica in gateway[1:]:
            replica.metrics.note_health("espelho", True, clock.now)
            await replica.monitor.check(client)
        assert all(state == "opened" for _, state in notices(sink))

        clock.now += 60  # everything clears: crm answers, espelho changed in routes.yaml, the queue drained, the edit fixed
        first.metrics.note_health("crm", True, clock.now)
        first.metrics.circuit_open.labels("crm", "").set(0)
        first.metrics.destination_stopped.labels("espelho", "").set(0)
        config["now"] = write_routes(tmp_path, sink, version="-novo")
        await clear_problems(first.store, ids, clock.now)
        for replica in gateway:
            replica.refused.clear()
        await check_all()
        await check_all()
    counted = notices(sink)
    assert counted == Counter({**{(kind, "opened"): 1 for kind in KINDS}, **{(kind, "resolved"): 1 for kind in KINDS}})
    failing = [r.json() for r in sink.received if r.path == "/avisos" and r.json()["alert"] == "failing"]
    assert failing[0]["text"].startswith("🔴 O destino *crm* está falhando: nenhuma entrega deu certo desde ")
    assert failing[1]["text"] == "✅ O destino *crm* voltou a funcionar (ficou 12 min com problema)."
    assert failing[0]["link"] == "https://gw.loja.com.br/console/deliveries?status=dead"
    keys = {r.headers["idempotency-key"] for r in sink.received if r.path == "/avisos"}
    assert len(keys) == 12  # one key per notice: a receiver can tell a retried one


async def test_a_notice_that_cannot_be_sent_is_kept_and_sent_later_never_alerted_about(tmp_path: Path) -> None:
    """The alerts' receiver refuses: the error is kept on the incident, the notice is tried
    again after its wait, and no incident is opened about the alerts' own destination."""
    refusing = {"on": True}

    def answer(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        return (503, {}, b"fora do ar", 0.0) if refusing["on"] and request.path == "/avisos" else (200, {}, b"ok", 0.0)

    sink = Sink(answer)
    clock = Clock()
    config = write_routes(tmp_path, sink)
    async with AsyncExitStack() as stack:
        stack.callback(sink.close)
        (replica,) = await replicas(stack, [open_store(f"sqlite:///{tmp_path / 'gateway.db'}")], lambda: config, clock)
        client = await stack.enter_async_context(delivery_client(lambda: config.egress_allow))
        replica.refused.append("routes.yaml:3:1: unknown top-level key 'rotas'")
        replica.metrics.note_health("avisos", False, clock.now - 3600)  # the alerts' receiver itself failing for an hour
        await replica.monitor.check(client)
        (incident,) = await replica.store.incidents()
        assert incident.kind == "edit_refused" and incident.notice_error is not None and "avisos: HTTP 503" in incident.notice_error
        clock.now += 30
        await replica.monitor.check(client)  # before its wait (60 s): not tried again
        assert sum(1 for r in sink.received if r.path == "/avisos") == 1
        refusing["on"] = False
        clock.now += 31
        await replica.monitor.check(client)
        (incident,) = await replica.store.incidents()
        assert incident.open_notified_at == clock.now and incident.notice_error is None
    assert [r.json()["alert"] for r in sink.received if r.path == "/avisos"] == ["edit_refused", "edit_refused"]


def test_through_serve_a_failing_receiver_brings_a_notice_and_then_its_recovery(project: Project) -> None:
    """A real `gateway serve` whose CRM refuses everything for a while: within seconds of
    failing_for the operator's endpoint gets the failing notice, and the recovery once the CRM
    answers again; one of each."""
    broken = {"on": True}

    def answer(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        return (503, {}, b"fora", 0.0) if broken["on"] and request.path == "/crm" else (200, {}, b"ok", 0.0)

    sink = Sink(answer)
    project.routes(f"""
    version: 1
    settings: {{egress_allow: [127.0.0.0/8]}}
    sources: {{go: {{token: token-de-teste-123, dedupe: false}}}}
    destinations:
      crm: {{type: http, url: "{sink.url('/crm')}", retry: {{first: 200ms, max: 500ms}}}}
      avisos: {{type: http, url: "{sink.url('/avisos')}"}}
    routes:
      - name: pedido
        when: {{event_id: ORDER_CREATED}}
        send: {{to: crm, body: '{{"id": "{{{{ data.id }}}}"}}'}}
    alerts: {{to: avisos, failing_for: 2s, check_every: 500ms, circuit_open: false}}
    """)
    gateway = GatewayProcess(project.root).start()
    body = json.loads((EVENTS / "order_created.json").read_text())
    try:
        deadline = time.monotonic() + 30
        number = 0
        while time.monotonic() < deadline and ("failing", "opened") not in notices(sink):
            body["data"]["id"] = f"pedido-{number}"
            number += 1
            assert gateway.post("/hooks/go?token=token-de-teste-123", json.dumps(body)).status_code == 202
            time.sleep(0.3)
        assert notices(sink)[("failing", "opened")] == 1, gateway.log()
        broken["on"] = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ("failing", "resolved") not in notices(sink):
            time.sleep(0.1)
        time.sleep(1.5)  # three more checks: nothing sent twice
    finally:
        gateway.terminate()
        sink.close()
    assert notices(sink)[("failing", "opened")] == 1 and notices(sink)[("failing", "resolved")] == 1, gateway.log()
    assert "alert: failing:crm" in gateway.log()
