"""SQLite backend: the embedded default.

One thread owns the connection and runs every operation, so the event loop never blocks on
the disk. It takes whatever work is queued and runs it in ONE transaction (group commit): a
burst of concurrent ingests costs one fsync, not one each. The batch's new events are written
with one multi-row INSERT per table: every statement releases and retakes the GIL, and
retaking it from a busy event loop is what limited ingest before (the GIL convoy). Dedupe
keys are remembered (gateway/store/recent.py), not looked up: each batch reads the newest
rowid, and loads only the keys that other processes stored since. Other operations run inside
their own savepoints, so one failing operation does not undo the others in its batch.

Durability is chosen per operation. Anything acknowledged to a sender (`add_event`) commits
with `synchronous=FULL`: on disk before the 202, even if the machine loses power. The engine's
bookkeeping (claims, attempt records, releases) commits with NORMAL: WAL survives a process
crash either way, and after a power cut the worst case is that a delivery is sent again with
the same Idempotency-Key — never lost. The next FULL commit syncs the WAL, earlier frames
included. Group commit pays for FULL under load; bench/README.md has the numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.store.base import (
    DEAD,
    DELIVERED,
    FAILED,
    PENDING,
    SENDING,
    AddResult,
    AttemptResult,
    AttemptRow,
    ClaimedDelivery,
    DeliveryFilter,
    DeliveryRow,
    EventRow,
    NewEvent,
    QueueStats,
    Store,
    StoreUnavailable,
)
from gateway.store.recent import RecentKeys, digest

MAX_BATCH = 512
_DELIVERY_COLUMNS = "id, event_id, route, destination, status, attempts, next_attempt_at, last_error, body, created_at, updated_at, config_version"


@dataclass
class _Job:
    future: asyncio.Future[Any]
    durable: bool  # needs synchronous=FULL (it is acknowledged to someone outside)
    run: Callable[[sqlite3.Connection], Any] | None = None
    event: NewEvent | None = None  # add_event jobs are written together, in bulk
    attempt: tuple[AttemptResult, float] | None = None  # so are record_attempt jobs


class SQLiteStore(Store):
    def __init__(self, path: str) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._wrote = threading.Event()  # set after each commit; wakes the checkpointer
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._recent = RecentKeys()  # the dedupe window; only the writer thread touches it

    # ----------------------------------------------------------------- the writer thread

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._serve, name="sqlite-store", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._open_error:
            raise StoreUnavailable(f"cannot open the database {self.path}: {self._open_error}") from self._open_error
        await self._call(_migrate, durable=True)
        if self.path != ":memory:":  # started once the file is in WAL mode: two connections switching it at once can fail
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

    def _checkpoint_after_writes(self) -> None:
        """Copy the WAL back into the database file in a thread of its own, so no commit waits
        for it. SQLite's automatic checkpoint runs inside the commit that takes the WAL past
        1,000 pages, and those were ingest's slowest answers. PASSIVE never blocks a writer."""
        try:
            connection = _connect(self.path)
        except sqlite3.Error:
            return  # the writer thread reports an unusable database
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

    def _serve(self) -> None:
        try:
            connection = _connect(self.path)
        except sqlite3.Error as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                batch, stop = self._next_batch()
                if batch:
                    self._run_batch(connection, batch)
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

    def _run_batch(self, connection: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            self._set_durability(connection, any(job.durable for job in batch))
            _begin_immediate(connection)
            outcomes.extend(_add_events_in_bulk(connection, self._recent, [job for job in batch if job.event is not None]))
            outcomes.extend(_in_bulk(connection, [job for job in batch if job.attempt is not None], _record_attempts))
            for job in batch:
                if job.run is not None:
                    outcomes.extend(_in_bulk(connection, [job], lambda c, one: [one[0].run(c)]))
            connection.execute("COMMIT")
            self._recent.commit()
            self._wrote.set()
        except sqlite3.Error as exc:
            _rollback(connection)
            self._recent.discard()
            failure = StoreUnavailable(f"the database could not be written: {exc}")
            outcomes = [(job, None, failure) for job in batch]
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_settle_all, outcomes)  # one wake-up of the event loop per batch

    _synchronous = ""

    def _set_durability(self, connection: sqlite3.Connection, durable: bool) -> None:
        wanted = "FULL" if durable else "NORMAL"
        if wanted != self._synchronous:
            connection.execute(f"PRAGMA synchronous = {wanted}")
            self._synchronous = wanted

    async def _call(self, run: Callable[[sqlite3.Connection], Any], durable: bool = False) -> Any:
        return await self._submit(run=run, durable=durable)

    async def _submit(self, **job: Any) -> Any:
        """Queue a job for the writer thread and wait for its result."""
        if self._thread is None or not self._thread.is_alive():
            raise StoreUnavailable("the store is not open")
        assert self._loop is not None
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put(_Job(future=future, **job))
        return await future

    # ----------------------------------------------------------------- operations

    async def ping(self) -> None:
        await self._call(lambda c: c.execute("SELECT 1").fetchone())

    async def add_event(self, event: NewEvent) -> AddResult:
        return await self._submit(durable=True, event=event)

    async def claim_due(self, now: float, limit: int, lease_seconds: float, exclude_destinations: frozenset[str] = frozenset()) -> list[ClaimedDelivery]:
        return await self._call(lambda c: _claim_due(c, now, limit, now + lease_seconds, exclude_destinations))

    async def record_attempt(self, result: AttemptResult, now: float) -> None:
        await self._submit(durable=False, attempt=(result, now))

    async def release(self, delivery_ids: list[str], now: float) -> None:
        if delivery_ids:
            marks = ",".join("?" * len(delivery_ids))
            sql = f"UPDATE deliveries SET status = ?, next_attempt_at = ?, claimed_until = NULL, updated_at = ? WHERE status = ? AND id IN ({marks})"
            await self._call(lambda c: c.execute(sql, (PENDING, now, now, SENDING, *delivery_ids)))

    async def next_due_at(self) -> float | None:
        sql = (
            "SELECT min(t) FROM (SELECT min(next_attempt_at) AS t FROM deliveries WHERE status = ? "
            "UNION ALL SELECT min(claimed_until) FROM deliveries WHERE status = ?)"
        )
        return await self._call(lambda c: c.execute(sql, (PENDING, SENDING)).fetchone()[0])

    async def requeue(self, selection: DeliveryFilter, now: float) -> int:
        where, params = _where(selection)
        sql = f"UPDATE deliveries SET status = ?, next_attempt_at = ?, attempts = 0, claimed_until = NULL, updated_at = ? WHERE body IS NOT NULL AND {where}"
        return await self._call(lambda c: c.execute(sql, (PENDING, now, now, *params)).rowcount, durable=True)

    async def rerender(self, delivery_id: str, body: str | None, error: str | None, config_version: str, now: float) -> None:
        await self._call(lambda c: _rerender(c, delivery_id, body, error, config_version, now), durable=True)

    async def list_deliveries(self, selection: DeliveryFilter, limit: int = 1000) -> list[DeliveryRow]:
        where, params = _where(selection)
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE {where} ORDER BY seq LIMIT ?"
        return await self._call(lambda c: [DeliveryRow(*row) for row in c.execute(sql, (*params, limit))])

    async def list_events(self, limit: int = 50, since: float | None = None, event_type: str | None = None) -> list[EventRow]:
        sql = "SELECT id, source, event_type, body, received_at, config_version FROM events WHERE received_at >= ? AND (? IS NULL OR event_type = ?) ORDER BY received_at DESC, rowid DESC LIMIT ?"
        return await self._call(lambda c: [EventRow(*row) for row in c.execute(sql, (since or 0, event_type, event_type, limit))])

    async def get_event(self, event_id: str) -> EventRow | None:
        return await self._call(lambda c: _get_event(c, event_id))

    async def purge(self, older_than: float) -> int:
        """Delete in chunks, one transaction each: ingest waits for the write lock one chunk at
        a time, not for a whole day's events, and SQLite's undo journal stays small."""
        sql = (
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE received_at < ? AND NOT EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status IN (?, ?)) LIMIT ?)"
        )
        purged = 0
        while deleted := await self._call(lambda c: c.execute(sql, (older_than, PENDING, SENDING, PURGE_CHUNK_EVENTS)).rowcount, durable=True):
            purged += deleted
        return purged

    async def erase_event(self, event_id: str) -> bool:
        return await self._call(lambda c: _erase_event(c, event_id), durable=True)

    async def stats(self) -> QueueStats:
        rows = await self._call(lambda c: c.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
        return QueueStats(dict(rows))


# --------------------------------------------------------------------------- thread-side helpers


LOCK_WAIT_SECONDS = 30.0
PURGE_CHUNK_EVENTS = 500
CHECKPOINT_PAUSE_SECONDS = 0.5  # at most two background checkpoints a second
BACKSTOP_CHECKPOINT_PAGES = 10_000  # 40 MB of WAL: a commit checkpoints only if the thread falls behind
_LOCK_POLL_SECONDS = 0.0005


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=LOCK_WAIT_SECONDS)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
    connection.execute("PRAGMA temp_store = MEMORY")  # IN (...) lists and sorts without a temp file each
    return connection


def _begin_immediate(connection: sqlite3.Connection) -> None:
    """Take the write lock, polling every half millisecond while another process holds it.

    Every write is one batch inside BEGIN IMMEDIATE, so this is the only place that waits for
    the lock. SQLite's own busy handler sleeps 25 to 100 ms between tries once a wait goes on,
    and with serve's writer process, its engine and a `gateway worker` all writing, those
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


def _rollback(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # no transaction was open


def _settle_all(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, result, error in outcomes:
        if job.future.cancelled():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    applied = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
    folder = resources.files("gateway.store") / "sql" / "sqlite"
    for script in sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name):
        version = int(script.name.split("_", 1)[0])
        if version in applied:
            continue
        for statement in _statements(script.read_text("utf-8")):
            connection.execute(statement)
        connection.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s', 'now'))", (version,))


def _statements(script: str) -> list[str]:
    """Statements of a migration file (our SQL has no ';' or '--' inside string literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


_SQLITE_MAX_VARIABLES = 32766


def _add_events_in_bulk(connection: sqlite3.Connection, recent: RecentKeys, jobs: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]]:
    """Store a batch's events: duplicates answered, the rest inserted with multi-row INSERTs."""
    recent.discard()  # a batch whose savepoint was rolled back stored nothing to remember
    return _in_bulk(connection, jobs, lambda c, batch: _insert_events(c, recent, [job.event for job in batch]))  # type: ignore[misc]


def _in_bulk(connection: sqlite3.Connection, jobs: list[_Job], write: Callable[[sqlite3.Connection, list[_Job]], list[Any]]) -> list[tuple[_Job, Any, BaseException | None]]:
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


def _insert_events(connection: sqlite3.Connection, recent: RecentKeys, events: list[NewEvent]) -> list[AddResult]:
    keyed = [e for e in events if e.dedupe_key and e.dedupe_window]
    if keyed:
        _sync_recent(connection, recent, keyed)
    results: list[AddResult] = []
    stored: list[NewEvent] = []
    remembered: dict[bytes, NewEvent] = {}  # keyed events of this batch, stored
    for event in events:
        key = digest(event.source, event.dedupe_key) if event.dedupe_key and event.dedupe_window else None
        original = _original(connection, recent, remembered, event, key) if key else None
        if original is not None:
            results.append(AddResult(original, True, 0))
            continue
        if key:
            remembered[key] = event
        stored.append(event)
        results.append(AddResult(event.id, False, len(event.deliveries)))
    event_rows = [(e.id, e.source, e.event_type, e.body, e.dedupe_key, e.received_at, e.config_version) for e in stored]
    delivery_rows = [
        (d.id, e.id, d.route, d.destination, d.body, d.status, d.ordering_key, e.received_at, d.error, e.received_at, e.received_at, e.config_version)
        for e in stored
        for d in e.deliveries
    ]
    last_event_row = _insert_rows(connection, "events (id, source, event_type, body, dedupe_key, received_at, config_version)", event_rows)
    _insert_rows(
        connection,
        "deliveries (id, event_id, route, destination, body, status, ordering_key, next_attempt_at, last_error, created_at, updated_at, config_version)",
        delivery_rows,
    )
    if keyed:  # remembered once the transaction commits
        recent.stage([(key, e.received_at) for key, e in remembered.items()], last_event_row, now=max(e.received_at for e in events))
    return results


_KEYS_SINCE_SQL = "SELECT source, dedupe_key, received_at FROM events WHERE received_at >= ? AND dedupe_key IS NOT NULL ORDER BY received_at"
_KEYS_AFTER_ROW_SQL = "SELECT source, dedupe_key, received_at FROM events WHERE rowid > ? AND dedupe_key IS NOT NULL ORDER BY rowid"


def _sync_recent(connection: sqlite3.Connection, recent: RecentKeys, keyed: list[NewEvent]) -> None:
    """Bring the remembered window up to date with the database, inside the write lock.

    New rows get a larger rowid than any before, so rows past `high_water` are what other
    processes stored since: only those are read. The window is loaded whole the first time,
    when rows went away from its end, and when a longer window than any before (a reloaded
    routes.yaml) needs more. Keys that were purged or erased stay remembered: a key found here
    is confirmed in the database (`_original`), so remembering too much costs a query, never
    an event."""
    newest = connection.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
    since = min(e.received_at - (e.dedupe_window or 0) for e in keyed)
    recent.longest_window = max(recent.longest_window, *(e.dedupe_window or 0 for e in keyed))
    if recent.high_water is None or newest < recent.high_water or (not recent.covers(since) and not recent.overflowed):
        since = min(since, recent.covered_since)
        recent.reset(since, connection.execute(_KEYS_SINCE_SQL, (since,)), newest)
    elif newest > recent.high_water:
        recent.extend(connection.execute(_KEYS_AFTER_ROW_SQL, (recent.high_water,)))
        recent.high_water = newest


def _original(connection: sqlite3.Connection, recent: RecentKeys, in_batch: dict[bytes, NewEvent], event: NewEvent, key: bytes) -> str | None:
    """The id of the latest stored event this one duplicates, if one is inside its window."""
    since = event.received_at - (event.dedupe_window or 0)
    earlier = in_batch.get(key)
    if earlier is not None and earlier.received_at >= since:
        return earlier.id
    stored_at = recent.stored_since(key, since)
    if stored_at is not None:
        row = connection.execute("SELECT id FROM events WHERE received_at = ? AND source = ? AND dedupe_key = ?", (stored_at, event.source, event.dedupe_key)).fetchone()
        return row[0] if row else None  # remembered but not found: store it (sent twice at worst, never lost)
    if recent.covers(since):
        return None
    row = connection.execute(  # only past the memory's limit: the part of the window it dropped
        "SELECT id FROM events WHERE received_at >= ? AND received_at < ? AND source = ? AND dedupe_key = ? ORDER BY received_at DESC LIMIT 1",
        (since, recent.covered_since, event.source, event.dedupe_key),
    ).fetchone()
    return row[0] if row else None


def _insert_rows(connection: sqlite3.Connection, into: str, rows: list[tuple[Any, ...]]) -> int | None:
    """One multi-row INSERT per chunk: one statement (one GIL hand-off) for many rows. Returns
    the rowid of the last row."""
    if not rows:
        return None
    last = None
    width = len(rows[0])
    per_statement = _SQLITE_MAX_VARIABLES // width
    placeholder = "(" + ",".join("?" * width) + ")"
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        last = connection.execute(f"INSERT INTO {into} VALUES {','.join([placeholder] * len(chunk))}", [v for row in chunk for v in row]).lastrowid
    return last


def _claim_due(connection: sqlite3.Connection, now: float, limit: int, lease_until: float, exclude: frozenset[str]) -> list[ClaimedDelivery]:
    excluded = ",".join("?" * len(exclude))
    exclusion = f"AND d.destination NOT IN ({excluded})" if exclude else ""
    sql = f"""
        UPDATE deliveries SET status = ?, claimed_until = ?, updated_at = ?
        WHERE id IN (
            SELECT d.id FROM deliveries d
            WHERE ((d.status = ? AND d.next_attempt_at <= ?) OR (d.status = ? AND d.claimed_until < ?))
              {exclusion}
              AND (d.ordering_key IS NULL OR NOT EXISTS (
                    SELECT 1 FROM deliveries e
                    WHERE e.destination = d.destination AND e.ordering_key = d.ordering_key
                      AND e.seq < d.seq AND e.status IN (?, ?)))
            ORDER BY d.next_attempt_at, d.seq
            LIMIT ?)
        RETURNING id, event_id, route, destination, body, attempts, ordering_key, created_at
    """
    params = (SENDING, lease_until, now, PENDING, now, SENDING, now, *sorted(exclude), PENDING, SENDING, limit)
    return [ClaimedDelivery(*row) for row in connection.execute(sql, params).fetchall()]


def _record_attempts(connection: sqlite3.Connection, jobs: list[_Job]) -> list[None]:
    """Record a batch's attempts and move their deliveries on: three statements in all."""
    items = [job.attempt for job in jobs if job.attempt is not None]
    ids = sorted({result.delivery_id for result, _ in items})
    counts = dict(connection.execute(f"SELECT delivery_id, count(*) FROM attempts WHERE delivery_id IN ({','.join('?' * len(ids))}) GROUP BY delivery_id", ids))
    attempts, changes = [], []
    for result, now in items:
        counts[result.delivery_id] = counts.get(result.delivery_id, 0) + 1
        attempts.append((result.delivery_id, counts[result.delivery_id], result.started_at, result.duration_ms, result.status_code, result.response, result.error, result.outcome))
        status = {"delivered": DELIVERED, "retry": PENDING, "dead": DEAD}[result.outcome]
        error = None if status == DELIVERED else (result.error or f"HTTP {result.status_code}")
        changes.append((result.delivery_id, status, result.next_attempt_at, error, now))
    _insert_rows(connection, "attempts (delivery_id, number, started_at, duration_ms, status_code, response, error, outcome)", attempts)
    for start in range(0, len(changes), _SQLITE_MAX_VARIABLES // 5):
        chunk = changes[start : start + _SQLITE_MAX_VARIABLES // 5]
        connection.execute(
            f"WITH changes (id, status, next_at, error, at) AS (VALUES {','.join(['(?, ?, ?, ?, ?)'] * len(chunk))}) "
            "UPDATE deliveries SET status = changes.status, attempts = attempts + 1, next_attempt_at = changes.next_at, "
            "claimed_until = NULL, last_error = changes.error, updated_at = changes.at FROM changes WHERE deliveries.id = changes.id",
            [value for change in chunk for value in change],
        )
    return [None] * len(jobs)


def _where(selection: DeliveryFilter) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if selection.statuses:
        clauses.append(f"status IN ({','.join('?' * len(selection.statuses))})")
        params.extend(selection.statuses)
    if selection.destination:
        clauses.append("destination = ?")
        params.append(selection.destination)
    if selection.since is not None:
        clauses.append("created_at >= ?")
        params.append(selection.since)
    if selection.ids:
        clauses.append(f"(id IN ({','.join('?' * len(selection.ids))}) OR event_id IN ({','.join('?' * len(selection.ids))}))")
        params.extend(selection.ids)
        params.extend(selection.ids)
    return (" AND ".join(clauses) or "1 = 1"), params


def _get_event(connection: sqlite3.Connection, event_id: str) -> EventRow | None:
    row = connection.execute("SELECT id, source, event_type, body, received_at, config_version FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        return None
    deliveries = []
    for delivery in connection.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE event_id = ? ORDER BY seq", (event_id,)).fetchall():
        attempts = connection.execute(
            "SELECT number, started_at, duration_ms, status_code, response, error, outcome FROM attempts WHERE delivery_id = ? ORDER BY number", (delivery[0],)
        ).fetchall()
        replaced = connection.execute("SELECT body, config_version, replaced_at FROM replaced_bodies WHERE delivery_id = ? ORDER BY id", (delivery[0],)).fetchall()
        deliveries.append(DeliveryRow(*delivery, attempt_log=tuple(AttemptRow(*a) for a in attempts), replaced_bodies=tuple(replaced)))
    return EventRow(*row, deliveries=tuple(deliveries))


def _erase_event(connection: sqlite3.Connection, event_id: str) -> bool:
    if connection.execute("UPDATE events SET body = NULL, dedupe_key = NULL WHERE id = ?", (event_id,)).rowcount == 0:
        return False
    connection.execute(
        "UPDATE deliveries SET status = CASE WHEN status IN (?, ?) THEN ? ELSE status END, "
        "last_error = CASE WHEN status IN (?, ?) THEN 'erased on request before delivery' ELSE last_error END, body = NULL WHERE event_id = ?",
        (PENDING, SENDING, DEAD, PENDING, SENDING, event_id),
    )
    connection.execute("UPDATE attempts SET response = NULL WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ?)", (event_id,))
    connection.execute("UPDATE replaced_bodies SET body = NULL WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ?)", (event_id,))
    return True


def _rerender(connection: sqlite3.Connection, delivery_id: str, body: str | None, error: str | None, version: str, now: float) -> None:
    """Keep the old body in replaced_bodies; the new one is due now (or failed, with why)."""
    connection.execute(
        "INSERT INTO replaced_bodies (delivery_id, body, config_version, replaced_at) SELECT id, body, config_version, ? FROM deliveries WHERE id = ?",
        (now, delivery_id),
    )
    status = PENDING if error is None else FAILED
    connection.execute(
        "UPDATE deliveries SET body = ?, status = ?, last_error = ?, config_version = ?, attempts = 0, next_attempt_at = ?, claimed_until = NULL, updated_at = ? WHERE id = ?",
        (body, status, error, version, now, now, delivery_id),
    )
