"""Crash safety: nothing acknowledged to the sender is ever lost."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.delivery.engine import LEASE_MARGIN_SECONDS
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Received, Sink, always

pytestmark = pytest.mark.slow
TOKEN = "token-de-teste-123"


def routes(sink: Sink) -> str:
    return f"""
    version: 1
    settings: {{egress_allow: [127.0.0.0/8]}}
    sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}"}}}}
    destinations:
      lento: {{type: http, url: "{sink.url('/in')}", timeout: 2s, retry: {{first: 100ms, max: 1s}}, concurrency: 8}}
    routes:
      - name: tudo
        when: {{event_id: ORDER_CREATED}}
        send: {{to: lento, body: '{{"id": "{{{{ data.id }}}}"}}'}}
    """


def post_many(gateway: GatewayProcess, count: int) -> set[str]:
    """Post `count` distinct events at once; the ids the gateway acknowledged."""
    template = json.loads((EVENTS / "order_created.json").read_text())

    def post(number: int) -> str | None:
        body = {**template, "data": {**template["data"], "id": f"pedido-{number}"}}
        try:
            response = client.post(gateway.url(f"/hooks/go?token={TOKEN}"), json=body)
        except httpx.HTTPError:
            return None
        return f"pedido-{number}" if response.status_code == 202 else None

    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16)) as client, ThreadPoolExecutor(16) as pool:
        return {order for order in pool.map(post, range(count)) if order}


def store_first(project: Project, count: int) -> GatewayProcess:
    """Store `count` events with delivery off, then restart on the same database delivering:
    the interruption then always lands mid-delivery, however fast the machine posts."""
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}, workers=8)
    gateway.start_args = ["--no-deliver"]
    gateway.start()
    gateway.accepted = post_many(gateway, count)
    assert len(gateway.accepted) == count
    gateway.terminate()
    gateway.start_args = []
    return gateway.start()


def keys_by_order(sink: Sink) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = defaultdict(set)
    for request in list(sink.received):
        keys[request.json()["id"]].add(request.headers["idempotency-key"])
    return keys


def wait_until_all_delivered(sink: Sink, accepted: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not accepted <= set(keys_by_order(sink)):
        time.sleep(0.1)


def test_kill_9_during_delivery_loses_nothing(project: Project) -> None:
    """kill -9 while 500 events are being delivered to a slow sink, restart: all arrive."""
    sink = Sink(always(200, delay=0.05))  # 8 at a time: at least 3 s for 500
    project.routes(routes(sink))
    gateway = store_first(project, 500)
    try:
        accepted = gateway.accepted
        sink.wait_for(100)
        gateway.kill()
        delivered_before_restart = len(keys_by_order(sink))
        assert delivered_before_restart < 500  # the kill really interrupted the work
        gateway.start()
        wait_until_all_delivered(sink, accepted, timeout=120)
        keys = keys_by_order(sink)
        assert accepted - set(keys) == set(), f"lost: {sorted(accepted - set(keys))[:10]}"
        assert all(len(k) == 1 for k in keys.values()), "a redelivery carried a different Idempotency-Key"
    finally:
        gateway.kill()
        sink.close()


def test_sigterm_finishes_or_releases_in_flight_work(project: Project) -> None:
    """SIGTERM under load exits within 30 s and leaves no delivery claimed; a restart finishes."""
    sink = Sink(always(200, delay=0.2))  # 8 at a time: at least 5 s for 200
    project.routes(routes(sink))
    gateway = store_first(project, 200)
    try:
        accepted = gateway.accepted
        sink.wait_for(20)
        started = time.monotonic()
        assert gateway.terminate(timeout=40) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean stop
        assert time.monotonic() - started < 30
        assert "Application shutdown complete" in gateway.log()
        with sqlite3.connect(project.root / "data" / "gateway.db") as db:
            statuses = dict(db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
        assert "sending" not in statuses, statuses  # claims were given back, not left to expire
        assert statuses.get("pending", 0) > 0  # the stop really interrupted work
        gateway.start()
        wait_until_all_delivered(sink, accepted, timeout=60)
        assert accepted <= set(keys_by_order(sink))
    finally:
        gateway.kill()
        sink.close()


class PersistentSender:
    """Posts events the way a careful sender does: each one again until it is acknowledged
    (202, or 200 duplicate), so kills of the gateway only delay it. Bounded in time."""

    def __init__(self, gateway: GatewayProcess, count: int, threads: int = 16, give_up_after: float = 240.0) -> None:
        self.gateway, self.count, self.threads = gateway, count, threads
        self.deadline = time.monotonic() + give_up_after
        self.acknowledged: set[str] = set()
        self.retried_posts = 0
        self.answers: Counter[str] = Counter()
        self._template = json.loads((EVENTS / "order_created.json").read_text())
        # One client for all threads: a new httpx client per post costs ~50 ms of CPU (its TLS
        # context), which made the sender, not the gateway, the bottleneck.
        self._client = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=threads))
        self._pool = ThreadPoolExecutor(threads)
        self._futures = [self._pool.submit(self._send, n) for n in range(count)]

    def _send(self, number: int) -> None:
        order = f"pedido-{number}"
        body = json.dumps({**self._template, "data": {**self._template["data"], "id": order}})
        while time.monotonic() < self.deadline:
            try:
                response = self._client.post(self.gateway.url(f"/hooks/go?token={TOKEN}"), content=body)
                self.answers[str(response.status_code)] += 1
                if response.status_code in (200, 202):
                    self.acknowledged.add(order)
                    return
            except httpx.HTTPError as exc:
                self.answers[type(exc).__name__] += 1
            self.retried_posts += 1
            time.sleep(0.05)

    def done(self) -> bool:
        return all(f.done() for f in self._futures)

    def wait(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()


def test_five_kills_while_5000_events_are_ingested_and_delivered(project: Project) -> None:
    """kill -9 five times, at random moments, while 5,000 events are posted and delivered;
    restart each time. Every acknowledged event arrives, and every duplicate carries the
    Idempotency-Key of its original."""
    sink = Sink(always(200, delay=0.002))
    project.routes(routes(sink))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}, workers=8).start()
    chance = random.Random(5000)
    kills = 0
    try:
        sender = PersistentSender(gateway, 5000, give_up_after=240)
        while kills < 5:
            time.sleep(chance.uniform(0.5, 3.0))
            gateway.kill()
            kills += 1
            gateway.start()
        sender.wait()
        assert len(sender.acknowledged) == 5000, f"only {len(sender.acknowledged)} acknowledged within the time limit: {sender.answers}"
        assert sender.retried_posts > 0  # the kills really hit the sender
        wait_until_all_delivered(sink, sender.acknowledged, timeout=180)
        keys = keys_by_order(sink)
        lost = sender.acknowledged - set(keys)
        assert lost == set(), f"lost {len(lost)}: {sorted(lost)[:10]}"
        assert all(len(k) == 1 for k in keys.values()), "a redelivery carried a different Idempotency-Key"
        duplicates = len(sink.received) - len(keys)
        print(f"5 kills, 5000 events: {sender.retried_posts} posts retried, {duplicates} redeliveries, 0 lost")
    finally:
        gateway.kill()
        sink.close()


def test_crash_after_the_receiver_answered_but_before_it_was_recorded(project: Project) -> None:
    """The receiver answers 200 to a gateway that is frozen (SIGSTOP) and then killed: the
    answer is never recorded. After a restart the delivery is sent again, with the same
    Idempotency-Key, once its claim expires; nothing is lost."""
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}, workers=8)

    def freeze_then_kill(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        if count == 1:
            assert gateway.process is not None
            gateway.signal_all(signal.SIGSTOP)  # the deliverer cannot read the answer below
            threading.Timer(0.5, gateway.signal_all, (signal.SIGKILL,)).start()
        return 200, {}, b"ok", 0

    sink = Sink(freeze_then_kill)
    project.routes(routes(sink).replace("timeout: 2s", "timeout: 1s"))
    try:
        gateway.start()
        event_id = post_many(gateway, 1)
        sink.wait_for(1)
        assert gateway.process is not None and gateway.process.wait(timeout=10) == -signal.SIGKILL
        with sqlite3.connect(project.root / "data" / "gateway.db") as db:
            assert db.execute("SELECT status, attempts FROM deliveries").fetchall() == [("sending", 0)]  # the 200 was never recorded
        gateway.kill()
        gateway.start()
        first, second = sink.wait_for(2, timeout=60)[:2]
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
        assert second.at - first.at >= 1 + LEASE_MARGIN_SECONDS - 1  # not before the claim expired
        assert keys_by_order(sink) == {next(iter(event_id)): {first.headers["idempotency-key"]}}
    finally:
        gateway.kill()
        sink.close()
