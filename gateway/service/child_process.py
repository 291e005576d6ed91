"""What the child processes of `gateway serve` share: the ingest child
(gateway/service/ingest_child.py) and the delivery child (gateway/service/delivery_child.py).

Why processes: Python runs one thread of Python code at a time. Rendering events and sending
deliveries each take most of a core at a few hundred events a second; in processes of their own
they run beside the HTTP process instead of between its requests (bench/README.md).

Each child is `python -m <module>`, spoken to over its stdin and its stdout with frames: a 4-byte
length, then a msgpack message (msgspec). The first message a child gets is `Configure`: the
bytes of routes.yaml and of the templates folder that the HTTP process loaded, and it gets
another after each hot reload. So the three processes run one version of the routes, even when
the files on disk have changed again since (or no longer load), and a restarted child runs the
version in force, not what the disk holds now. A child keeps its fd 1 for frames only: anything
printed there by mistake would corrupt them, so its sys.stdout goes to stderr. It ignores the
SIGINT and SIGTERM sent to the whole process group: the HTTP process decides when it stops, by
closing the child's stdin. If a child dies, the HTTP process starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, BinaryIO, Generic, TypeVar

import msgspec
import tenacity

from gateway.config import Config, ConfigFiles, load_config
from gateway.delivery.retry import backoff
from gateway.errors import ConfigError
from gateway.service import gc_freeze
from gateway.store import Store, StoreUnavailable, open_store

log = logging.getLogger("gateway.children")

STARTUP_SECONDS = 60.0
STOP_SECONDS = 30.0
RESTART_FIRST_SECONDS, RESTART_MAX_SECONDS = 0.2, 5.0  # between restarts of a child that keeps dying
RESTART_TRIES = 1000  # about 80 minutes of a child that cannot start
T = TypeVar("T")


class Ready(msgspec.Struct, array_like=True, tag=True):
    """A child's first message: routes.yaml is loaded (this version) and the store is open."""

    version: str


class Configure(msgspec.Struct, array_like=True, tag=True):
    """The routes to run: a child's first message, and one after each hot reload."""

    files: ConfigFiles


class Frames:
    """Length-prefixed messages: `frame` encodes one, `feed` takes bytes as they arrive (in any
    pieces) and returns the messages completed."""

    def __init__(self, decoder: msgspec.msgpack.Decoder[Any] | None = None) -> None:
        self._decoder = decoder  # None: this side only sends
        self._buffer = bytearray()
        self._encoder = msgspec.msgpack.Encoder()

    def feed(self, data: bytes) -> list[Any]:
        assert self._decoder is not None, "a Frames without a decoder only sends"
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


class PendingReplies(Generic[T]):
    """Numbered requests to a child, and the futures waiting for their replies."""

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[T]] = {}
        self._numbers = itertools.count(1)

    def open(self) -> tuple[int, asyncio.Future[T]]:
        number = next(self._numbers)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        return number, future

    def drop(self, number: int) -> None:
        self._waiting.pop(number, None)

    def answer(self, number: int, result: T | None = None, error: BaseException | None = None) -> None:
        future = self._waiting.pop(number, None)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def answer_all(self, result: T | None = None, error: BaseException | None = None) -> None:
        """The child is gone: everyone waiting hears it."""
        for number in list(self._waiting):
            self.answer(number, result, error)


class ChildProcess:
    """Starts `python -m <module> <args>`, waits for its Ready, sends it messages, gives what it
    says to `received`, and starts it again if it dies. Subclasses say what the messages mean."""

    name = "child"  # for the log: "ingest child", "delivery child"

    def __init__(self, module: str, args: list[str], messages: Any, files: Callable[[], ConfigFiles]) -> None:
        self.command = [sys.executable, "-m", module, *args]
        self.files = files  # the routes in force, for each start
        self._frames = Frames(msgspec.msgpack.Decoder(messages))
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._ready: asyncio.Future[str] | None = None
        self._exited: asyncio.Event = asyncio.Event()
        self._stopping = False
        self._restarts: asyncio.Task[None] | None = None
        self.version: str | None = None  # the routes version the child has loaded; None while it is down

    @property
    def ready(self) -> bool:
        return self.version is not None

    @property
    def pid(self) -> int | None:
        return self._transport.get_pid() if self._transport else None

    async def start(self) -> None:
        """Start the child and wait until it has loaded routes.yaml and opened the store."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._exited = asyncio.Event()
        self._transport, _ = await loop.subprocess_exec(lambda: _ChildPipes(self), *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None)
        self._stdin = self._transport.get_pipe_transport(0)  # type: ignore[assignment]
        handed = self.files()
        self._stdin.write(self._frames.frame(Configure(handed)))  # type: ignore[union-attr]
        try:
            self.version = await asyncio.wait_for(asyncio.shield(self._ready), STARTUP_SECONDS)
        except TimeoutError:
            self._transport.kill()
            raise StoreUnavailable(f"the {self.name} did not start within {STARTUP_SECONDS:g} s") from None
        if self.files() is not handed:  # reloaded while it started
            self.configure(self.files())
        log.debug("%s %d ready, routes version %s", self.name, self._transport.get_pid(), self.version)

    def configure(self, files: ConfigFiles) -> None:
        """Routes reloaded: the child swaps them in before the next message. A child that is
        restarting gets them when it starts."""
        self.send(Configure(files))

    def send(self, message: Any) -> bool:
        """Send a message; False when the child is down (restarting) and cannot take it."""
        if not self.ready or self._stdin is None or self._stdin.is_closing():
            return False
        # Each message is written at once. Holding a loop iteration's messages for one write
        # saved system calls (8% of the HTTP process) but made the child wait for the last
        # request of the iteration before starting the first: the two processes then took
        # turns on each wave of requests instead of working at once (bench/README.md).
        self._stdin.write(self._frames.frame(message))
        return True

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
            log.error("the %s did not stop within %g s; killing it", self.name, STOP_SECONDS)
            self._transport.kill()
            await self._exited.wait()
        self._transport.close()

    # what subclasses do with messages, and when the child is gone

    def received(self, message: Any) -> None:
        raise NotImplementedError

    def lost(self) -> None:
        """The child exited: whatever waits for an answer from it must hear so."""

    # called by _ChildPipes

    def _data(self, data: bytes) -> None:
        for message in self._frames.feed(data):
            if isinstance(message, Ready):
                self.version = message.version
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(message.version)
            else:
                self.received(message)

    def _child_exited(self, code: int | None) -> None:
        self.version = None
        self.lost()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(StoreUnavailable(f"the {self.name} could not start (exit code {code}); the lines above say why"))
        self._exited.set()
        if not self._stopping and self._ready is not None and self._ready.done() and not self._ready.exception():
            log.error("the %s exited (code %s); starting it again", self.name, code)
            self._restarts = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        """Start the child again, waiting longer after each failure (the one backoff function),
        for up to RESTART_TRIES tries."""
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(RESTART_TRIES),
            wait=lambda state: backoff(state.attempt_number, first=RESTART_FIRST_SECONDS, cap=RESTART_MAX_SECONDS, jitter=0),
            retry=tenacity.retry_if_exception_type((StoreUnavailable, OSError)),
            before_sleep=lambda state: log.error("the %s could not start again: %s", self.name, state.outcome.exception() if state.outcome else "?"),
        )
        await asyncio.sleep(RESTART_FIRST_SECONDS)
        try:
            await retrying(self._start_again)
        except tenacity.RetryError:
            log.critical("the %s could not be started %d times; restart `gateway serve`", self.name, RESTART_TRIES)
            return
        log.info("the %s is running again", self.name)

    async def _start_again(self) -> None:
        if self._transport is not None:
            self._transport.close()
        await self.start()


class _ChildPipes(asyncio.SubprocessProtocol):
    def __init__(self, owner: ChildProcess) -> None:
        self.owner = owner

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.owner._data(data)

    def connection_lost(self, exc: Exception | None) -> None:  # exited, and every pipe read to the end
        transport = self.owner._transport
        self.owner._child_exited(transport.get_returncode() if transport else None)


# --------------------------------------------------------------------------- the child's side


class CannotStart(Exception):
    """A child cannot work (the reason is on stderr); `code` is its exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def read_configure() -> ConfigFiles:
    """The first message on stdin, read before the event loop reads the rest: exactly its bytes
    (os.read; a buffered reader could take some of the next messages too)."""
    def read_exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = os.read(0, size - len(data))
            if not chunk:
                raise CannotStart(4)  # stdin closed first: the HTTP process is gone
            data += chunk
        return data

    size = int.from_bytes(read_exactly(4), "big")
    return msgspec.msgpack.decode(read_exactly(size), type=Configure).files


def reconfigured(name: str, running: Config, files: ConfigFiles) -> Config:
    """The routes the HTTP process has just swapped in (it checked these very bytes), or the
    running ones if they do not load here (only if this process's environment differed)."""
    try:
        config = load_config(files, os.environ)
    except ConfigError as exc:
        log.error("%s: the reloaded routes do not load here, version %s stays: %s", name, running.version, exc.problems[0] if exc.problems else exc)
        return running
    gc_freeze.settle()  # the replaced routes are collected, the new ones frozen
    return config


async def start_child(name: str, database_url: str) -> tuple[Replies, Config, Store]:
    """What every child starts with: fd 1 kept for frames, the routes it is handed loaded, the
    store open. CannotStart otherwise."""
    replies = Replies(take_frames_fd())
    config, store = await _open_config_and_store(name, read_configure(), database_url)
    return replies, config, store


async def _open_config_and_store(name: str, files: ConfigFiles, database_url: str) -> tuple[Config, Store]:
    try:
        config = load_config(files, os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{name}: {problem}", file=sys.stderr)
        raise CannotStart(2) from None
    store = open_store(database_url)
    try:
        await store.open()
    except StoreUnavailable as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise CannotStart(3) from None
    return config, store


def take_frames_fd() -> BinaryIO:
    """Keep fd 1 for frames (buffered: a frame is written whole even if the pipe takes it in
    parts); print() and stray writes go to stderr. Ignore the group's SIGINT and SIGTERM."""
    frames_out = os.dup(1)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return os.fdopen(frames_out, "wb")


class Replies:
    """A child's messages to the HTTP process; those sent in the same loop turn leave in one write."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self._frames = Frames()
        self._outgoing = bytearray()

    def send(self, message: Any) -> None:
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self.flush)
        self._outgoing += self._frames.frame(message)

    def flush(self) -> None:
        if not self._outgoing:
            return
        data, self._outgoing = bytes(self._outgoing), bytearray()
        with contextlib.suppress(BrokenPipeError):  # the HTTP process is gone: nobody to tell
            self.out.write(data)
            self.out.flush()

    def close(self) -> None:
        self.flush()
        with contextlib.suppress(OSError):  # the HTTP process may be gone already
            self.out.close()


async def read_stdin(messages: Any, handle: Callable[[Any], None]) -> None:
    """Give each message arriving on stdin to `handle`; return when stdin closes."""
    closed = asyncio.Event()
    frames = Frames(msgspec.msgpack.Decoder(messages))

    class StdinPipe(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            for message in frames.feed(data):
                handle(message)

        def connection_lost(self, exc: Exception | None) -> None:
            closed.set()

    await asyncio.get_running_loop().connect_read_pipe(StdinPipe, sys.stdin.buffer)
    await closed.wait()
