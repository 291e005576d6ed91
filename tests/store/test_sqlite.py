"""What only the SQLite backend does: waiting for another process's write lock, and
checkpointing the WAL in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.store import Store, StoreUnavailable, open_store
from gateway.store import sqlite as sqlite_backend
from gateway.store import sqlite_executor
from gateway.store.sqlite import SQLiteStore
from tests.store.test_store import T0, event

pytestmark = pytest.mark.anyio


@pytest.fixture
def store_factory(tmp_path: Path) -> Callable[[], Store]:
    """This module is SQLite's alone (the contract suite runs every backend)."""
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    return lambda: open_store(url)


@contextlib.contextmanager
def another_writer(path: Path, seconds: float) -> Iterator[None]:
    """Another process's writer, as SQLite sees it: a connection inside BEGIN IMMEDIATE for
    `seconds`, from a thread. Entered once the lock is taken; left once it is given back."""
    taken = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(5)
    try:
        yield
    finally:
        holder.join()


async def test_a_write_waits_for_another_writers_lock(store: Store, tmp_path: Path) -> None:
    with another_writer(tmp_path / "gateway.db", 0.3):
        started = time.monotonic()
        stored = await store.add_event(event(1))
        waited = time.monotonic() - started
    assert stored.deliveries == 1 and waited >= 0.25  # it waited instead of failing (how fast it follows: bench/README.md)


async def test_a_lock_held_past_the_limit_is_store_unavailable(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_executor, "LOCK_WAIT_SECONDS", 0.2)
    with another_writer(tmp_path / "gateway.db", 1.0), pytest.raises(StoreUnavailable, match="database is locked"):
        await store.add_event(event(1))
    assert (await store.add_event(event(2))).deliveries == 1  # and the store works once it is free


async def test_the_wal_is_copied_into_the_database_file_without_waiting_for_a_commit(tmp_path: Path) -> None:
    """Commits only checkpoint past 10,000 WAL pages; the background thread does it after writes."""
    path = tmp_path / "gateway.db"
    store = SQLiteStore(str(path))
    await store.open()
    try:
        size_before = path.stat().st_size
        for number in range(200):
            await store.add_event(event(number, deliveries=2))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and path.stat().st_size <= size_before:
            await asyncio.sleep(0.05)
        grown = path.stat().st_size
    finally:
        await store.close()
    assert grown > size_before
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM deliveries").fetchone() == (400,)


async def test_purge_deletes_in_chunks_and_lets_ingest_write_between_them(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An hourly retention purge must not hold the write lock (and ingest) for all its rows."""
    monkeypatch.setattr(sqlite_backend, "PURGE_CHUNK_EVENTS", 10)
    await asyncio.gather(*(store.add_event(event(number, deliveries=0, at=T0)) for number in range(500)))
    purging = asyncio.create_task(store.purge(T0 + 1))
    await asyncio.sleep(0)  # the first chunk is queued
    await store.add_event(event(1000, at=T0 + 10))
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        still_old = db.execute("SELECT count(*) FROM events WHERE received_at < ?", (T0 + 1,)).fetchone()[0]
    assert 0 < still_old < 500  # the new event was stored while the purge was under way
    assert await purging == 500
    assert await store.get_event("e1000") is not None


async def test_past_the_remembered_limit_older_keys_are_looked_up_in_the_database(store: Store) -> None:
    """The window remembers a bounded number of keys; the part it had to drop is read from
    the database, so a duplicate of an early event in a long burst is still one."""
    store._recent.limit = 3  # type: ignore[attr-defined]  # SQLite keeps the window in memory
    for number in range(6):
        await store.add_event(event(number, dedupe_key=f"k{number}", at=T0 + number))
    assert len(store._recent) == 3 and store._recent.overflowed  # type: ignore[attr-defined]
    early = await store.add_event(event(10, dedupe_key="k0", at=T0 + 10))
    recent = await store.add_event(event(11, dedupe_key="k5", at=T0 + 11))
    new = await store.add_event(event(12, dedupe_key="k-new", at=T0 + 12))
    assert (early.id, early.duplicate) == ("e0", True)
    assert (recent.id, recent.duplicate) == ("e5", True)
    assert not new.duplicate


def test_a_rollback_that_fails_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Only "no transaction is active" is expected; anything else is said, not swallowed."""
    closed = sqlite3.connect(":memory:")
    closed.close()
    with caplog.at_level(logging.ERROR, logger="gateway.store"):
        sqlite_executor.rollback(closed)
    assert "rollback failed" in caplog.text
    idle = sqlite3.connect(":memory:", isolation_level=None)
    caplog.clear()
    sqlite_executor.rollback(idle)  # nothing was begun: quiet
    assert caplog.text == ""


async def test_paced_batches_are_held_apart_and_gather_what_arrives_meanwhile(tmp_path: Path) -> None:
    """A paced bulk kind (the engine's attempt records) is written at most once per `pace`:
    what is submitted during the pause goes into the next transaction together. A durable job
    (what a sender waits for) is never held back, and a durable item of that kind not either."""
    written: list[tuple[float, int]] = []  # (when, items) per batch of the paced kind

    def write(connection: sqlite3.Connection, items: list[int]) -> list[int]:
        written.append((time.monotonic(), len(items)))
        return items

    executor = sqlite_executor.GroupCommitExecutor(str(tmp_path / "paced.db"), bulk={"record": write}, pace={"record": 0.05})
    await executor.open()
    try:
        first = asyncio.ensure_future(executor.bulk("record", 0))
        await asyncio.sleep(0.01)  # the first batch runs, then its pause begins
        rest = [asyncio.ensure_future(executor.bulk("record", n)) for n in range(1, 11)]
        durable_began = time.monotonic()
        await executor.call(lambda c: c.execute("SELECT 1"), durable=True)
        durable_waited = time.monotonic() - durable_began
        assert await asyncio.gather(first, *rest) == list(range(11))
        paced_gaps = [b[0] - a[0] for a, b in zip(written, written[1:])]
        batches_before = len(written)
        await asyncio.sleep(0.06)  # the last paced batch's pause is over
        started = time.monotonic()
        for n in range(3):  # durable items of the paced kind: one after another, no pause between
            await executor.bulk("record", n, durable=True)
        durable_items_took = time.monotonic() - started
    finally:
        await executor.close()
    assert [items for _, items in written[:2]] == [1, 10]  # the ten submitted during the pause: one batch
    assert min(paced_gaps[:1]) >= 0.045
    assert durable_waited < 0.05 + 0.02  # it waited for the pause at most, never for a pace of its own
    assert len(written) == batches_before + 3 and durable_items_took < 0.04
