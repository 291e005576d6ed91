"""The deliverer: a child process of `gateway serve` (gateway/children.py) that runs the delivery
engine (gateway/delivery.py).

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
from collections.abc import Callable
from typing import Any

import msgspec

from gateway import heap
from gateway.children import CannotStart, ChildProcess, Configure, Ready, Replies, read_stdin, reconfigured, start_child
from gateway.config import Config, ConfigFiles
from gateway.delivery import DeliveryEngine, delivery_client
from gateway.metrics import Metrics

log = logging.getLogger("gateway.deliverer")

SCRAPE_SECONDS = 5.0
STOP_GRACE_SECONDS = 25.0  # in-flight deliveries get this long once stdin closes (children.STOP_SECONDS is 30)


class Wake(msgspec.Struct, array_like=True, tag=True):
    not_sent: list[tuple[str, str]]  # (destination, status) of deliveries recorded but never sent


class Scrape(msgspec.Struct, array_like=True, tag=True):
    number: int


class Scraped(msgspec.Struct, array_like=True, tag=True):
    number: int
    text: bytes  # the delivery metrics, Prometheus text format


ToChild = Wake | Configure | Scrape
FromChild = Ready | Scraped


# --------------------------------------------------------------------------- the HTTP process's side


class DelivererProcess(ChildProcess):
    """Starts the deliverer, keeps it informed, and starts it again if it dies."""

    name = "deliverer"

    def __init__(self, files: Callable[[], ConfigFiles], database_url: str, concurrency: int) -> None:
        super().__init__("gateway.deliverer", ["--db", database_url, "--workers", str(concurrency)], FromChild, files)
        self._scrapes: dict[int, asyncio.Future[bytes | None]] = {}
        self._numbers = iter(range(1, 1 << 62))

    def wake(self, not_sent: list[tuple[str, str]]) -> None:
        """New deliveries were stored. If the deliverer is restarting, it finds them when it is
        back; the never-sent counts are lost then, as its other counters are."""
        self.send(Wake(not_sent))

    async def scrape(self) -> bytes | None:
        """The deliverer's metrics; None while it is restarting or does not answer."""
        number = next(self._numbers)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        if not self.send(Scrape(number)):
            return None
        self._scrapes[number] = future
        try:
            return await asyncio.wait_for(future, SCRAPE_SECONDS)
        except TimeoutError:
            return None
        finally:
            self._scrapes.pop(number, None)

    def received(self, message: Any) -> None:
        future = self._scrapes.get(message.number)
        if future is not None and not future.done():
            future.set_result(message.text)

    def lost(self) -> None:
        for future in self._scrapes.values():
            if not future.done():
                future.set_result(None)


# --------------------------------------------------------------------------- the child's side


class _Child:
    """What the HTTP process says: wake the engine, take reloaded routes, send the metrics."""

    def __init__(self, config: Config, engine_metrics: Metrics, replies: Replies) -> None:
        self.config = config
        self.metrics = engine_metrics
        self.replies = replies
        self.engine: DeliveryEngine | None = None

    def received(self, message: Any) -> None:
        if isinstance(message, Wake):
            for destination, status in message.not_sent:
                self.metrics.deliveries.labels(destination, status).inc()
            if self.engine is not None:
                self.engine.notify()
        elif isinstance(message, Configure):
            self.config = reconfigured("deliverer", self.config, message.files)
        elif isinstance(message, Scrape):
            self.replies.send(Scraped(message.number, self.metrics.render_deliveries()))



async def _run_child(database_url: str, concurrency: int) -> int:
    try:
        replies, config, store = await start_child("deliverer", database_url)
    except CannotStart as exc:
        return exc.code
    child = _Child(config, Metrics(), replies)
    try:
        async with delivery_client(concurrency, lambda: child.config.egress_allow) as client:
            child.engine = DeliveryEngine(store, lambda: child.config, client, child.metrics, concurrency=concurrency)
            running = asyncio.create_task(child.engine.run())
            heap.settle()
            replies.send(Ready(config.version))
            await read_stdin(ToChild, child.received)
            await child.engine.stop(STOP_GRACE_SECONDS)
            await running
    finally:
        await store.close()
        replies.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.deliverer --db URL --workers N`, started by `gateway serve`, which hands it the routes."""
    from gateway.server import configure_logging

    parser = argparse.ArgumentParser(prog="python -m gateway.deliverer", description="The deliverer of `gateway serve` (not run by hand).")
    parser.add_argument("--db", required=True)
    parser.add_argument("--workers", type=int, default=32)
    arguments = parser.parse_args(argv)
    configure_logging()
    return asyncio.run(_run_child(arguments.db, arguments.workers))


if __name__ == "__main__":
    sys.exit(main())
