"""The ingest writer: a child process of `gateway serve` that routes, renders and stores events.

Why a process: Python runs one thread of Python code at a time, and rendering the templates is
most of what ingest costs. In a second process it runs on a second core while the HTTP process
goes on reading requests: 0.60 of a bare endpoint's throughput instead of 0.46 (bench/README.md).

The HTTP process sends each authenticated, well-formed event down the child's stdin and answers
the sender only when the child replies that the event and its deliveries are committed, so
"nothing is acknowledged before it is stored" holds across the two processes. If the child
dies, events in flight get 503 (GO sends them again), and it is started again.

Each event carries the routes version the HTTP process has in force; a child holding another
version loads routes.yaml before routing it, so after a hot reload no event is rendered with
the routes it replaced.

Frames on the pipes are a 4-byte length then a msgpack message (msgspec). The child keeps its
fd 1 for frames only: anything printed there by mistake would corrupt them, so its sys.stdout
goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.ingest import Accepted, accept
from gateway.store import Store, StoreUnavailable, open_store

log = logging.getLogger("gateway.writer")

STARTUP_SECONDS = 60.0
STOP_SECONDS = 30.0
RESTART_DELAYS = (0.2, 1.0, 5.0)  # between restarts of a child that keeps dying; then every 5 s
RESTART_TRIES = 1000  # about 80 minutes of a child that cannot start


# --------------------------------------------------------------------------- messages


class Submit(msgspec.Struct, array_like=True, tag=True):
    number: int
    source: str
    body: bytes
    received_at: float
    version: str  # the routes version in force in the HTTP process


class Ready(msgspec.Struct, array_like=True, tag=True):
    version: str


class Stored(msgspec.Struct, array_like=True, tag=True):
    number: int
    accepted: Accepted


class Refused(msgspec.Struct, array_like=True, tag=True):
    number: int
    detail: str


FromChild = Ready | Stored | Refused


class _Frames:
    """Length-prefixed messages: `frame` encodes one, `feed` takes bytes as they arrive (in any
    pieces) and returns the messages completed."""

    def __init__(self, decoder: msgspec.msgpack.Decoder[Any]) -> None:
        self._decoder = decoder
        self._buffer = bytearray()
        self._encoder = msgspec.msgpack.Encoder()

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        messages, start = [], 0
        while len(self._buffer) - start >= 4:
            size = int.from_bytes(self._buffer[start:start + 4], "big")
            if len(self._buffer) - start - 4 < size:
                break
            messages.append(self._decoder.decode(self._buffer[start + 4:start + 4 + size]))
            start += 4 + size
        del self._buffer[:start]
        return messages

    def frame(self, message: Any) -> bytes:
        payload = self._encoder.encode(message)
        return len(payload).to_bytes(4, "big") + payload


# --------------------------------------------------------------------------- the HTTP process's side


class WriterProcess:
    """Starts the child, hands it events, and starts it again if it dies."""

    def __init__(self, config_path: str, database_url: str, version: Callable[[], str]) -> None:
        self.config_path = config_path
        self.database_url = database_url
        self.current_version = version
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._waiting: dict[int, asyncio.Future[Accepted]] = {}
        self._numbers = iter(range(1, 1 << 62))
        self._frames = _Frames(msgspec.msgpack.Decoder(FromChild))
        self._ready: asyncio.Future[str] | None = None
        self._exited: asyncio.Event = asyncio.Event()
        self._stopping = False
        self._restarts: asyncio.Task[None] | None = None
        self.version: str | None = None

    @property
    def ready(self) -> bool:
        return self.version is not None

    async def start(self) -> None:
        """Start the child and wait until it has loaded routes.yaml and opened the store."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._exited = asyncio.Event()
        command = [sys.executable, "-m", "gateway.writer", "--config", self.config_path, "--db", self.database_url]
        self._transport, _ = await loop.subprocess_exec(lambda: _ChildPipes(self), *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None)
        self._stdin = self._transport.get_pipe_transport(0)  # type: ignore[assignment]
        try:
            self.version = await asyncio.wait_for(asyncio.shield(self._ready), STARTUP_SECONDS)
        except TimeoutError:
            self._transport.kill()
            raise StoreUnavailable(f"the ingest writer did not start within {STARTUP_SECONDS:g} s") from None
        log.debug("ingest writer %d ready, routes version %s", self._transport.get_pid(), self.version)

    async def ingest(self, source: str, body: bytes, event: dict[str, Any], received_at: float) -> Accepted:
        if not self.ready or self._stdin is None or self._stdin.is_closing():
            raise StoreUnavailable("the gateway's ingest writer is restarting")
        number = next(self._numbers)
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        self._stdin.write(self._frames.frame(Submit(number, source, body, received_at, self.current_version())))
        return await future

    async def stop(self) -> None:
        """Close the child's stdin: it finishes what it holds, closes the store and exits."""
        self._stopping = True
        if self._restarts:
            self._restarts.cancel()
        if self._transport is None:
            return
        if self._stdin is not None:
            self._stdin.close()
        try:
            await asyncio.wait_for(self._exited.wait(), STOP_SECONDS)
        except TimeoutError:
            log.error("the ingest writer did not stop within %g s; killing it", STOP_SECONDS)
            self._transport.kill()
            await self._exited.wait()
        self._transport.close()

    # called by _ChildPipes

    def _received(self, data: bytes) -> None:
        for message in self._frames.feed(data):
            if isinstance(message, Stored):
                future = self._waiting.pop(message.number, None)
                if future is not None and not future.done():
                    future.set_result(message.accepted)
            elif isinstance(message, Refused):
                future = self._waiting.pop(message.number, None)
                if future is not None and not future.done():
                    future.set_exception(StoreUnavailable(message.detail))
            elif isinstance(message, Ready):
                self.version = message.version
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(message.version)

    def _child_exited(self, code: int | None) -> None:
        self.version = None
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(StoreUnavailable("the gateway's ingest writer stopped before storing the event"))
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(StoreUnavailable(f"the ingest writer could not start (exit code {code}); the lines above say why"))
        self._exited.set()
        if not self._stopping and self._ready is not None and self._ready.done() and not self._ready.exception():
            log.error("the ingest writer exited (code %s); starting it again", code)
            self._restarts = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        for attempt in range(RESTART_TRIES):
            await asyncio.sleep(RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)])
            if self._transport is not None:
                self._transport.close()
            try:
                await self.start()
                log.info("the ingest writer is running again")
                return
            except (StoreUnavailable, OSError) as exc:
                log.error("the ingest writer could not start again: %s", exc)
        log.critical("the ingest writer could not be started %d times; events get 503 until `gateway serve` is restarted", RESTART_TRIES)


class _ChildPipes(asyncio.SubprocessProtocol):
    def __init__(self, owner: WriterProcess) -> None:
        self.owner = owner

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.owner._received(data)

    def connection_lost(self, exc: Exception | None) -> None:  # exited, and every pipe read to the end
        transport = self.owner._transport
        self.owner._child_exited(transport.get_returncode() if transport else None)


# --------------------------------------------------------------------------- the child's side


class _Child:
    """Reads Submit frames from stdin, stores each event, writes Stored/Refused frames."""

    def __init__(self, config_path: str, config: Config, store: Store, frames_out: int) -> None:
        self.config_path = config_path
        self.config = config
        self.store = store
        self.frames = _Frames(msgspec.msgpack.Decoder(Submit))
        self.out = os.fdopen(frames_out, "wb")  # buffered: it writes a frame whole, even if the pipe takes it in parts
        self.pending: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()
        self._outgoing = bytearray()
        self._tried_version = config.version

    def received(self, data: bytes) -> None:
        for submit in self.frames.feed(data):
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
        self.send(reply)

    def send(self, message: Any) -> None:
        """Replies finished in the same loop turn (a store batch) leave in one write."""
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self.flush)
        self._outgoing += self.frames.frame(message)

    def flush(self) -> None:
        if not self._outgoing:
            return
        data, self._outgoing = bytes(self._outgoing), bytearray()
        with contextlib.suppress(BrokenPipeError):  # the HTTP process is gone: nobody to tell
            self.out.write(data)
            self.out.flush()

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


class _StdinPipe(asyncio.Protocol):
    def __init__(self, child: _Child) -> None:
        self.child = child

    def data_received(self, data: bytes) -> None:
        self.child.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.child.closed.set()


async def _run_child(config_path: str, database_url: str) -> int:
    frames_out = os.dup(1)
    os.dup2(2, 1)  # print() and stray writes go to stderr, never into the frames
    try:
        config = load_config(config_path, os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"ingest writer: {problem}", file=sys.stderr)
        return 2
    store = open_store(database_url)
    try:
        await store.open()
    except StoreUnavailable as exc:
        print(f"ingest writer: {exc}", file=sys.stderr)
        return 3
    child = _Child(config_path, config, store, frames_out)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: _StdinPipe(child), sys.stdin.buffer)
    child.send(Ready(config.version))
    await child.closed.wait()
    while child.pending:  # what was received before stdin closed is still stored and answered
        await asyncio.gather(*child.pending)
    child.flush()
    await store.close()
    with contextlib.suppress(OSError):  # the HTTP process may be gone already
        child.out.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.writer --config routes.yaml --db URL`, started by `gateway serve`."""
    from gateway.server import configure_logging

    parser = argparse.ArgumentParser(prog="python -m gateway.writer", description="The ingest writer of `gateway serve` (not run by hand).")
    parser.add_argument("--config", required=True)
    parser.add_argument("--db", required=True)
    arguments = parser.parse_args(argv)
    configure_logging()
    # Ctrl-C and a service manager's SIGTERM reach the whole process group; the HTTP process
    # decides when to stop, and closing our stdin is how it says so.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return asyncio.run(_run_child(arguments.config, arguments.db))


if __name__ == "__main__":
    sys.exit(main())
