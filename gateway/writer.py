"""The ingest writer: a child process of `gateway serve` (gateway/children.py) that routes,
renders and stores events.

Rendering the templates is most of what ingest costs; in this process it runs on a second core
while the HTTP process goes on reading requests (bench/README.md).

The HTTP process sends each authenticated, well-formed event down the child's stdin and answers
the sender only when the child replies that the event and its deliveries are committed, so
"nothing is acknowledged before it is stored" holds across the two processes. If the child
dies, events in flight get 503 (GO sends them again), and it is started again.

After a hot reload the HTTP process hands the child the new routes (`Configure`) before the
next event, down the same pipe: each event is routed by the version in force when the HTTP
process took it, never by the routes it replaced nor by files not yet checked.
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
from gateway.ingest import Accepted, accept
from gateway.store import Store, StoreUnavailable

log = logging.getLogger("gateway.writer")


# --------------------------------------------------------------------------- messages


class Submit(msgspec.Struct, array_like=True, tag=True):
    number: int
    source: str
    body: bytes
    received_at: float


class Stored(msgspec.Struct, array_like=True, tag=True):
    number: int
    accepted: Accepted


class Refused(msgspec.Struct, array_like=True, tag=True):
    number: int
    detail: str


ToChild = Configure | Submit
FromChild = Ready | Stored | Refused


# --------------------------------------------------------------------------- the HTTP process's side


class WriterProcess(ChildProcess):
    """Starts the child, hands it events, and starts it again if it dies."""

    name = "ingest writer"

    def __init__(self, files: Callable[[], ConfigFiles], database_url: str) -> None:
        super().__init__("gateway.writer", ["--db", database_url], FromChild, files)
        self._waiting: dict[int, asyncio.Future[Accepted]] = {}
        self._numbers = iter(range(1, 1 << 62))

    async def ingest(self, source: str, body: bytes, event: dict[str, Any], received_at: float) -> Accepted:
        number = next(self._numbers)
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        if not self.send(Submit(number, source, body, received_at)):
            raise StoreUnavailable("the gateway's ingest writer is restarting")
        self._waiting[number] = future
        return await future

    def received(self, message: Any) -> None:
        future = self._waiting.pop(message.number, None)
        if future is None or future.done():
            return
        if isinstance(message, Stored):
            future.set_result(message.accepted)
        else:
            future.set_exception(StoreUnavailable(message.detail))

    def lost(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(StoreUnavailable("the gateway's ingest writer stopped before storing the event"))


# --------------------------------------------------------------------------- the child's side


class _Child:
    """Takes Submit messages from stdin, stores each event, answers Stored or Refused."""

    def __init__(self, config: Config, store: Store, replies: Replies) -> None:
        self.config = config
        self.store = store
        self.replies = replies
        self.pending: set[asyncio.Task[None]] = set()

    def received(self, message: Configure | Submit) -> None:
        if isinstance(message, Configure):
            self.config = reconfigured("ingest writer", self.config, message.files)
            return
        task = asyncio.get_running_loop().create_task(self.store_event(message, self.config))  # the routes in force now
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def store_event(self, submit: Submit, config: Config) -> None:
        try:
            event = msgspec.json.decode(submit.body)
            reply: Stored | Refused = Stored(submit.number, await accept(config, self.store, submit.source, submit.body, event, submit.received_at))
        except StoreUnavailable as exc:
            log.error("event not stored: %s", exc)
            reply = Refused(submit.number, "the gateway could not store the event; send it again later")
        except Exception:
            log.exception("event not stored: unexpected error")
            reply = Refused(submit.number, "the gateway failed unexpectedly; the event was not stored, please send it again")
        self.replies.send(reply)  # the replies of one store batch leave in one write


async def _run_child(database_url: str) -> int:
    try:
        replies, config, store = await start_child("ingest writer", database_url)
    except CannotStart as exc:
        return exc.code
    child = _Child(config, store, replies)
    heap.settle()
    replies.send(Ready(config.version))
    await read_stdin(ToChild, child.received)
    while child.pending:  # what was received before stdin closed is still stored and answered
        await asyncio.gather(*child.pending)
    await store.close()
    replies.close()  # sends what is still buffered
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.writer --db URL`, started by `gateway serve`, which hands it the routes."""
    from gateway.server import configure_logging

    parser = argparse.ArgumentParser(prog="python -m gateway.writer", description="The ingest writer of `gateway serve` (not run by hand).")
    parser.add_argument("--db", required=True)
    arguments = parser.parse_args(argv)
    configure_logging()
    return asyncio.run(_run_child(arguments.db))


if __name__ == "__main__":
    sys.exit(main())
