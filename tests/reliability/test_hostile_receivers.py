"""Receivers that misbehave: one answers a 1 GiB body, one trickles a byte a second, one
sleeps past the timeout. Each attempt ends (at the timeout, or after the 64 KiB kept), the
gateway's memory stays flat, and ingest and healthy destinations go on as before."""

from __future__ import annotations

import json
import socket
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Sink, always, rss_bytes

pytestmark = pytest.mark.slow
TOKEN = "token-de-teste-123"
GIB = 1 << 30
CHUNK = b"\0" * (64 * 1024)
# Few events: after five timeouts in a row a destination is backed off as a whole (10 s, then
# 20 s...), so each more event to a bad receiver costs the test seconds of waiting.
EVENTS_SENT = 4


class RawReceiver:
    """A socket server answering every request the same bad way, bounded in time and bytes."""

    def __init__(self, mode: str, limit_seconds: float = 30.0) -> None:
        self.mode, self.limit_seconds = mode, limit_seconds
        self.requests = 0
        self.bytes_sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/in"

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        deadline = time.monotonic() + self.limit_seconds
        with connection:
            try:
                self._read_request(connection)
                self.requests += 1
                if self.mode == "huge":
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GIB)
                    while self.bytes_sent < GIB and time.monotonic() < deadline and not self._closing.is_set():
                        connection.sendall(CHUNK)
                        self.bytes_sent += len(CHUNK)
                elif self.mode == "trickle":
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                    while time.monotonic() < deadline and not self._closing.wait(1.0):
                        connection.sendall(b".")
                else:  # sleep: never answer
                    self._closing.wait(max(0.0, deadline - time.monotonic()))
            except OSError:
                pass  # the gateway hung up: what it should do

    @staticmethod
    def _read_request(connection: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                raise OSError("closed")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
        while len(body) < length:
            body += connection.recv(65536)

    def close(self) -> None:
        self._closing.set()
        self._listener.close()


def post(client: httpx.Client, gateway: GatewayProcess, number: int) -> float:
    """Post one event; the seconds until the 202."""
    template = json.loads((EVENTS / "order_created.json").read_text())
    body = {**template, "data": {**template["data"], "id": f"pedido-{number}"}}
    started = time.perf_counter()
    response = client.post(gateway.url(f"/hooks/go?token={TOKEN}"), json=body)
    assert response.status_code == 202, response.text
    return time.perf_counter() - started


@pytest.fixture
def receivers() -> Iterator[dict[str, RawReceiver]]:
    made = {mode: RawReceiver(mode) for mode in ("huge", "trickle", "sleep")}
    yield made
    for receiver in made.values():
        receiver.close()


def test_huge_trickling_and_sleeping_receivers(project: Project, receivers: dict[str, RawReceiver]) -> None:
    healthy = Sink(always(200))
    destinations = "\n".join(
        f'          {mode}: {{type: http, url: "{r.url()}", timeout: 2s, retry: {{attempts: 3, first: 100ms, max: 200ms}}}}' for mode, r in receivers.items()
    )
    project.routes(
        f"""
        version: 1
        settings: {{egress_allow: [127.0.0.0/8]}}
        sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
        destinations:
          healthy: {{type: http, url: "{healthy.url('/in')}"}}
{destinations}
        routes:
          - name: tudo
            when: {{event_id: ORDER_CREATED}}
            send:
              - {{to: healthy, body: '{{"id": "{{{{ data.id }}}}"}}'}}
              - {{to: huge, body: '{{"id": "{{{{ data.id }}}}"}}'}}
              - {{to: trickle, body: '{{"id": "{{{{ data.id }}}}"}}'}}
              - {{to: sleep, body: '{{"id": "{{{{ data.id }}}}"}}'}}
        """
    )
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        assert gateway.process is not None
        with httpx.Client(timeout=30) as client:
            # the baseline: ingest alone (no route takes these probes, so nothing is sent)
            baseline = [post_probe(client, gateway) for _ in range(20)]
            memory_before = rss_bytes(gateway.process.pid)
            during = [post(client, gateway, n) for n in range(EVENTS_SENT)]
            healthy.wait_for(EVENTS_SENT, timeout=30)
            for _ in range(40):  # while the bad receivers are busy: bounded, ~4 s
                during.append(post_probe(client, gateway))
                time.sleep(0.1)
        settled = wait_settled(project.root / "data" / "gateway.db", expected=4 * EVENTS_SENT, timeout=120)
        memory_after = rss_bytes(gateway.process.pid)

        by_destination: dict[str, list[dict]] = {}
        for delivery in settled:
            by_destination.setdefault(delivery["destination"], []).append(delivery)
        assert all(d["status"] == "delivered" for d in by_destination["healthy"])
        for delivery in by_destination["huge"]:  # a 200: kept the first 64 KiB and hung up
            assert delivery["status"] == "delivered"
            assert all(len(a["response"] or "") <= 64 * 1024 for a in delivery["attempts_log"])
        assert receivers["huge"].requests == EVENTS_SENT
        assert receivers["huge"].bytes_sent < EVENTS_SENT * GIB // 8  # far from 4 GiB: each read stopped early
        for mode in ("trickle", "sleep"):
            for delivery in by_destination[mode]:
                assert delivery["status"] == "dead" and "no complete answer within 2 s" in delivery["last_error"]
                assert all(1.9 <= a["duration_ms"] / 1000 <= 6 for a in delivery["attempts_log"]), delivery["attempts_log"]
        growth = memory_after - memory_before
        print(f"huge receiver sent {receivers['huge'].bytes_sent / 1e6:.1f} MB; gateway RSS {memory_before / 1e6:.0f} -> {memory_after / 1e6:.0f} MB;"
              f" ingest median {statistics.median(baseline) * 1000:.1f} ms alone, {statistics.median(during) * 1000:.1f} ms during")
        assert growth < 64 * 1024 * 1024, f"the gateway grew by {growth / 1e6:.0f} MB"
        # ingest is not slowed down: a blocked event loop would show seconds here
        assert statistics.median(during) < statistics.median(baseline) + 0.25, (statistics.median(baseline), statistics.median(during))
        assert max(during) < 5.0  # a loop blocked by a receiver would stall for its whole 30 s
    finally:
        gateway.kill()
        healthy.close()


def post_probe(client: httpx.Client, gateway: GatewayProcess) -> float:
    """An event no route takes (accepted, nothing to deliver): ingest's own latency."""
    event = json.loads((EVENTS / "order_cancel.json").read_text())
    event["data"]["id"] = f"sonda-{time.perf_counter_ns()}"
    started = time.perf_counter()
    response = client.post(gateway.url(f"/hooks/go?token={TOKEN}"), json=event)
    assert response.status_code == 202, response.text
    return time.perf_counter() - started


def stored_deliveries(database: Path) -> list[dict]:
    """Every delivery with its attempts, read from the gateway's SQLite file."""
    with sqlite3.connect(database) as db:
        db.row_factory = sqlite3.Row
        deliveries = [dict(row) for row in db.execute("SELECT id, destination, status, last_error FROM deliveries")]
        attempts = [dict(row) for row in db.execute("SELECT delivery_id, duration_ms, response FROM attempts ORDER BY id")]
    for delivery in deliveries:
        delivery["attempts_log"] = [a for a in attempts if a["delivery_id"] == delivery["id"]]
    return deliveries


def wait_settled(database: Path, expected: int, timeout: float) -> list[dict]:
    """Every delivery, once none is pending or sending (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = stored_deliveries(database)
        if len(rows) >= expected and all(d["status"] not in ("pending", "sending") for d in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled within {timeout} s: {[d['status'] for d in rows]}")
        time.sleep(0.5)
