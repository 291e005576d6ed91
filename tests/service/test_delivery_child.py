"""The deliverer: `gateway serve`'s child process that runs the delivery engine, against a real
`gateway serve` and a real sink."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from gateway.ingest import Accepted
from gateway.service.child_process import Frames, Ready
from gateway.service.delivery_child import FromDelivery, Scrape, Scraped, ToDelivery, Wake
from tests.conftest import Project
from tests.harness import GatewayProcess, Sink, alive
from tests.service.test_ingest_child import TOKEN, order, serve_with


@pytest.fixture
def gateway(project: Project, sink: Sink) -> Iterator[GatewayProcess]:
    process = serve_with(project, sink)
    yield process
    process.kill()


def delivered(metrics: str) -> float:
    found = re.search(r'^gateway_deliveries_total\{destination="sink",outcome="delivered",tenant=""\} (\S+)$', metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_messages_survive_the_frames() -> None:
    to_child, from_child = Frames(msgspec.msgpack.Decoder(ToDelivery)), Frames(msgspec.msgpack.Decoder(FromDelivery))
    assert to_child.feed(to_child.frame(Wake([("crm", "failed")])) + to_child.frame(Scrape(7))) == [Wake([("crm", "failed")]), Scrape(7)]
    text = b"# HELP x\nx 1.0\n"
    assert from_child.feed(from_child.frame(Ready("v1")) + from_child.frame(Scraped(7, text))) == [Ready("v1"), Scraped(7, text)]


def test_serve_delivers_from_its_deliverer_and_metrics_show_it(gateway: GatewayProcess, sink: Sink) -> None:
    deliverer = gateway.child("gateway.service.delivery_child")
    assert deliverer != gateway.child("gateway.service.ingest_child")
    started = time.monotonic()
    for number in range(5):
        assert gateway.post(f"/hooks/go?token={TOKEN}", order(str(number))).status_code == 202
    assert sorted(r.json()["id"] for r in sink.wait_for(5)) == ["0", "1", "2", "3", "4"]
    assert time.monotonic() - started < 5  # woken at once, not by polling
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and delivered(httpx.get(gateway.url("/metrics")).text) < 5:
        time.sleep(0.1)
    metrics = httpx.get(gateway.url("/metrics")).text
    assert delivered(metrics) == 5  # counted in the deliverer, shown by serve
    assert 'gateway_events_received_total{outcome="accepted",source="go",tenant=""} 5.0' in metrics  # counted by serve itself
    assert metrics.count("# TYPE gateway_deliveries_total counter") == 1


def test_a_killed_deliverer_is_started_again_and_delivers_what_was_stored_meanwhile(gateway: GatewayProcess, sink: Sink) -> None:
    first = gateway.child("gateway.service.delivery_child")
    os.kill(first, signal.SIGKILL)
    for number in range(3):  # ingest does not need the deliverer
        assert gateway.post(f"/hooks/go?token={TOKEN}", order(f"m{number}")).status_code == 202
    assert sorted(r.json()["id"] for r in sink.wait_for(3, timeout=30)) == ["m0", "m1", "m2"]
    second = gateway.child("gateway.service.delivery_child")
    assert second != first and alive(second)
    assert "the delivery child exited" in gateway.log() and "the delivery child is running again" in gateway.log()
    assert httpx.get(gateway.url("/readyz")).status_code == 200


def test_sigterm_lets_the_deliverer_finish_what_it_is_sending(project: Project) -> None:
    """A delivery in flight when serve gets SIGTERM is finished by the deliverer, not cut off."""
    slow = Sink(lambda request, count: (200, {}, b"", 1.5))
    gateway = serve_with(project, slow)
    try:
        deliverer = gateway.child("gateway.service.delivery_child")
        assert gateway.post(f"/hooks/go?token={TOKEN}", order("lento")).status_code == 202
        slow.wait_for(1)  # the receiver has it and takes 1.5 s to answer
        assert gateway.terminate() in (0, -signal.SIGTERM)
        assert not alive(deliverer)
    finally:
        gateway.kill()
        slow.close()
    with sqlite3.connect(project.root / "data" / "gateway.db") as db:
        assert db.execute("SELECT status, attempts FROM deliveries").fetchall() == [("delivered", 1)]
    assert "Traceback" not in gateway.log()


def _stored(deliveries: int = 1, not_sent: list[tuple[str, str]] | None = None) -> Accepted:
    return Accepted("01a2", deliveries, False, not_sent or [])


def test_a_flood_of_stored_events_wakes_the_child_once_per_interval_and_never_forgets() -> None:
    """Pure logic, no child started: 200 events stored at once send one Wake now and one when the
    interval ends (so the last event's delivery never waits for the engine's idle poll); an event
    whose deliveries were recorded never to be sent is counted at once, with its destinations."""
    import asyncio

    from gateway.service import delivery_child

    async def flood() -> list[tuple[float, Wake]]:
        process = delivery_child.DeliveryProcess(lambda: None, "sqlite:///unused.db", 32)  # type: ignore[arg-type]
        sent: list[tuple[float, Wake]] = []
        process.send = lambda message: sent.append((time.monotonic(), message)) or True  # type: ignore[method-assign]
        began = time.monotonic()
        for _ in range(200):
            process.wake(_stored())
        process.wake(_stored(0, [("crm", "failed")]))
        process.wake(_stored())  # held back: one wake just went
        await asyncio.sleep(delivery_child.WAKE_EVERY_SECONDS * 20)
        return [(at - began, message) for at, message in sent]

    sent = asyncio.run(flood())
    assert [message for _, message in sent] == [Wake([]), Wake([("crm", "failed")]), Wake([])]
    assert sent[2][0] >= delivery_child.WAKE_EVERY_SECONDS  # the held one went when the interval ended
