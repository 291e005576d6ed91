"""Two delivery engines on one PostgreSQL database, as two replicas run them: what one learns
about a destination (410 Gone, a circuit opened by repeated failures) holds for the other."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.delivery.client import delivery_client
from gateway.delivery.engine import DeliveryEngine
from gateway.delivery.metrics import DeliveryMetrics
from gateway.ingest import accept
from gateway.store import Store, open_store
from tests.conftest import EVENTS
from tests.delivery.test_engine import T0, Clock, routes
from tests.harness import Sink, always

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def replica(config: Config, url: str, clock: Clock) -> AsyncIterator[tuple[DeliveryEngine, Store]]:
    store = open_store(url)
    await store.open()
    try:
        async with delivery_client(lambda: config.egress_allow) as client:
            yield DeliveryEngine(store, lambda: config, client, DeliveryMetrics(), concurrency=4, clock=clock), store
    finally:
        await store.close()


async def post(config: Config, store: Store, clock: Clock, order: str) -> str:
    event = json.loads((EVENTS / "order_created.json").read_text())
    event["data"]["id"] = order
    return (await accept(config, store, "go", json.dumps(event).encode(), event, clock())).id


def config_for(tmp_path: Path, sink: Sink) -> Config:
    (tmp_path / "routes.yaml").write_text(routes(sink, "concurrency: 1"))
    return load_config(tmp_path / "routes.yaml", {})


async def test_a_410_one_replica_got_stops_the_destination_for_the_other(tmp_path: Path, sink: Sink, postgres_url: str) -> None:
    sink.behaviour = always(410)
    config, clock = config_for(tmp_path, sink), Clock()
    async with replica(config, postgres_url, clock) as (first, store), replica(config, postgres_url, clock) as (second, _):
        gone = await post(config, store, clock, "1")
        assert await first.deliver_due() == 1
        later = [await post(config, store, clock, str(n)) for n in (2, 3)]
        clock.now += 2  # the other replica looks at the holds once a second
        assert await second.deliver_due() == 1 and await second.deliver_due() == 1
        shown = [await store.get_event(event_id) for event_id in (gone, *later)]
    assert len(sink.received) == 1  # the other replica sent nothing to the address that is gone
    assert [e.deliveries[0].status for e in shown if e] == ["dead", "dead", "dead"]
    assert all("not sent: destination 'sink' answered 410 Gone" in (e.deliveries[0].last_error or "") for e in shown[1:] if e)


async def test_a_circuit_one_replica_opened_holds_the_other_back(tmp_path: Path, sink: Sink, postgres_url: str) -> None:
    sink.behaviour = always(503)
    config, clock = config_for(tmp_path, sink), Clock()
    async with replica(config, postgres_url, clock) as (first, store), replica(config, postgres_url, clock) as (second, _):
        for n in range(6):
            await post(config, store, clock, str(n))
        for _ in range(5):  # five transient failures in a row open the breaker (10 s)
            assert await first.deliver_due() == 1
        sent = len(sink.received)
        clock.now += 2
        assert await second.deliver_due() == 0  # the sixth waits: the circuit is open for everyone
        assert len(sink.received) == sent == 5
        clock.now = T0 + 60  # past the back-off
        assert await second.deliver_due() >= 1
