"""A receiver down for 80 hours, on a controlled clock: the engine (in this process, on the
gateway's real SQLite file, sending to a real receiver) follows the retry schedule, never
tries early, gives up with the reason, and a replay then delivers."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from gateway.config import load_config
from gateway.delivery.client import delivery_client
from gateway.delivery.engine import DeliveryEngine
from gateway.delivery.metrics import DeliveryMetrics
from gateway.delivery.retry import RetryPolicy
from gateway.store import DeliveryFilter, open_store
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Sink, always

pytestmark = pytest.mark.slow
TOKEN = "token-de-teste-123"
HOURS = 3600.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store_one_event(project: Project) -> None:
    """A real `gateway serve --no-deliver` stores the event, as in production."""
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN})
    gateway.start_args = ["--no-deliver"]
    gateway.start()
    try:
        response = gateway.post(f"/hooks/go?token={TOKEN}", (EVENTS / "order_created.json").read_text())
        assert response.status_code == 202, response.text
    finally:
        gateway.terminate()


async def run_outage(project: Project, sink: Sink, clock: Clock, limit_hours: float) -> tuple[list[float], list[float]]:
    """Drive the engine on the clock until the delivery is dead or `limit_hours` pass; returns
    the attempt times and, for each retry, the time it was scheduled for."""
    config = load_config(project.root / "routes.yaml", environ={"GO_WEBHOOK_TOKEN": TOKEN})
    store = open_store(f"sqlite:///{project.root / 'data' / 'gateway.db'}")
    await store.open()
    started, scheduled = [], []
    end = clock.now + limit_hours * HOURS
    try:
        async with delivery_client(lambda: config.egress_allow) as client:
            engine = DeliveryEngine(store, lambda: config, client, DeliveryMetrics(), concurrency=4, clock=clock)
            for _ in range(2000):  # bounded: each pass moves the clock forward
                due = await store.next_due_at()
                if due is None or clock.now > end:
                    break
                clock.now = max(clock.now, due)
                if await engine.deliver_due():
                    started.append(clock.now)
                    following = await store.next_due_at()
                    if following is not None:
                        scheduled.append(following)
                else:
                    clock.now += 60  # the circuit breaker held it back: time passes
        return started, scheduled
    finally:
        await store.close()


async def replay_and_deliver(project: Project, clock: Clock) -> int:
    config = load_config(project.root / "routes.yaml", environ={"GO_WEBHOOK_TOKEN": TOKEN})
    store = open_store(f"sqlite:///{project.root / 'data' / 'gateway.db'}")
    await store.open()
    try:
        assert await store.requeue(DeliveryFilter(), clock.now) == 1
        async with delivery_client(lambda: config.egress_allow) as client:
            engine = DeliveryEngine(store, lambda: config, client, DeliveryMetrics(), concurrency=4, clock=clock)
            return await engine.deliver_due()
    finally:
        await store.close()


def test_eighty_hours_down_then_dead_then_replayed(project: Project) -> None:
    sink = Sink(always(503, body=b"fora do ar"))
    project.routes(
        f"""
        version: 1
        settings: {{egress_allow: [127.0.0.0/8]}}
        sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}"}}}}
        destinations:
          erp: {{type: http, url: "{sink.url('/in')}", timeout: 2s, retry: {{attempts: 20, first: 1m, max: 6h}}}}
        routes:
          - name: tudo
            when: {{event_id: ORDER_CREATED}}
            send: {{to: erp, body: '{{"id": "{{{{ data.id }}}}"}}'}}
        """
    )
    try:
        store_one_event(project)
        clock = Clock(2_000_000_000.0)
        began = clock.now
        started, scheduled = asyncio.run(run_outage(project, sink, clock, limit_hours=80))

        assert len(started) == len(sink.received) == 20  # every attempt reached the receiver
        assert started[-1] - began < 80 * HOURS
        policy = RetryPolicy(attempts=20, first_seconds=60, max_seconds=6 * HOURS)
        for number, (before, after, due) in enumerate(zip(started, started[1:], scheduled), start=1):
            assert after >= due, f"attempt {number + 1} ran before its time"
            base = min(policy.first_seconds * 2 ** (number - 1), policy.max_seconds)  # tenacity's exponential wait, before jitter
            assert base <= due - before <= base + policy.first_seconds, f"wait after attempt {number}: {due - before:.0f} s, schedule {base:.0f}-{base + 60:.0f} s"
        with sqlite3.connect(project.root / "data" / "gateway.db") as db:
            status, error = db.execute("SELECT status, last_error FROM deliveries").fetchone()
        assert status == "dead" and error == "HTTP 503; gave up after 20 attempts"

        sink.behaviour = always(200)
        assert asyncio.run(replay_and_deliver(project, clock)) == 1
        with sqlite3.connect(project.root / "data" / "gateway.db") as db:
            assert db.execute("SELECT status FROM deliveries").fetchone()[0] == "delivered"
        keys = {r.headers["idempotency-key"] for r in sink.received}
        assert len(sink.received) == 21 and len(keys) == 1
        assert json.loads(sink.received[-1].body) == {"id": "100"}
    finally:
        sink.close()
