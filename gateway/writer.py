"""The ingest writer: a child process of `gateway serve` (gateway/children.py) that routes,
renders and stores events.

Rendering the templates is most of what ingest costs; in this process it runs on a second core
while the HTTP process goes on reading requests (bench/README.md).

The HTTP process sends each authenticated, well-formed event down the child's stdin and answers
the sender only when the child replies that the event and its deliveries are committed, so
"nothing is acknowledged before it is stored" holds across the two processes. If the child
dies, events in flight get 503 (GO sends them again), and it is started again.

Each event carries the routes version the HTTP process has in force; a child holding another
version loads routes.yaml before routing it, so after a hot reload no event is rendered with
the routes it replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from gateway.children import CannotStart, ChildProcess, Ready, Replies, open_config_and_store, read_stdin, take_frames_fd
from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.ingest import Accepted, accept
from gateway.store import Store, StoreUnavailable

log = logging.getLogger("gateway.writer")


# --------------------------------------------------------------------------- messages


class Submit(msgspec.Struct, array_like=True, tag=True):
    number: int
    source: str
    body: bytes
    received_at: float
    version: str  # the routes version in force in the HTTP process


class Stored(msgspec.Struct, array_like=True, tag=True):
    number: int
    accepted: Accepted


class Refused(msgspec.Struct, array_like=True, tag=True):
    number: int
    detail: str


FromChild = Ready | Stored | Refused


# --------------------------------------------------------------------------- the HTTP process's side


class WriterProcess(ChildProcess):
    """Starts the child, hands it events, and starts it again if it dies."""

    name = "ingest writer"

    def __init__(self, config_path: str, database_url: str, version: Callable[[], str]) -> None:
        super().__init__("gateway.writer", ["--config", config_path, "--db", database_url], FromChild)
        self.current_version = version
        self._waiting: dict[int, asyncio.Future[Accepted]] = {}
        self._numbers = iter(range(1, 1 << 62))

    async def ingest(self, source: str, body: bytes, event: dict[str, Any], received_at: float) -> Accepted:
        number = next(self._numbers)
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        if not self.send(Submit(number, source, body, received_at, self.current_version())):
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

    def __init__(self, config_path: str, config: Config, store: Store, replies: Replies) -> None:
        self.config_path = config_path
        self.config = config
        self.store = store
        self.replies = replies
        self.pending: set[asyncio.Task[None]] = set()
        self._tried_version = config.version

    def received(self, submit: Submit) -> None:
        task = asyncio.get_running_loop().create_task(self.store_event(submit))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def store_event(self, submit: Submit) -> None:
        try:
            self.follow(submit.version)
            event = msgspec.json.decode(submit.body)
            reply: Stored | Refused = Stored(submit.number, await accept(self.config, self.store, submit.source, submit.body, event, submit.received_at))
        except StoreUnavailable as exc:
            log.error("event not stored: %s", exc)
            reply = Refused(submit.number, "the gateway could not store the event; send it again later")
        except Exception:
            log.exception("event not stored: unexpected error")
            reply = Refused(submit.number, "the gateway failed unexpectedly; the event was not stored, please send it again")
        self.replies.send(reply)  # the replies of one store batch leave in one write

    def follow(self, version: str) -> None:
        """Load routes.yaml when the HTTP process has reloaded it. Once per version asked for:
        if the file changed again since, the newer routes are kept until it catches up."""
        if version in (self.config.version, self._tried_version):
            return
        self._tried_version = version
        try:  # in the event loop on purpose: no event is routed until the new routes are in
            self.config = load_config(self.config_path, os.environ)
        except ConfigError as exc:
            log.error("ingest writer: routes.yaml no longer loads, version %s stays: %s", self.config.version, exc.problems[0] if exc.problems else exc)


async def _run_child(config_path: str, database_url: str) -> int:
    replies = Replies(take_frames_fd())
    try:
        config, store = await open_config_and_store("ingest writer", config_path, database_url)
    except CannotStart as exc:
        return exc.code
    child = _Child(config_path, config, store, replies)
    replies.send(Ready(config.version))
    await read_stdin(Submit, child.received)
    while child.pending:  # what was received before stdin closed is still stored and answered
        await asyncio.gather(*child.pending)
    await store.close()
    replies.close()  # sends what is still buffered
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.writer --config routes.yaml --db URL`, started by `gateway serve`."""
    from gateway.server import configure_logging

    parser = argparse.ArgumentParser(prog="python -m gateway.writer", description="The ingest writer of `gateway serve` (not run by hand).")
    parser.add_argument("--config", required=True)
    parser.add_argument("--db", required=True)
    arguments = parser.parse_args(argv)
    configure_logging()
    return asyncio.run(_run_child(arguments.config, arguments.db))


if __name__ == "__main__":
    sys.exit(main())
