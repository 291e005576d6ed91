"""SQLite's group-commit executor: the thread, the batches, the lock waits, the checkpoints.

One thread owns the connection and runs every operation, so the event loop never blocks on
the disk. It takes whatever work is queued and runs it in ONE transaction (group commit): a
burst of concurrent ingests costs one fsync, not one each. Work of the same bulk kind (new
events, attempt records) is handed to its writer together, so the backend can write a batch
with one multi-row INSERT per table: every statement releases and retakes the GIL, and
retaking it from a busy event loop is what limited ingest before (the GIL convoy). Other
operations run inside their own savepoints, so one failing operation does not undo the others
in its batch.

Durability is chosen per operation. Anything acknowledged to a sender commits with
`synchronous=FULL`: on disk before the 202, even if the machine loses power. The engine's
bookkeeping commits with NORMAL: WAL survives a process crash either way, and after a power cut
the worst case is that a delivery is sent again with the same Idempotency-Key, never lost. The
next FULL commit syncs the WAL, earlier frames included. Group commit pays for FULL under load;
bench/README.md has the numbers.

This module knows no table: what runs is the backend's (gateway/store/sqlite.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.store.base import StoreUnavailable

log = logging.getLogger("gateway.store")

MAX_BATCH = 512
LOCK_WAIT_SECONDS = 30.0
CHECKPOINT_PAUSE_SECONDS = 0.5  # at most two background checkpoints a second
BACKSTOP_CHECKPOINT_PAGES = 10_000  # 40 MB of WAL: a commit checkpoints only if the thread falls behind
_LOCK_POLL_SECONDS = 0.0005

# Writes several jobs' items at once (in one savepoint); returns one result per item.
BulkWriter = Callable[[sqlite3.Connection, list[Any]], list[Any]]
Outcome = tuple["_Job", Any, BaseException | None]


@dataclass
class _Job:
    future: asyncio.Future[Any]
    durable: bool  # needs synchronous=FULL (it is acknowledged to someone outside)
    run: Callable[[sqlite3.Connection], Any] | None = None
    kind: str | None = None  # a bulk kind: `item` goes to that kind's writer with the batch's others
    item: Any = None


class GroupCommitExecutor:
    """Runs operations on one SQLite connection in a thread of its own, in group commits.

    `bulk` names the kinds of work written together, in the order given; `committed` and
    `rolled_back` are called in the thread after each batch (the backend's caches follow);
    `pace` holds batches with a bulk kind at least that many seconds apart."""

    def __init__(
        self,
        path: str,
        bulk: dict[str, BulkWriter],
        committed: Callable[[], None] = lambda: None,
        rolled_back: Callable[[], None] = lambda: None,
        pace: dict[str, float] | None = None,
    ) -> None:
        self.path = path
        self._bulk = bulk
        self._pace = pace or {}
        self._committed = committed
        self._rolled_back = rolled_back
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._wrote = threading.Event()  # set after each commit; wakes the checkpointer
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._synchronous = ""

    # ----------------------------------------------------------------- the event loop's side

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._serve, name="sqlite-executor", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._open_error:
            raise StoreUnavailable(f"cannot open the database {self.path}: {self._open_error}") from self._open_error

    def start_checkpoints(self) -> None:
        """Once the file is in WAL mode (two connections switching it at once can fail)."""
        if self.path != ":memory:":
            self._closing.clear()
            self._checkpointer = threading.Thread(target=self._checkpoint_after_writes, name="sqlite-checkpoint", daemon=True)
            self._checkpointer.start()

    async def close(self) -> None:
        if self._thread and self._thread.is_alive():
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
        if self._checkpointer and self._checkpointer.is_alive():
            self._closing.set()
            self._wrote.set()
            await asyncio.to_thread(self._checkpointer.join)

    async def call(self, run: Callable[[sqlite3.Connection], Any], durable: bool = False) -> Any:
        """Run `run(connection)` in the next batch, in a savepoint of its own."""
        return await self._submit(_Job(self._future(), durable, run=run))

    async def bulk(self, kind: str, item: Any, durable: bool = False) -> Any:
        """Hand `item` to the `kind` writer with the other items of the next batch."""
        return await self._submit(_Job(self._future(), durable, kind=kind, item=item))

    def _future(self) -> asyncio.Future[Any]:
        if self._thread is None or not self._thread.is_alive() or self._loop is None:
            raise StoreUnavailable("the store is not open")
        return self._loop.create_future()

    async def _submit(self, job: _Job) -> Any:
        self._jobs.put(job)
        return await job.future

    # ----------------------------------------------------------------- the thread's side

    def _serve(self) -> None:
        try:
            connection = connect(self.path)
        except sqlite3.Error as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                batch, stop = self._next_batch()
                if batch:
                    began = time.monotonic()
                    self._run_batch(connection, batch)
                    self._pause_after(batch, began)
                if stop:
                    return
        finally:
            connection.close()

    def _next_batch(self) -> tuple[list[_Job], bool]:
        first = self._jobs.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    def _pause_after(self, batch: list[_Job], began: float) -> None:
        """Keep batches of a paced kind `pace` apart: what arrives meanwhile joins the next one."""
        pace = max((self._pace.get(job.kind, 0.0) for job in batch if job.kind and not job.durable), default=0.0)
        rest = began + pace - time.monotonic()
        if rest > 0:
            time.sleep(rest)

    def _run_batch(self, connection: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[Outcome] = []
        try:
            self._set_durability(connection, any(job.durable for job in batch))
            begin_immediate(connection)
            for kind, writer in self._bulk.items():
                jobs = [job for job in batch if job.kind == kind]
                outcomes.extend(in_savepoint(connection, jobs, lambda c, js, w=writer: w(c, [j.item for j in js])))  # type: ignore[misc]
            for job in batch:
                if job.run is not None:
                    outcomes.extend(in_savepoint(connection, [job], lambda c, one: [one[0].run(c)]))
            connection.execute("COMMIT")
            self._committed()
            self._wrote.set()
        except sqlite3.Error as exc:
            rollback(connection)
            self._rolled_back()
            failure = StoreUnavailable(f"the database could not be written: {exc}")
            outcomes = [(job, None, failure) for job in batch]
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_settle_all, outcomes)  # one wake-up of the event loop per batch

    def _set_durability(self, connection: sqlite3.Connection, durable: bool) -> None:
        wanted = "FULL" if durable else "NORMAL"
        if wanted != self._synchronous:
            connection.execute(f"PRAGMA synchronous = {wanted}")
            self._synchronous = wanted

    def _checkpoint_after_writes(self) -> None:
        """Copy the WAL back into the database file in a thread of its own, so no commit waits
        for it. SQLite's automatic checkpoint runs inside the commit that takes the WAL past
        1,000 pages, and those were ingest's slowest answers. PASSIVE never blocks a writer."""
        try:
            connection = connect(self.path)
        except sqlite3.Error:
            return  # the executor's thread reports an unusable database
        try:
            while True:
                self._wrote.wait()
                if self._closing.is_set():
                    return
                self._wrote.clear()
                with contextlib.suppress(sqlite3.Error):  # busy or failing: the next write tries again
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if self._closing.wait(CHECKPOINT_PAUSE_SECONDS):
                    return
        finally:
            connection.close()


def connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=LOCK_WAIT_SECONDS)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
    connection.execute("PRAGMA temp_store = MEMORY")  # IN (...) lists and sorts without a temp file each
    return connection


def begin_immediate(connection: sqlite3.Connection) -> None:
    """Take the write lock, polling every half millisecond while another process holds it.

    Every write is one batch inside BEGIN IMMEDIATE, so this is the only place that waits for
    the lock. SQLite's own busy handler sleeps 25 to 100 ms between tries once a wait goes on,
    and with serve's ingest child, its delivery child and a `gateway worker` all writing, those
    sleeps were most of ingest's p99."""
    connection.execute("PRAGMA busy_timeout = 0")
    started = time.monotonic()
    while True:
        try:
            connection.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            waited = time.monotonic() - started
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or waited > LOCK_WAIT_SECONDS:
                raise
            time.sleep(_LOCK_POLL_SECONDS if waited < 0.05 else 0.005)  # a long hold (a purge) is polled less often
    connection.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT_SECONDS * 1000)}")  # for the statements inside


def rollback(connection: sqlite3.Connection) -> None:
    """Undo the open transaction. If there is none (BEGIN itself failed) SQLite says so; any
    other failure is logged: the next batch's BEGIN then fails and says why too."""
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error as exc:
        if "no transaction is active" not in str(exc):
            log.error("rollback failed: %s", exc)


def in_savepoint(connection: sqlite3.Connection, jobs: list[_Job], write: Callable[[sqlite3.Connection, list[_Job]], list[Any]]) -> list[Outcome]:
    """Run `write` for several jobs at once, in one savepoint; its results go to each job.

    A failure of their own (a constraint, a bug) goes to these callers only and the batch's
    other work goes on; disk full or an I/O error fails the whole batch, and every caller hears it.
    """
    if not jobs:
        return []
    connection.execute("SAVEPOINT bulk")
    try:
        results = write(connection, jobs)
    except sqlite3.OperationalError:
        raise
    except Exception as exc:  # noqa: BLE001 — see the docstring
        connection.execute("ROLLBACK TO bulk")
        connection.execute("RELEASE bulk")
        return [(job, None, exc) for job in jobs]
    connection.execute("RELEASE bulk")
    return [(job, result, None) for job, result in zip(jobs, results)]


def _settle_all(outcomes: list[Outcome]) -> None:
    for job, result, error in outcomes:
        if job.future.cancelled():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
