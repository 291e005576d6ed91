"""The ingest child: a child process of `gateway serve` (gateway/service/child_process.py)
that routes, renders and stores events.

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
import uvloop

import gateway.tracing as tracing
from gateway.config import Config, ConfigFiles
from gateway.ingest import Accepted, accept
from gateway.service import gc_freeze
from gateway.service.child_process import CannotStart, ChildProcess, Configure, PendingReplies, Ready, Replies, read_stdin, reconfigured, start_child
from gateway.service.logs import configure_logging
from gateway.store import Store, StoreUnavailable

log = logging.getLogger("gateway.ingest")


# --------------------------------------------------------------------------- messages


class Submit(msgspec.Struct, array_like=True, tag=True):
    number: int
    source: str
    body: bytes
    received_at: float
    token: str | None = None  # which of the source's tokens it came with, masked
    trace: str | None = None  # the ingest span's traceparent, when traces are on


class Stored(msgspec.Struct, array_like=True, tag=True):
    number: int
    accepted: Accepted


class Refused(msgspec.Struct, array_like=True, tag=True):
    number: int
    detail: str


ToIngest = Configure | Submit
FromIngest = Ready | Stored | Refused


# --------------------------------------------------------------------------- the HTTP process's side


class IngestProcess(ChildProcess):
    """Starts the ingest child, hands it events, and starts it again if it dies."""

    name = "ingest child"

    def __init__(self, files: Callable[[], ConfigFiles], database_url: str) -> None:
        super().__init__("gateway.service.ingest_child", ["--db", database_url], FromIngest, files)
        self._replies: PendingReplies[Accepted] = PendingReplies()

    async def ingest(self, source: str, body: bytes, event: dict[str, Any], received_at: float, token: str | None = None, trace: str | None = None) -> Accepted:
        number, future = self._replies.open()
        if not self.send(Submit(number, source, body, received_at, token, trace)):
            self._replies.drop(number)
            raise StoreUnavailable("the gateway's ingest child is restarting")
        return await future

    def received(self, message: Any) -> None:
        if isinstance(message, Stored):
            self._replies.answer(message.number, message.accepted)
        else:
            self._replies.answer(message.number, error=StoreUnavailable(message.detail))

    def lost(self) -> None:
        self._replies.answer_all(error=StoreUnavailable("the gateway's ingest child stopped before storing the event"))


# --------------------------------------------------------------------------- the child's side


class _IngestLoop:
    """Takes Submit messages from stdin, stores each event, answers Stored or Refused."""

    def __init__(self, config: Config, store: Store, replies: Replies) -> None:
        self.config = config
        self.store = store
        self.replies = replies
        self.pending: set[asyncio.Task[None]] = set()

    def received(self, message: Configure | Submit) -> None:
        if isinstance(message, Configure):
            self.config = reconfigured("ingest child", self.config, message.files)
            return
        task = asyncio.get_running_loop().create_task(self.store_event(message, self.config))  # the routes in force now
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def store_event(self, submit: Submit, config: Config) -> None:
        try:
            event = msgspec.json.decode(submit.body)
            reply: Stored | Refused = Stored(submit.number, await accept(config, self.store, submit.source, submit.body, event, submit.received_at, submit.token, submit.trace))
        except StoreUnavailable as exc:
            log.error("event not stored: %s", exc)
            reply = Refused(submit.number, "the gateway could not store the event; send it again later")
        except Exception:
            log.exception("event not stored: unexpected error")
            reply = Refused(submit.number, "the gateway failed unexpectedly; the event was not stored, please send it again")
        self.replies.send(reply)  # the replies of one store batch leave in one write


async def _run_child(database_url: str) -> int:
    try:
        replies, config, store = await start_child("ingest child", database_url)
    except CannotStart as exc:
        return exc.code
    child = _IngestLoop(config, store, replies)
    gc_freeze.settle()
    replies.send(Ready(config.version))
    await read_stdin(ToIngest, child.received)
    while child.pending:  # what was received before stdin closed is still stored and answered
        await asyncio.gather(*child.pending)
    await store.close()
    replies.close()  # sends what is still buffered
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.service.ingest_child --db URL`, started by `gateway serve`, which hands it the routes."""
    parser = argparse.ArgumentParser(prog="python -m gateway.service.ingest_child", description="The ingest child of `gateway serve` (not run by hand).")
    parser.add_argument("--db", required=True)
    arguments = parser.parse_args(argv)
    configure_logging()
    tracing.setup("ingest child")
    try:
        return uvloop.run(_run_child(arguments.db))
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    sys.exit(main())
