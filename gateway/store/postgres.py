"""PostgreSQL backend: several gateway replicas on one database (issue #15).

psycopg 3 with its async connection pool. Every operation is one transaction on a pooled
connection; the queries are named blocks in gateway/store/sql/postgresql/queries.sql, the
schema numbered migrations beside them, applied under an advisory lock so replicas starting
together migrate once.

What SQLite gets from being one process's file, this backend gets from the database:
- dedupe across replicas: an advisory lock per (source, key) for the transaction, then a
  lookup in the window (`events_dedupe`); the same body at two replicas at once is stored once.
- claims: `FOR UPDATE SKIP LOCKED` per destination, so no delivery is claimed by two replicas
  and none waits for another's claim; an expired lease is pending again in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.delivery.retry import backoff
from gateway.masking import without_password
from gateway.quotas import Quota, refill, wait_for_one
from gateway.store.base import (
    DEAD,
    DELIVERED,
    FAILED,
    NEWEST_EVENTS,
    PENDING,
    Activity,
    AddResult,
    AttemptResult,
    AttemptRow,
    ClaimedDelivery,
    ConsoleSession,
    DeliveryFilter,
    DeliveryRef,
    DeliveryRow,
    DestinationHold,
    EventQuery,
    EventRow,
    NewEvent,
    QueueStats,
    Store,
    StoreUnavailable,
    Incident,
    activity_from_rows,
    event_query_params,
    notice_update,
    list_events_sql,
    tenant_prefix,
)
from gateway.store.sqlfiles import migrations, queries

log = logging.getLogger("gateway.store")

_SQL = queries("postgresql")
PURGE_CHUNK_EVENTS = 500
POOL_SIZE = 10
MAX_BATCH = 256  # events stored in one transaction
CONNECT_SECONDS = 10.0
_MIGRATION_LOCK = 0x60_6A7E_3A1  # pg_advisory_lock key: "gateway migrations"
_OUTCOME_STATUS = {"delivered": DELIVERED, "retry": PENDING, "dead": DEAD}
Item = TypeVar("Item")
Result = TypeVar("Result")


class SchemaTooNew(StoreUnavailable):
    """The database was migrated by a newer gateway than this one."""


class PostgresStore(Store):
    many_writers = True  # every process of every replica stores events at once

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: AsyncConnectionPool | None = None
        self._listening: asyncio.Task[None] | None = None
        self._events: _Batches[NewEvent, AddResult] = _Batches(lambda events: self._run(lambda c: _add_events(c, events)))
        self._attempts: _Batches[tuple[AttemptResult, float], None] = _Batches(lambda items: self._run(lambda c: _record_attempts(c, items)))

    async def open(self) -> None:
        try:  # one connection first: a wrong address or password says so at once, in its words
            probe = await psycopg.AsyncConnection.connect(self.url, connect_timeout=int(CONNECT_SECONDS))
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {without_password(self.url)}: {str(exc).strip()}") from None
        await probe.close()
        pool = AsyncConnectionPool(self.url, min_size=1, max_size=POOL_SIZE, open=False, timeout=CONNECT_SECONDS, kwargs={"autocommit": False})
        try:
            await pool.open(wait=True, timeout=CONNECT_SECONDS)
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {without_password(self.url)}: {exc}") from None
        self._pool = pool
        await self._run(_migrate)

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
            self._listening = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        await self._run(lambda c: c.execute(_SQL["ping"]))

    async def _run(self, work: Any) -> Any:
        """`work(cursor)` in one transaction; StoreUnavailable when the database cannot be had."""
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with self._pool.connection() as connection, connection.transaction(), connection.cursor() as cursor:
                return await work(cursor)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StoreUnavailable(f"the database could not be used: {exc}") from None

    async def subscribe(self, wake: Callable[[], None]) -> None:
        """LISTEN on a connection of its own; `wake` on every NOTIFY that work was stored (by
        any replica). A lost connection is opened again (bounded backoff); meanwhile the
        engine polls, as it always does now and then."""
        self._listening = asyncio.create_task(_listen(self.url, wake))

    # ----------------------------------------------------------------- ingest

    async def add_event(self, event: NewEvent) -> AddResult:
        """Stored with the events that arrive while the batch before commits, in one
        transaction (one commit, one WAL flush, for all of them). Returns once committed."""
        return await self._events.submit(event)

    # ----------------------------------------------------------------- the engine's work

    async def claim_due(
        self, now: float, quotas: Mapping[str, int], lease_seconds: float, others: int = 0, rates: Mapping[str, tuple[int, float]] | None = None
    ) -> list[ClaimedDelivery]:
        wanted = {name: n for name, n in quotas.items() if n > 0}
        if not wanted and not others:
            return []
        limited = {name: rate for name, rate in (rates or {}).items() if name in wanted}
        return await self._run(lambda c: _claim_due(c, now, wanted, list(quotas), now + lease_seconds, others, limited))

    async def hold_destination(self, hold: DestinationHold) -> None:
        await self._run(lambda c: c.execute(_SQL["hold_destination"], (hold.destination, hold.open_until, hold.gone, hold.config_version)))

    async def destination_holds(self, now: float) -> list[DestinationHold]:
        return [DestinationHold(*row) for row in await self._run(lambda c: _all(c, _SQL["destination_holds"], (now,)))]

    async def clear_stops(self) -> None:
        await self._run(lambda c: c.execute(_SQL["clear_stops"]))

    async def record_attempt(self, result: AttemptResult, now: float) -> None:
        """Recorded with the attempts that end while the batch before commits."""
        await self._attempts.submit((result, now))

    async def release(self, delivery_ids: list[str], now: float) -> None:
        if delivery_ids:
            await self._run(lambda c: c.execute(_SQL["release"], (now, now, delivery_ids)))

    async def next_due_at(self) -> float | None:
        return await self._run(lambda c: _one(c, _SQL["next_due_at"]))

    # ----------------------------------------------------------------- operators

    async def requeue(self, selection: DeliveryFilter, now: float) -> int:
        where, params = _where(selection)
        return await self._run(lambda c: _requeue(c, _SQL["requeue"].format(where=where), (now, now, *params)))

    async def rerender(self, delivery_id: str, body: str | None, error: str | None, config_version: str, now: float) -> None:
        await self._run(lambda c: _rerender(c, delivery_id, body, error, config_version, now))

    async def list_deliveries(self, selection: DeliveryFilter, limit: int = 1000) -> list[DeliveryRow]:
        where, params = _where(selection)
        return [DeliveryRow(*row) for row in await self._run(lambda c: _all(c, _SQL["list_deliveries"].format(where=where), (*params, limit)))]

    async def delivery_refs(self, selection: DeliveryFilter, after: str, limit: int) -> list[DeliveryRef]:
        where, params = _where(selection)
        rows = await self._run(lambda c: _all(c, _SQL["delivery_refs"].format(where=where), (*params, after, limit)))
        return [DeliveryRef(i, e, r, d, bool(b)) for i, e, r, d, b in rows]

    async def count_deliveries(self, selection: DeliveryFilter) -> int:
        where, params = _where(selection)
        return await self._run(lambda c: _one(c, _SQL["count_deliveries"].format(where=where), params))

    async def list_events(self, query: EventQuery = NEWEST_EVENTS) -> list[EventRow]:
        params = event_query_params(query)
        down_to = "AND (received_at, seq) >= (SELECT received_at, seq FROM events WHERE id = %(down_to)s)"
        return [EventRow(*row) for row in await self._run(lambda c: _all(c, list_events_sql(_SQL["list_events"], query, _named, down_to), params))]

    async def window_end(self, query: EventQuery, size: int) -> tuple[str, float] | None:
        params = {**event_query_params(query), "offset": size - 1}
        rows = await self._run(lambda c: _all(c, list_events_sql(_SQL["window_end"], query, _named), params))
        return (rows[0][0], rows[0][1]) if len(rows) == 2 else None

    async def activity(self, since: float, bucket_seconds: int = 60, tenant: str | None = None) -> Activity:
        params = {"since": since, "bucket": bucket_seconds, "tenant": tenant, "prefix": tenant_prefix(tenant) if tenant else None}
        attempts_sql = _SQL["attempts_per_bucket_of_tenant" if tenant else "attempts_per_bucket"]
        events = await self._run(lambda c: _all(c, _SQL["events_per_bucket"], params))
        attempts = await self._run(lambda c: _all(c, attempts_sql, params))
        return activity_from_rows(events, attempts)

    async def route_counts(self, since: float) -> dict[str, int]:
        return dict(await self._run(lambda c: _all(c, _SQL["route_counts"], {"since": since})))

    async def delivery_statuses(self, event_ids: list[str]) -> dict[str, dict[str, int]]:
        if not event_ids:
            return {}
        found: dict[str, dict[str, int]] = {}
        for event_id, status, count in await self._run(lambda c: _all(c, _SQL["delivery_statuses"], (event_ids,))):
            found.setdefault(event_id, {})[status] = count
        return found

    async def get_event(self, event_id: str) -> EventRow | None:
        return await self._run(lambda c: _get_event(c, event_id))

    async def purge(self, older_than: float) -> int:
        """In chunks, one transaction each, as the SQLite backend does."""
        purged = 0
        while deleted := await self._run(lambda c: _rowcount(c, _SQL["purge_chunk"], (older_than, PURGE_CHUNK_EVENTS))):
            purged += deleted
        return purged

    async def erase_event(self, event_id: str) -> bool:
        return await self._run(lambda c: _erase_event(c, event_id))

    async def stats(self, tenant: str | None = None) -> QueueStats:
        if tenant:
            return QueueStats(dict(await self._run(lambda c: _all(c, _SQL["stats_of_tenant"], (tenant_prefix(tenant),) * 2))))
        return QueueStats(dict(await self._run(lambda c: _all(c, _SQL["stats"]))))

    async def record_created(self, delivery_id: str, step: str, record_id: str, now: float) -> None:
        await self._run(lambda c: c.execute(_SQL["record_created"], (delivery_id, step, record_id, now)))

    async def records_created(self, delivery_id: str) -> dict[str, str]:
        return dict(await self._run(lambda c: _all(c, _SQL["records_created"], (delivery_id,))))

    async def open_incident(self, incident: Incident) -> bool:
        row = (incident.id, incident.key, incident.kind, incident.subject, incident.detail, incident.opened_at)
        return bool(await self._run(lambda c: _rowcount(c, _SQL["open_incident"], row)))

    async def resolve_incident(self, key: str, now: float) -> bool:
        return bool(await self._run(lambda c: _rowcount(c, _SQL["resolve_incident"], (now, key))))

    async def claim_notices(self, now: float, lease: float, max_attempts: int) -> list[Incident]:
        params = {"until": now + lease, "now": now, "max": max_attempts}
        return [Incident(*row) for row in await self._run(lambda c: _all(c, _SQL["claim_notices"], params))]

    async def notice_sent(self, incident_id: str, notice: str, now: float, error: str | None = None, retry_at: float | None = None) -> None:
        sql, params = notice_update(notice, incident_id, now, error, retry_at)
        await self._run(lambda c: c.execute(_SQL[sql], params))

    async def incidents(self, limit: int = 50) -> list[Incident]:
        return [Incident(*row) for row in await self._run(lambda c: _all(c, _SQL["incidents"], (limit,)))]

    async def oldest_pending_at(self) -> float | None:
        return await self._run(lambda c: _one(c, _SQL["oldest_pending_at"]))  # type: ignore[no-any-return]

    async def take_quota(self, key: str, quota: Quota, now: float) -> float:
        """In the database, under the bucket's row lock: the quota holds for every replica."""

        async def take(c: psycopg.AsyncCursor) -> float:
            await c.execute(_SQL["quota_bucket"], (key, quota.burst, now))
            tokens, updated_at = (await _all(c, _SQL["lock_quota_bucket"], (key,)))[0]
            available = refill(tokens, updated_at, now, quota)
            taken = available >= 1.0
            await c.execute(_SQL["set_quota_bucket"], (available - 1.0 if taken else available, max(updated_at, now), key))
            return 0.0 if taken else wait_for_one(available, quota)

        return float(await self._run(take))

    # ----------------------------------------------------------------- the console's logins

    async def add_session(self, session: ConsoleSession, forget_before: float) -> None:
        async def add(c: psycopg.AsyncCursor) -> None:
            await c.execute(_SQL["forget_sessions"], (forget_before,))
            await c.execute(_SQL["add_session"], (session.id, session.started_at, session.address, session.agent, session.tenant))

        await self._run(add)

    async def get_session(self, session_id: str) -> ConsoleSession | None:
        rows = await self._run(lambda c: _all(c, _SQL["get_session"], (session_id,)))
        return ConsoleSession(*rows[0]) if rows else None

    async def end_session(self, session_id: str, now: float) -> bool:
        return bool(await self._run(lambda c: _rowcount(c, _SQL["end_session"], (now, session_id))))

    async def active_sessions(self, since: float) -> list[ConsoleSession]:
        return [ConsoleSession(*row) for row in await self._run(lambda c: _all(c, _SQL["active_sessions"], (since,)))]

    async def record_login_failure(self, address: str, now: float, forget_before: float) -> None:
        async def record(c: psycopg.AsyncCursor) -> None:
            await c.execute(_SQL["forget_login_failures"], (forget_before,))
            await c.execute(_SQL["record_login_failure"], (address, now))

        await self._run(record)

    async def login_failures(self, address: str, since: float) -> int:
        return int(await self._run(lambda c: _one(c, _SQL["login_failures"], (address, since))))


class _Batches(Generic[Item, Result]):
    """Group commit: what is submitted while a batch is being written goes, all together, into
    the next one (at most MAX_BATCH). `write` returns one result, or exception, per item."""

    def __init__(self, write: Callable[[list[Item]], Awaitable[list[Result | BaseException]]]) -> None:
        self._write = write
        self._queued: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queued.append((item, future))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_queued())
        return await future

    async def _write_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:  # the whole batch: nothing of it was written
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


# --------------------------------------------------------------------------- one transaction each


async def _one(cursor: psycopg.AsyncCursor, sql: str, params: Any = None) -> Any:
    await cursor.execute(sql, params)
    row = await cursor.fetchone()
    return row[0] if row else None


async def _all(cursor: psycopg.AsyncCursor, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    await cursor.execute(sql, params)
    return await cursor.fetchall()


async def _rowcount(cursor: psycopg.AsyncCursor, sql: str, params: Any = None) -> int:
    await cursor.execute(sql, params)
    return cursor.rowcount


async def _listen(url: str, wake: Callable[[], None]) -> None:
    for attempt in itertools.count():
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
                await connection.execute(_SQL["listen"])
                async for _ in connection.notifies():
                    wake()
        except psycopg.Error as exc:
            log.warning("listening for new work failed (polling meanwhile): %s", exc)
        await asyncio.sleep(backoff(attempt + 1, first=0.5, cap=30.0))


async def _requeue(cursor: psycopg.AsyncCursor, sql: str, params: Any) -> int:
    count = await _rowcount(cursor, sql, params)
    if count:
        await cursor.execute(_SQL["notify_work"])
    return count


async def _migrate(cursor: psycopg.AsyncCursor) -> None:
    """Apply what is missing, once for all replicas (the lock is held until this transaction
    commits); refuse a database a newer gateway has migrated."""
    await cursor.execute(_SQL["lock_migrations"], (_MIGRATION_LOCK,))
    await cursor.execute(_SQL["create_migrations_table"])
    applied = {row[0] for row in await _all(cursor, _SQL["applied_migrations"])}
    known = migrations("postgresql")
    newest = max((version for version, _ in known), default=0)
    if applied and max(applied) > newest:
        raise SchemaTooNew(
            f"the database's schema is version {max(applied)}, newer than this gateway's ({newest}): "
            "a newer gateway migrated it; run that version (or a newer one) against this database"
        )
    for version, statements in known:
        if version in applied:
            continue
        for statement in statements:
            await cursor.execute(statement)
        await cursor.execute(_SQL["record_migration"], (version,))


async def _add_events(cursor: psycopg.AsyncCursor, events: list[NewEvent]) -> list[AddResult | BaseException]:
    """A batch in a handful of statements whatever its size (the round trips, not the rows,
    were the cost): its dedupe keys locked at once, their originals looked up at once, the new
    events and deliveries inserted with one statement each. If that fails for one event's
    sake, each is stored again on its own, in a savepoint, so that only the guilty one fails."""
    try:
        async with cursor.connection.transaction():  # a savepoint: the slow path starts clean
            return list(await _add_batch(cursor, events))
    except psycopg.OperationalError:
        raise  # the connection or the server: the whole batch fails, each caller hears it
    except psycopg.Error:
        pass
    results: list[AddResult | BaseException] = []
    for event in events:
        try:
            async with cursor.connection.transaction():
                results.append(await _add_event(cursor, event))
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:  # this event's own problem: the others are still stored
            results.append(exc)
    return results


async def _add_batch(cursor: psycopg.AsyncCursor, events: list[NewEvent]) -> list[AddResult]:
    keyed = [e for e in events if e.dedupe_key and e.dedupe_window]
    latest: dict[tuple[str, str], tuple[str, float]] = {}  # (source, key) -> the latest stored event
    if keyed:
        await cursor.execute(_SQL["lock_dedupe_keys"], ([f"{e.source}\n{e.dedupe_key}" for e in keyed],))
        since = min(e.received_at - (e.dedupe_window or 0) for e in keyed)
        rows = await _all(cursor, _SQL["originals"], ([e.source for e in keyed], [e.dedupe_key for e in keyed], since))
        latest = {(source, key): (event_id, at) for source, key, event_id, at in rows}
    results, stored = [], []
    for event in events:
        key = (event.source, event.dedupe_key or "")
        found = latest.get(key) if event.dedupe_key and event.dedupe_window else None
        if found and found[1] >= event.received_at - (event.dedupe_window or 0):
            results.append(AddResult(found[0], True, 0))
            continue
        if event.dedupe_key and event.dedupe_window:
            latest[key] = (event.id, event.received_at)  # a later one in this batch is its duplicate
        stored.append(event)
        results.append(AddResult(event.id, False, len(event.deliveries)))
    if stored:
        columns = list(zip(*[(e.id, e.source, e.event_type, e.body, e.dedupe_key, e.received_at, e.config_version, e.code, e.token, e.tenant) for e in stored]))
        await cursor.execute(_SQL["insert_events_batch"], [list(c) for c in columns])
        rows = [
            (d.id, e.id, d.route, d.destination, d.body, d.status, d.ordering_key, e.received_at, d.error, e.received_at, e.received_at, e.config_version, d.trace)
            for e in stored
            for d in e.deliveries
        ]
        if rows:
            await cursor.execute(_SQL["insert_deliveries_batch"], [list(c) for c in zip(*rows)])
        if any(d.status == PENDING for e in stored for d in e.deliveries):
            await cursor.execute(_SQL["notify_work"])
    return results


async def _add_event(cursor: psycopg.AsyncCursor, event: NewEvent) -> AddResult:
    if event.dedupe_key and event.dedupe_window:
        await cursor.execute(_SQL["lock_dedupe_key"], (f"{event.source}\n{event.dedupe_key}",))
        original = await _one(cursor, _SQL["original"], (event.source, event.dedupe_key, event.received_at - event.dedupe_window))
        if original is not None:
            return AddResult(original, True, 0)
    await cursor.execute(_SQL["insert_event"], (event.id, event.source, event.event_type, event.body, event.dedupe_key, event.received_at, event.config_version, event.code, event.token, event.tenant))
    if event.deliveries:
        at = event.received_at
        rows = [(d.id, event.id, d.route, d.destination, d.body, d.status, d.ordering_key, at, d.error, at, at, event.config_version, d.trace) for d in event.deliveries]
        await cursor.executemany(_SQL["insert_delivery"], rows)
        if any(d.status == PENDING for d in event.deliveries):
            await cursor.execute(_SQL["notify_work"])
    return AddResult(event.id, False, len(event.deliveries))


async def _claim_due(
    cursor: psycopg.AsyncCursor, now: float, wanted: dict[str, int], configured: list[str], lease_until: float, others: int, rates: dict[str, tuple[int, float]]
) -> list[ClaimedDelivery]:
    await cursor.execute(_SQL["expire_leases"], (now, now))
    for name in sorted(rates):  # sorted: two replicas lock the buckets in the same order
        count, per_seconds = rates[name]
        tokens = await _one(cursor, _SQL["refill_bucket"], {"destination": name, "capacity": count, "per_second": count / per_seconds, "now": now})
        wanted[name] = min(wanted[name], int(tokens))
    claimed: list[ClaimedDelivery] = []
    names = sorted(name for name, n in wanted.items() if n > 0)
    if names:
        rows = await _all(cursor, _SQL["claim_due"], (lease_until, now, names, [wanted[n] for n in names], now))
        claimed += [ClaimedDelivery(*row) for row in rows]
    for name in sorted(rates):
        taken = sum(1 for c in claimed if c.destination == name)
        if taken:
            await cursor.execute(_SQL["take_tokens"], (taken, name))
    if others > 0:
        rows = await _all(cursor, _SQL["claim_others"], (lease_until, now, now, configured, others))
        claimed += [ClaimedDelivery(*row) for row in rows]
    return claimed


async def _record_attempts(cursor: psycopg.AsyncCursor, items: list[tuple[AttemptResult, float]]) -> list[None]:
    """A batch's attempts and their deliveries' new states: two statements in all."""
    attempts = [(r.delivery_id, r.started_at, r.duration_ms, r.status_code, r.response, r.error, r.outcome) for r, _ in items]
    await cursor.execute(_SQL["insert_attempts_batch"], [list(column) for column in zip(*attempts)])
    changes = []
    for result, now in items:
        status = _OUTCOME_STATUS[result.outcome]
        error = None if status == DELIVERED else (result.error or f"HTTP {result.status_code}")
        changes.append((result.delivery_id, status, result.next_attempt_at, error, now))
    await cursor.execute(_SQL["move_attempted_deliveries"], [list(column) for column in zip(*changes)])
    return [None] * len(items)


def _named(name: str) -> str:
    return f"%({name})s"


def _where(selection: DeliveryFilter) -> tuple[str, list[Any]]:
    """A WHERE fragment (placeholders only) and its parameters for a selection of deliveries."""
    clauses: list[str] = []
    params: list[Any] = []
    if selection.statuses:
        clauses.append("status = ANY(%s::text[])")
        params.append(list(selection.statuses))
    if selection.destination:
        clauses.append("destination = %s")
        params.append(selection.destination)
    if selection.since is not None:
        clauses.append("created_at >= %s")
        params.append(selection.since)
    if selection.ids:
        clauses.append("(id = ANY(%s::text[]) OR event_id = ANY(%s::text[]))")
        params += [list(selection.ids), list(selection.ids)]
    if selection.tenant is not None:
        clauses.append("left(destination, length(%s)) = %s")
        params += [tenant_prefix(selection.tenant)] * 2
    return (" AND ".join(clauses) or "TRUE"), params


async def _get_event(cursor: psycopg.AsyncCursor, event_id: str) -> EventRow | None:
    await cursor.execute(_SQL["get_event"], (event_id,))
    row = await cursor.fetchone()
    if row is None:
        return None
    deliveries = []
    for delivery in await _all(cursor, _SQL["event_deliveries"], (event_id,)):
        attempts = await _all(cursor, _SQL["delivery_attempts"], (delivery[0],))
        replaced = await _all(cursor, _SQL["delivery_replaced_bodies"], (delivery[0],))
        deliveries.append(DeliveryRow(*delivery, attempt_log=tuple(AttemptRow(*a) for a in attempts), replaced_bodies=tuple(replaced)))
    return EventRow(*row, deliveries=tuple(deliveries))


async def _erase_event(cursor: psycopg.AsyncCursor, event_id: str) -> bool:
    if await _rowcount(cursor, _SQL["erase_event_body"], (event_id,)) == 0:
        return False
    for query in ("erase_event_deliveries", "erase_event_responses", "erase_event_replaced_bodies"):
        await cursor.execute(_SQL[query], (event_id,))
    return True


async def _rerender(cursor: psycopg.AsyncCursor, delivery_id: str, body: str | None, error: str | None, version: str, now: float) -> None:
    """Keep the old body in replaced_bodies; the new one is due now (or failed, with why)."""
    await cursor.execute(_SQL["keep_replaced_body"], (now, delivery_id))
    status = PENDING if error is None else FAILED
    await cursor.execute(_SQL["rerender"], (body, status, error, version, now, now, delivery_id))
