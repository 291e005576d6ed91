"""The delivery engine's behaviour, on the in-memory store with a controlled clock: retries and
their schedule, Retry-After, giving up, 410, ordering, the circuit breaker, timeouts. Each test
sends to a real receiver on 127.0.0.1 and stores events through the real ingest path, but runs
in milliseconds: no process starts, no waiting for the schedule (the clock jumps to the next
due time). The wiring of the same behaviour in `gateway serve` is tests/delivery/test_end_to_end.py."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.delivery.client import delivery_client
from gateway.delivery.engine import AHEAD_ROUNDS, START_WITHIN_SECONDS, DeliveryEngine
from gateway.delivery.metrics import DeliveryMetrics
from gateway.ingest import accept
from gateway.store import DeliveryFilter
from gateway.store.base import DeliveryRow
from gateway.store.memory import MemoryStore
from tests.conftest import EVENTS
from tests.harness import Received, Sink

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Bench:
    """An engine on a memory store, its clock and routes, delivering to `sink`."""

    engine: DeliveryEngine
    store: MemoryStore
    clock: Clock
    config: Config
    metrics: DeliveryMetrics

    async def post(self, order_id: str = "100", event_file: str = "order_created.json") -> str:
        """Store one GO event as ingest does: routed, rendered, with its deliveries."""
        event = json.loads((EVENTS / event_file).read_text())
        event["data"]["id"] = order_id
        body = json.dumps(event).encode()
        return (await accept(self.config, self.store, "go", body, event, self.clock())).id

    async def run(self, passes: int = 200) -> int:
        """Deliver what falls due, jumping the clock to each next due time, until nothing is
        pending (bounded); returns the attempts made."""
        made = 0
        for _ in range(passes):
            due = await self.store.next_due_at()
            if due is None:
                break
            self.clock.now = max(self.clock.now, due)
            started = await self.engine.deliver_due()
            if not started:
                self.clock.now += 1  # held back (breaker, ordering): time passes
            made += started
        return made

    async def delivery(self, event_id: str) -> DeliveryRow:
        stored = await self.store.get_event(event_id)
        assert stored is not None
        return stored.deliveries[0]


def routes(sink: Sink, destination_extra: str = "", retry: str = "{attempts: 4, first: 10s, max: 1h}") -> str:
    return f"""
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: t0ken-de-teste, dedupe: false}}}}
destinations:
  sink:
    type: http
    url: "{sink.url('/in')}"
    retry: {retry}
    timeout: 1s
    {destination_extra}
routes:
  - name: tudo
    when: {{event_id: {{exists: true}}}}
    send: {{to: sink, body: '{{"id": "{{{{ data.id }}}}", "event": "{{{{ event_id }}}}"}}'}}
"""


@asynccontextmanager
async def bench(tmp_path: Path, sink: Sink, destination_extra: str = "", store: MemoryStore | None = None, **settings: str) -> AsyncIterator[Bench]:
    (tmp_path / "routes.yaml").write_text(routes(sink, destination_extra, **settings))
    config = load_config(tmp_path / "routes.yaml", {})
    store, clock, metrics = store or MemoryStore(), Clock(), DeliveryMetrics()
    await store.open()
    async with delivery_client(lambda: config.egress_allow) as client:
        yield Bench(DeliveryEngine(store, lambda: config, client, metrics, concurrency=8, clock=clock), store, clock, config, metrics)
    await store.close()


class ClaimsSeen(MemoryStore):
    """The memory store, noting how many deliveries each claim took and what was given back."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[int] = []
        self.released: list[str] = []

    async def claim_due(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        claimed = await super().claim_due(*args, **kwargs)
        self.claims.append(len(claimed))
        return claimed

    async def release(self, delivery_ids: list[str], now: float) -> None:
        self.released += delivery_ids
        await super().release(delivery_ids, now)


def answers(*statuses: int | tuple[int, dict[str, str]]):
    """A sink behaviour answering these statuses in turn, then 200."""

    def behaviour(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        answer = statuses[count - 1] if count <= len(statuses) else 200
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return status, headers, b"", 0

    return behaviour


async def test_only_what_can_start_is_claimed_and_nothing_is_given_back(tmp_path: Path, sink: Sink) -> None:
    """A destination with `concurrency: 2` and 7 due deliveries: no claim takes more than its
    2 free slots, none is released again, and all 7 arrive."""
    store = ClaimsSeen()
    async with bench(tmp_path, sink, "concurrency: 2", store=store) as b:
        for n in range(7):
            await b.post(str(n))
        assert await b.run() == 7
    assert store.claims and max(store.claims) == 2 and sum(store.claims) == 7
    assert store.released == []
    assert sorted(r.json()["id"] for r in sink.received) == [str(n) for n in range(7)]


async def test_transient_failures_are_retried_on_the_schedule_with_one_key(tmp_path: Path, sink: Sink) -> None:
    """503 twice, then 200: three attempts, each no earlier than its backoff, one Idempotency-Key."""
    sink.behaviour = answers(503, 503)
    async with bench(tmp_path, sink) as b:
        event_id = await b.post()
        assert await b.run() == 3
        delivery = await b.delivery(event_id)
    assert delivery.status == "delivered"
    assert [(a.outcome, a.status_code) for a in delivery.attempt_log] == [("retry", 503), ("retry", 503), ("delivered", 200)]
    starts = [a.started_at for a in delivery.attempt_log]
    assert 10 <= starts[1] - starts[0] <= 20 and 20 <= starts[2] - starts[1] <= 30  # 10 s, then 20 s, plus jitter
    assert len({r.headers["idempotency-key"] for r in sink.received}) == 1


async def test_gives_up_after_the_configured_attempts(tmp_path: Path, sink: Sink) -> None:
    sink.behaviour = answers(500, 500, 500, 500, 500)
    async with bench(tmp_path, sink) as b:
        event_id = await b.post()
        await b.run()
        delivery = await b.delivery(event_id)
    assert (delivery.status, delivery.attempts) == ("dead", 4)
    assert delivery.last_error == "HTTP 500; gave up after 4 attempts"
    assert len(sink.received) == 4


async def test_400_is_dead_at_once_and_a_replay_delivers(tmp_path: Path, sink: Sink) -> None:
    sink.behaviour = answers(400)
    async with bench(tmp_path, sink) as b:
        event_id = await b.post()
        await b.run()
        assert (await b.delivery(event_id)).last_error == "HTTP 400: the receiver refused the request"
        assert await b.store.requeue(DeliveryFilter(), b.clock()) == 1
        await b.run()
        delivery = await b.delivery(event_id)
    assert delivery.status == "delivered" and [a.outcome for a in delivery.attempt_log] == ["dead", "delivered"]


@pytest.mark.parametrize(
    ("header", "earliest", "latest"),
    [
        ("30", 30.0, 31.0),  # seconds: obeyed
        ("0", 10.0, 20.0),  # 0: the schedule's own wait (10 s + jitter), never "hammer"
        ("soon", 10.0, 20.0),  # garbage: the schedule decides
        ("86400", 6 * 3600.0, 6 * 3600.0 + 1),  # absurd: capped at 6 hours
    ],
)
async def test_retry_after_forms(tmp_path: Path, sink: Sink, header: str, earliest: float, latest: float) -> None:
    sink.behaviour = answers((429, {"Retry-After": header}))
    async with bench(tmp_path, sink) as b:
        event_id = await b.post()
        await b.run()
        first, second = (await b.delivery(event_id)).attempt_log
    assert earliest <= second.started_at - first.started_at <= latest


async def test_retry_after_as_an_http_date_is_never_early(tmp_path: Path, sink: Sink) -> None:
    async with bench(tmp_path, sink) as b:
        sink.behaviour = answers((503, {"Retry-After": email.utils.formatdate(b.clock.now + 120, usegmt=True)}))
        event_id = await b.post()
        await b.run()
        first, second = (await b.delivery(event_id)).attempt_log
    assert 119 <= second.started_at - first.started_at <= 121


async def test_an_absurd_retry_after_is_logged(tmp_path: Path, sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    sink.behaviour = answers((429, {"Retry-After": "86400"}))
    async with bench(tmp_path, sink) as b:
        await b.post()
        await b.engine.deliver_due()
    assert "asked to wait 86400 s; waiting 21600 s, the most the gateway allows" in caplog.text


async def test_410_stops_the_destination_with_one_log_line_and_a_metric(tmp_path: Path, sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    """Gone means gone: after one 410 the other deliveries to that address are dead with the
    reason, without being sent; the log says so once, and a metric shows it."""
    caplog.set_level(logging.INFO, logger="gateway")
    sink.behaviour = answers(410)
    async with bench(tmp_path, sink, "concurrency: 1") as b:
        first = await b.post("1")
        await b.run()
        later = [await b.post(str(n)) for n in range(2, 6)]
        await b.run()
        assert (await b.delivery(first)).last_error == "HTTP 410: the receiver says this address is gone"
        for event_id in later:
            delivery = await b.delivery(event_id)
            assert delivery.status == "dead" and delivery.last_error.startswith("not sent: destination 'sink' answered 410 Gone at ")
            assert "gateway replay --destination sink" in delivery.last_error
        metrics = b.metrics.render().decode()
    assert len(sink.received) == 1
    assert caplog.text.count("destination sink answered 410 Gone") == 1
    assert 'gateway_destination_stopped{destination="sink",tenant=""} 1.0' in metrics


async def test_ordered_deliveries_arrive_in_order_even_when_the_first_fails(tmp_path: Path, sink: Sink) -> None:
    """With ordered_by, a later event for the same order waits for the earlier one's retries;
    another order is not held back."""

    failed: list[Received] = []

    def behaviour(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        # The first request for order 100's creation fails, whichever request reaches the sink first
        if request.json() == {"id": "100", "event": "ORDER_CREATED"} and not failed:
            failed.append(request)
            return 503, {}, b"", 0
        return 200, {}, b"", 0

    sink.behaviour = behaviour
    async with bench(tmp_path, sink, 'ordered_by: "{{ data.id }}"') as b:
        await b.post("100", "order_created.json")
        await b.post("100", "order_cancel.json")
        await b.post("200", "order_cancel.json")
        await b.run()
    arrived = [(r.json()["id"], r.json()["event"]) for r in sink.received]
    assert [e for i, e in arrived if i == "100"] == ["ORDER_CREATED", "ORDER_CREATED", "ORDER_CANCEL"]
    assert arrived.index(("200", "ORDER_CANCEL")) < arrived.index(("100", "ORDER_CANCEL"))  # not held back by order 100


async def test_a_failing_destination_is_backed_off_as_a_whole(tmp_path: Path, sink: Sink) -> None:
    """Five transient failures in a row open the circuit: nothing goes to the destination until
    the cooldown has passed, then deliveries flow again."""
    sink.behaviour = answers(*[503] * 5)
    async with bench(tmp_path, sink, "concurrency: 8", retry="{attempts: 20, first: 1s, max: 1s}") as b:
        for n in range(5):
            await b.post(str(n))
        await b.engine.deliver_due()  # five attempts at once, all 503
        opened_at = b.clock.now
        assert 'gateway_destination_circuit_open{destination="sink",tenant=""} 1.0' in b.metrics.render().decode()
        b.clock.now = opened_at + 5  # every delivery is due again, the circuit still open
        assert await b.engine.deliver_due() == 0 and len(sink.received) == 5
        b.clock.now = opened_at + 10  # the first cooldown is 10 s
        assert await b.engine.deliver_due() == 5
    assert len(sink.received) == 10 and all(r.headers["idempotency-key"] for r in sink.received)


async def test_a_hanging_receiver_costs_one_timeout_and_is_retried(tmp_path: Path, sink: Sink) -> None:
    sink.behaviour = lambda request, count: (200, {}, b"", 3) if count == 1 else (200, {}, b"", 0)
    async with bench(tmp_path, sink) as b:
        event_id = await b.post()
        await b.run()
        delivery = await b.delivery(event_id)
    first = delivery.attempt_log[0]
    assert delivery.status == "delivered"
    assert first.outcome == "retry" and "no complete answer within 1 s" in (first.error or "")
    assert first.duration_ms < 2500


async def test_deliveries_in_flight_or_waiting_at_stop_are_given_back(tmp_path: Path, sink: Sink) -> None:
    """Stop with a short grace: the unfinished delivery and the two waiting claimed behind it
    (concurrency 1) are pending again, due now, never lost."""
    sink.behaviour = lambda request, count: (200, {}, b"", 2)
    async with bench(tmp_path, sink, "concurrency: 1") as b:
        event_ids = [await b.post(str(n)) for n in range(3)]
        running = asyncio.create_task(b.engine.run())
        for _ in range(100):  # bounded: until the receiver has the request
            if sink.received:
                break
            await asyncio.sleep(0.02)
        assert await _sending_is(b.store, 3)
        await b.engine.stop(grace_seconds=0.1)
        await running
        deliveries = [await b.delivery(event_id) for event_id in event_ids]
    assert [(d.status, d.attempts) for d in deliveries] == [("pending", 0)] * 3
    assert len(sink.received) == 1


# ----------------------------------------------------------------- claiming ahead (the running loop)


class AtOnce:
    """A sink behaviour that answers `status` after `delay` and notes the most requests it held at once."""

    def __init__(self, delay: float, status: int = 200) -> None:
        self.delay, self.status = delay, status
        self.now = self.most = 0
        self._lock = threading.Lock()

    def __call__(self, request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.delay)
        with self._lock:
            self.now -= 1
        return self.status, {}, b"", 0


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait (bounded) until `check` is true."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def engine_running(b: Bench, orders: int) -> AsyncIterator[None]:
    """`orders` orders stored, then the engine's own loop running until the block ends."""
    for n in range(orders):
        await b.post(str(n))
    running = asyncio.create_task(b.engine.run())
    try:
        yield
    finally:
        await b.engine.stop()
        await running


async def _count(store: MemoryStore, status: str) -> int:
    return await store.count_deliveries(DeliveryFilter(statuses=(status,)))


async def test_claims_run_ahead_of_the_slots_but_requests_do_not(tmp_path: Path, sink: Sink) -> None:
    """The running engine keeps AHEAD_ROUNDS rounds of a destination's concurrency claimed in
    memory, in a few claims rather than one per freed slot; the receiver never holds more
    than `concurrency` requests at once, and every delivery arrives once, oldest first."""
    sink.behaviour = receiver = AtOnce(0.05)
    store = ClaimsSeen()
    async with bench(tmp_path, sink, "concurrency: 2", store=store) as b:
        async with engine_running(b, orders=24):
            await _until(lambda: _sending_is(store, 2 + 2 * AHEAD_ROUNDS))
            await _until(lambda: _done(store, 24))
    assert receiver.most == 2
    arrived = [int(r.json()["id"]) for r in sink.received]
    assert sorted(arrived) == list(range(24))
    assert all(abs(n - place) < 2 for place, n in enumerate(arrived))  # oldest first, two at a time
    assert sum(store.claims) == 24 and max(store.claims) == 2 + 2 * AHEAD_ROUNDS
    assert len([n for n in store.claims if n]) <= 24 // AHEAD_ROUNDS  # refills come in batches
    assert store.released == []


async def _sending_is(store: MemoryStore, count: int) -> bool:
    return await _count(store, "sending") == count


async def _done(store: MemoryStore, count: int) -> bool:
    return await _count(store, "delivered") == count


async def test_what_waits_claimed_too_long_is_given_back_not_sent(tmp_path: Path, sink: Sink) -> None:
    """A slow destination: deliveries that waited claimed for longer than START_WITHIN_SECONDS
    (their attempt might outlive the lease) go back to the store instead of being sent, are
    claimed again, and each arrives exactly once."""
    sink.behaviour = AtOnce(0.3)
    store = ClaimsSeen()
    async with bench(tmp_path, sink, "concurrency: 1", store=store) as b:
        async with engine_running(b, orders=4):
            await _until(lambda: _sending_is(store, 4))  # one sent, three waiting claimed
            b.clock.now += START_WITHIN_SECONDS + 1
            await _until(lambda: _done(store, 4))
    assert len(store.released) == 3
    assert [r.json()["id"] for r in sink.received] == ["0", "1", "2", "3"]


async def test_an_opened_circuit_gives_back_what_waits(tmp_path: Path, sink: Sink) -> None:
    """A destination failing until its circuit opens: what waited claimed is pending again, never
    attempted, and no more requests go out while the circuit is open."""
    sink.behaviour = AtOnce(0.01, status=503)
    store = ClaimsSeen()
    async with bench(tmp_path, sink, "concurrency: 1", store=store) as b:
        async with engine_running(b, orders=12):
            await _until(lambda: _released(store, 4))
            await asyncio.sleep(0.2)
        rows = await store.list_deliveries(DeliveryFilter(statuses=("pending", "sending", "delivered", "failed", "dead")))
    assert len(sink.received) == 5  # the breaker's threshold
    assert sorted(r.status for r in rows) == ["pending"] * 12
    assert sorted(r.attempts for r in rows) == [0] * 7 + [1] * 5


async def _released(store: ClaimsSeen, count: int) -> bool:
    return len(store.released) >= count


async def test_a_rate_limited_destination_claims_only_what_can_start(tmp_path: Path, sink: Sink) -> None:
    """With a rate limit a claimed delivery might wait for the limiter, so none is claimed ahead."""
    sink.behaviour = AtOnce(0.05)
    store = ClaimsSeen()
    async with bench(tmp_path, sink, "concurrency: 2\n    rate: 1000/s", store=store) as b:
        async with engine_running(b, orders=10):
            await _until(lambda: _done(store, 10))
    assert max(store.claims) == 2 and sum(store.claims) == 10


async def test_where_a_shops_slots_are_contended_freed_slots_take_turns(tmp_path: Path, sink: Sink) -> None:
    """A destination that answers slowly and may take every one of the engine's 8 slots, beside
    one that answers at once: a slot the slow one frees is not simply taken back by it (nor by
    what it claimed ahead), so the quick destination's deliveries arrive while the slow one's
    backlog is still being sent, not after it."""
    sink.behaviour = lambda request, count: (200, {}, b"", 0.4 if request.path == "/lento" else 0)
    (tmp_path / "routes.yaml").write_text(f"""
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: t0ken-de-teste, dedupe: false}}}}
destinations:
  lento: {{type: http, url: "{sink.url('/lento')}", concurrency: 8}}
  rapido: {{type: http, url: "{sink.url('/rapido')}", concurrency: 2}}
routes:
  - {{name: pedidos, when: {{event_id: ORDER_CREATED}}, send: {{to: lento, body: '{{"id": "{{{{ data.id }}}}"}}'}}}}
  - {{name: cancelados, when: {{event_id: ORDER_CANCEL}}, send: {{to: rapido, body: '{{"id": "{{{{ data.id }}}}"}}'}}}}
""")
    config, store, clock = load_config(tmp_path / "routes.yaml", {}), MemoryStore(), Clock()
    await store.open()
    async with delivery_client(lambda: config.egress_allow) as client:
        b = Bench(DeliveryEngine(store, lambda: config, client, DeliveryMetrics(), concurrency=8, clock=clock), store, clock, config, DeliveryMetrics())
        for n in range(40):  # 40 slow deliveries: 2 s of the 8 slots
            await b.post(str(n))
        running = asyncio.create_task(b.engine.run())
        try:
            await _until(lambda: _arrived(sink, "/lento", 8))  # every slot taken by the slow one
            for n in range(4):
                await b.post(f"c{n}", "order_cancel.json")
            b.engine.notify()
            await _until(lambda: _arrived(sink, "/rapido", 4))
            slow_arrived = len([r for r in sink.received if r.path == "/lento"])
        finally:
            await b.engine.stop()
            await running
    await store.close()
    assert slow_arrived < 40, "the quick destination waited for the slow one's whole backlog"


async def _arrived(sink: Sink, path: str, count: int) -> bool:
    return len([r for r in sink.received if r.path == path]) >= count


class _RecordingFails(MemoryStore):
    """A store whose attempt records fail with a bug, not an outage."""

    async def record_attempt(self, result, now):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the store")


async def test_an_engine_task_that_fails_is_logged_not_dropped(tmp_path: Path, sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    (tmp_path / "routes.yaml").write_text(routes(sink))
    config = load_config(tmp_path / "routes.yaml", {})
    store = _RecordingFails()
    await store.open()
    event = json.loads((EVENTS / "order_created.json").read_text())
    await accept(config, store, "go", json.dumps(event).encode(), event, T0)
    async with delivery_client(lambda: config.egress_allow) as client:
        engine = DeliveryEngine(store, lambda: config, client, DeliveryMetrics(), concurrency=2, clock=Clock())
        await engine.deliver_due()
    assert "the engine failed to finish it" in caplog.text and "a bug in the store" in caplog.text
