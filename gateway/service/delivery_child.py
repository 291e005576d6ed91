"""The delivery child: a child process of `gateway serve` (gateway/service/child_process.py)
that runs the delivery service (gateway/service/delivery_service.py).

Sending a delivery costs about as much CPU as accepting an event. In the HTTP process, every
burst of deliveries made the senders' requests wait: at 290 events/s (580 deliveries/s) ingest's
p99 was 42-46 ms there, 23-25 ms with the engine in a process of its own (bench/README.md).

The HTTP process tells it three things: `Wake` when an event with deliveries is stored (and the
deliveries recorded as never to be sent, which it counts in its metrics), `Configure` with the
routes in force (first, and after each hot reload), and `Scrape` when /metrics is read: the
delivery metrics live here.
Closing its stdin stops it the way SIGTERM stops `gateway worker`: in-flight deliveries finish
for a while, the rest are given back.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
import uvloop

import gateway.tracing as tracing
from gateway.config import ConfigFiles
from gateway.service.child_process import CannotStart, ChildProcess, Configure, PendingReplies, Ready, Replies, read_stdin, reconfigured, start_child
from gateway.service.delivery_service import DeliveryService
from gateway.service.logs import configure_logging
from gateway.service.reload import RoutesInForce

log = logging.getLogger("gateway.delivery")

SCRAPE_SECONDS = 5.0
WAKE_EVERY_SECONDS = 0.001


class Wake(msgspec.Struct, array_like=True, tag=True):
    not_sent: list[tuple[str, str]]  # (destination, status) of deliveries recorded but never sent


class Scrape(msgspec.Struct, array_like=True, tag=True):
    number: int


class Scraped(msgspec.Struct, array_like=True, tag=True):
    number: int
    text: bytes  # the delivery metrics, Prometheus text format


ToDelivery = Wake | Configure | Scrape
FromDelivery = Ready | Scraped


# --------------------------------------------------------------------------- the HTTP process's side


class DeliveryProcess(ChildProcess):
    """Starts the delivery child, keeps it informed, and starts it again if it dies."""

    name = "delivery child"

    def __init__(self, files: Callable[[], ConfigFiles], database_url: str, concurrency: int) -> None:
        super().__init__("gateway.service.delivery_child", ["--db", database_url, "--workers", str(concurrency)], FromDelivery, files)
        self._scrapes: PendingReplies[bytes | None] = PendingReplies()
        self._woken_at = 0.0
        self._held: asyncio.TimerHandle | None = None

    def wake(self, stored: Any) -> None:
        """New deliveries were stored. If the child is restarting, it finds them when it is
        back; the never-sent counts are lost then, as its other counters are.

        At most one wake-up a WAKE_EVERY_SECONDS: under a flood a pipe write per event cost the
        HTTP process CPU and woke the engine for work it was already claiming. A wake-up held
        back is sent when the interval ends, so no stored delivery waits for the idle poll."""
        if stored.not_sent:
            self._send_wake(stored.not_sent)
        elif stored.deliveries and self._held is None:
            wait = self._woken_at + WAKE_EVERY_SECONDS - time.monotonic()
            if wait <= 0:
                self._send_wake([])
            else:
                self._held = asyncio.get_running_loop().call_later(wait, self._send_wake, [])

    def _send_wake(self, not_sent: list[tuple[str, str]]) -> None:
        if self._held is not None:
            self._held.cancel()
            self._held = None
        self._woken_at = time.monotonic()
        self.send(Wake(not_sent))

    async def scrape(self) -> bytes | None:
        """The child's metrics; None while it is restarting or does not answer."""
        number, future = self._scrapes.open()
        if not self.send(Scrape(number)):
            self._scrapes.drop(number)
            return None
        try:
            return await asyncio.wait_for(future, SCRAPE_SECONDS)
        except TimeoutError:
            return None
        finally:
            self._scrapes.drop(number)

    def received(self, message: Any) -> None:
        self._scrapes.answer(message.number, message.text)

    def lost(self) -> None:
        self._scrapes.answer_all(None)


# --------------------------------------------------------------------------- the child's side


class _DeliveryLoop:
    """What the HTTP process says: wake the engine, take reloaded routes, send the metrics."""

    def __init__(self, routes: RoutesInForce, service: DeliveryService, replies: Replies) -> None:
        self.routes = routes
        self.service = service
        self.replies = replies

    def received(self, message: Any) -> None:
        if isinstance(message, Wake):
            self.service.metrics.count_not_sent(message.not_sent)
            self.service.notify()
        elif isinstance(message, Configure):
            self.routes.config = reconfigured("delivery child", self.routes.config, message.files)
        elif isinstance(message, Scrape):
            self.replies.send(Scraped(message.number, self.service.metrics.render()))


async def _run_child(database_url: str, concurrency: int) -> int:
    try:
        replies, config, store = await start_child("delivery child", database_url)
    except CannotStart as exc:
        return exc.code
    routes = RoutesInForce(config)
    try:
        async with DeliveryService(store, routes, concurrency=concurrency) as service:
            replies.send(Ready(config.version))
            await read_stdin(ToDelivery, _DeliveryLoop(routes, service, replies).received)
    finally:
        await store.close()
        replies.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.service.delivery_child --db URL --workers N`, started by `gateway serve`, which hands it the routes."""
    parser = argparse.ArgumentParser(prog="python -m gateway.service.delivery_child", description="The delivery child of `gateway serve` (not run by hand).")
    parser.add_argument("--db", required=True)
    parser.add_argument("--workers", type=int, default=32)
    arguments = parser.parse_args(argv)
    configure_logging()
    tracing.setup("delivery child")
    try:
        return uvloop.run(_run_child(arguments.db, arguments.workers))
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    sys.exit(main())
