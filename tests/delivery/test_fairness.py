"""Fair delivery across shops (issue #24): every shop has the engine's slots of its own, so one
shop whose CRM hangs on every request (or that has a long backlog) never makes another shop's
delivery wait. On the memory store, a real SQLite file and PostgreSQL, and with two engines on
one PostgreSQL database as two replicas run them. Real HTTP to a receiver on 127.0.0.1; the
noisy shop's receiver holds every request for HANG seconds, the quiet shop's answers at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.delivery.client import delivery_client
from gateway.delivery.engine import DeliveryEngine
from gateway.delivery.metrics import DeliveryMetrics
from gateway.ingest import accept
from gateway.store import Store, open_store
from gateway.store.memory import MemoryDatabase, MemoryStore
from tests.conftest import EVENTS
from tests.harness import Sink

pytestmark = pytest.mark.anyio
HANG = 2.0  # seconds the noisy shop's CRM holds each request
SLOTS = 4  # the engine's concurrency: each shop's own
SHOP = """
version: 1
sources: {{{shop}-go: {{token: t0ken-{shop}-123, dedupe: false}}}}
destinations:
  crm: {{type: http, url: "{url}", concurrency: {concurrency}, timeout: 10s}}
routes:
  - name: pedido
    when: {{event_id: ORDER_CREATED}}
    send: {{to: crm, body: '{{"id": "{{{{ data.id }}}}"}}'}}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def two_shops(tmp_path: Path, sink: Sink) -> Config:
    """A noisy shop whose CRM takes more requests at once than the engine has slots, and a
    quiet one; routes.yaml holds only what they share."""
    (tmp_path / "routes.yaml").write_text("version: 1\nsettings: {egress_allow: [127.0.0.0/8]}\nsources: {}\n")
    (tmp_path / "routes.d").mkdir()
    (tmp_path / "routes.d" / "noisy.yaml").write_text(SHOP.format(shop="noisy", url=sink.url("/noisy"), concurrency=4 * SLOTS))
    (tmp_path / "routes.d" / "quiet.yaml").write_text(SHOP.format(shop="quiet", url=sink.url("/quiet"), concurrency=SLOTS))
    return load_config(tmp_path / "routes.yaml", {})


def hang_for_noisy(request, count):  # type: ignore[no-untyped-def]
    return (200, {}, b"", HANG if request.path == "/noisy" else 0)


async def post(config: Config, store: Store, shop: str, order: str) -> None:
    event = json.loads((EVENTS / "order_created.json").read_text())
    event["data"]["id"] = order
    await accept(config, store, f"{shop}-go", json.dumps(event).encode(), event, time.time())


@asynccontextmanager
async def running_engine(config: Config, store: Store) -> AsyncIterator[DeliveryEngine]:
    await store.open()
    async with delivery_client(lambda: config.egress_allow) as client:
        engine = DeliveryEngine(store, lambda: config, client, DeliveryMetrics(), concurrency=SLOTS)
        task = asyncio.create_task(engine.run())
        try:
            yield engine
        finally:
            await engine.stop(grace_seconds=0.1)
            await task
            await store.close()


async def arrived(sink: Sink, path: str, count: int, within: float) -> float:
    """Seconds until `count` requests reached `path`; fails past `within` (bounded polling)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if sum(1 for r in sink.received if r.path == path) >= count:
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} got {sum(1 for r in sink.received if r.path == path)} of {count} requests within {within} s")


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Stores on one database: each call is another replica opening it."""
    if request.param == "memory":
        database = MemoryDatabase()
        return lambda: MemoryStore(database)
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        return lambda: open_store(url)
    return lambda: open_store(f"sqlite:///{tmp_path / 'gateway.db'}")


async def test_a_hanging_shop_keeps_to_its_own_slots_and_the_quiet_shop_is_not_delayed(tmp_path: Path, sink: Sink, stores: Callable[[], Store]) -> None:
    sink.behaviour = hang_for_noisy
    config = two_shops(tmp_path, sink)
    store = stores()
    async with running_engine(config, store) as engine:
        for n in range(3 * SLOTS):
            await post(config, store, "noisy", f"n{n}")
        engine.notify()
        await arrived(sink, "/noisy", SLOTS, within=5)
        await asyncio.sleep(0.2)  # had the noisy shop more slots, it would take them by now
        assert sum(1 for r in sink.received if r.path == "/noisy") == SLOTS  # its own, though its CRM takes 16
        await post(config, store, "quiet", "q1")
        engine.notify()
        waited = await arrived(sink, "/quiet", 1, within=HANG - 0.5)  # before any noisy slot frees
    assert waited < 1.0


async def test_a_long_backlog_of_one_shop_does_not_queue_another_shops_deliveries(tmp_path: Path, sink: Sink, stores: Callable[[], Store]) -> None:
    """The noisy shop has 300 deliveries due before the quiet shop's; its receiver answers at
    once but each of its requests is slow enough that the backlog lasts seconds."""
    sink.behaviour = lambda request, count: (200, {}, b"", 0.05 if request.path == "/noisy" else 0)
    config = two_shops(tmp_path, sink)
    seeding = stores()
    await seeding.open()
    for n in range(300):
        await post(config, seeding, "noisy", f"n{n}")
    await post(config, seeding, "quiet", "q1")
    await seeding.close()
    async with running_engine(config, stores()):
        waited = await arrived(sink, "/quiet", 1, within=3)
        noisy_done = sum(1 for r in sink.received if r.path == "/noisy")
    assert waited < 1.0 and noisy_done < 300  # the quiet delivery went out while the backlog drained


async def test_two_replicas_on_postgresql_keep_each_shop_to_its_slots(tmp_path: Path, sink: Sink, postgres_url: str) -> None:
    """Cluster-wide: two engines share the noisy shop's claims (each its own slots for it, no
    delivery sent twice) and the quiet shop's delivery goes out at once on either."""
    sink.behaviour = hang_for_noisy
    config = two_shops(tmp_path, sink)
    async with AsyncExitStack() as stack:
        first = open_store(postgres_url)
        engines = [await stack.enter_async_context(running_engine(config, store)) for store in (first, open_store(postgres_url))]
        for n in range(4 * SLOTS):
            await post(config, first, "noisy", f"n{n}")
        for engine in engines:
            engine.notify()
        await arrived(sink, "/noisy", 2 * SLOTS, within=5)
        await asyncio.sleep(0.2)
        assert sum(1 for r in sink.received if r.path == "/noisy") == 2 * SLOTS
        await post(config, first, "quiet", "q1")
        waited = await arrived(sink, "/quiet", 1, within=HANG - 0.5)  # no notify: the other replica's idle look finds it too
    noisy_ids = [r.json()["id"] for r in sink.received if r.path == "/noisy"]
    assert waited < 1.0
    assert len(noisy_ids) == len(set(noisy_ids))  # each claimed by one replica only
