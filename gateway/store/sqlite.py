"""SQLite backend: the embedded default. The domain's operations on SQLite.

Every operation runs on the group-commit executor (gateway/store/sqlite_executor.py), which
owns the connection, the transactions and the durability; the queries are named blocks in
gateway/store/sql/sqlite/queries.sql. New events and attempt records are written in bulk: all
of a batch's rows with one multi-row INSERT per table. Dedupe keys are remembered
(gateway/store/recent.py), not looked up: each batch reads the newest rowid, and loads only
the keys that other processes stored since.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from gateway.store.base import (
    DEAD,
    DELIVERED,
    FAILED,
    NEWEST_EVENTS,
    PENDING,
    SENDING,
    Activity,
    AddResult,
    AttemptResult,
    AttemptRow,
    ClaimedDelivery,
    ConsoleSession,
    DeliveryFilter,
    DeliveryRef,
    DeliveryRow,
    EventQuery,
    EventRow,
    NewEvent,
    QueueStats,
    Store,
    Incident,
    activity_from_rows,
    event_query_params,
    notice_update,
    list_events_sql,
    tenant_prefix,
)
from gateway.store.recent import RecentKeys, digest
from gateway.store.sqlfiles import migrations, queries
from gateway.store.sqlite_executor import GroupCommitExecutor

PURGE_CHUNK_EVENTS = 500
# Attempt records are written at most every 2 ms, more of them per transaction: fewer turns at the
# write lock that ingest's commits wait for (gateway/store/sqlite_executor.py).
ATTEMPT_PACE_SECONDS = 0.002
_SQL = queries("sqlite")
_SQLITE_MAX_VARIABLES = 32766
_MAX_CLAIM_ARMS = 400
_OUTCOME_STATUS = {"delivered": DELIVERED, "retry": PENDING, "dead": DEAD}


class SQLiteStore(Store):
    def __init__(self, path: str) -> None:
        self.path = path
        self.url = None if path == ":memory:" else f"sqlite:///{path}"  # one writer: the ingest child, where there are children
        self._recent = RecentKeys()  # the dedupe window; only the executor's thread touches it
        self._executor = GroupCommitExecutor(
            path,
            bulk={"event": self._insert_events, "attempt": _record_attempts},
            committed=self._recent.commit,
            rolled_back=self._recent.discard,
            pace={"attempt": ATTEMPT_PACE_SECONDS},  # the engine's records wait; ingest's commits do not
        )

    async def open(self) -> None:
        await self._executor.open()
        await self._executor.call(_migrate, durable=True)
        self._executor.start_checkpoints()

    async def close(self) -> None:
        await self._executor.close()

    async def ping(self) -> None:
        await self._executor.call(lambda c: c.execute(_SQL["ping"]).fetchone())

    # ----------------------------------------------------------------- ingest

    async def add_event(self, event: NewEvent) -> AddResult:
        return await self._executor.bulk("event", event, durable=True)

    def _insert_events(self, connection: sqlite3.Connection, events: list[NewEvent]) -> list[AddResult]:
        """Store a batch's events: duplicates answered, the rest inserted with multi-row INSERTs."""
        recent = self._recent
        recent.discard()  # a batch whose savepoint was rolled back stored nothing to remember
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
        event_rows = [(e.id, e.source, e.event_type, e.body, e.dedupe_key, e.received_at, e.config_version, e.code, e.token, e.tenant) for e in stored]
        delivery_rows = [
            (d.id, e.id, d.route, d.destination, d.body, d.status, d.ordering_key, e.received_at, d.error, e.received_at, e.received_at, e.config_version, d.trace)
            for e in stored
            for d in e.deliveries
        ]
        last_event_row = _insert_rows(connection, "insert_events", event_rows)
        _insert_rows(connection, "insert_deliveries", delivery_rows)
        if keyed:  # remembered once the transaction commits
            recent.stage([(key, e.received_at) for key, e in remembered.items()], last_event_row, now=max(e.received_at for e in events))
        return results

    # ----------------------------------------------------------------- the engine's work

    async def claim_due(
        self, now: float, quotas: Mapping[str, int], lease_seconds: float, others: int = 0, rates: Mapping[str, tuple[int, float]] | None = None
    ) -> list[ClaimedDelivery]:
        if not others and not any(n > 0 for n in quotas.values()):
            return []
        return await self._executor.call(lambda c: _claim_due(c, now, quotas, now + lease_seconds, others))

    async def record_attempt(self, result: AttemptResult, now: float) -> None:
        await self._executor.bulk("attempt", (result, now))

    async def release(self, delivery_ids: list[str], now: float) -> None:
        if delivery_ids:
            sql = _SQL["release"].format(marks=_marks(delivery_ids))
            await self._executor.call(lambda c: c.execute(sql, (PENDING, now, now, SENDING, *delivery_ids)))

    async def next_due_at(self) -> float | None:
        return await self._executor.call(lambda c: c.execute(_SQL["next_due_at"], (PENDING, SENDING)).fetchone()[0])

    # ----------------------------------------------------------------- operators

    async def requeue(self, selection: DeliveryFilter, now: float) -> int:
        where, params = _where(selection)
        sql = _SQL["requeue"].format(where=where)
        return await self._executor.call(lambda c: c.execute(sql, (PENDING, now, now, *params)).rowcount, durable=True)

    async def rerender(self, delivery_id: str, body: str | None, error: str | None, config_version: str, now: float) -> None:
        await self._executor.call(lambda c: _rerender(c, delivery_id, body, error, config_version, now), durable=True)

    async def list_deliveries(self, selection: DeliveryFilter, limit: int = 1000) -> list[DeliveryRow]:
        where, params = _where(selection)
        sql = _SQL["list_deliveries"].format(where=where)
        return await self._executor.call(lambda c: [DeliveryRow(*row) for row in c.execute(sql, (*params, limit))])

    async def delivery_refs(self, selection: DeliveryFilter, after: str, limit: int) -> list[DeliveryRef]:
        where, params = _where(selection)
        sql = _SQL["delivery_refs"].format(where=where)
        return await self._executor.call(lambda c: [DeliveryRef(i, e, r, d, bool(b)) for i, e, r, d, b in c.execute(sql, (*params, after, limit))])

    async def count_deliveries(self, selection: DeliveryFilter) -> int:
        where, params = _where(selection)
        sql = _SQL["count_deliveries"].format(where=where)
        return await self._executor.call(lambda c: c.execute(sql, params).fetchone()[0])

    async def list_events(self, query: EventQuery = NEWEST_EVENTS) -> list[EventRow]:
        params = event_query_params(query)
        sql = list_events_sql(_SQL["list_events"], query, _named, "AND (received_at, rowid) >= (SELECT received_at, rowid FROM events WHERE id = :down_to)")
        return await self._executor.call(lambda c: [EventRow(*row) for row in c.execute(sql, params)])

    async def window_end(self, query: EventQuery, size: int) -> tuple[str, float] | None:
        params = {**event_query_params(query), "offset": size - 1}
        sql = list_events_sql(_SQL["window_end"], query, _named)
        rows = await self._executor.call(lambda c: c.execute(sql, params).fetchall())
        return (rows[0][0], rows[0][1]) if len(rows) == 2 else None

    async def activity(self, since: float, bucket_seconds: int = 60, tenant: str | None = None) -> Activity:
        params = {"since": since, "bucket": bucket_seconds, "tenant": tenant, "prefix": tenant_prefix(tenant) if tenant else None}
        attempts_sql = _SQL["attempts_per_bucket_of_tenant" if tenant else "attempts_per_bucket"]
        events = await self._executor.call(lambda c: c.execute(_SQL["events_per_bucket"], params).fetchall())
        attempts = await self._executor.call(lambda c: c.execute(attempts_sql, params).fetchall())
        return activity_from_rows(events, attempts)

    async def route_counts(self, since: float) -> dict[str, int]:
        return dict(await self._executor.call(lambda c: c.execute(_SQL["route_counts"], {"since": since}).fetchall()))

    async def delivery_statuses(self, event_ids: list[str]) -> dict[str, dict[str, int]]:
        if not event_ids:
            return {}
        sql = _SQL["delivery_statuses"].format(marks=_marks(event_ids))
        rows = await self._executor.call(lambda c: c.execute(sql, event_ids).fetchall())
        found: dict[str, dict[str, int]] = {}
        for event_id, status, count in rows:
            found.setdefault(event_id, {})[status] = count
        return found

    async def get_event(self, event_id: str) -> EventRow | None:
        return await self._executor.call(lambda c: _get_event(c, event_id))

    async def purge(self, older_than: float) -> int:
        """Delete in chunks, one transaction each: ingest waits for the write lock one chunk at
        a time, not for a whole day's events, and SQLite's undo journal stays small."""
        purged = 0
        params = (older_than, PENDING, SENDING, PURGE_CHUNK_EVENTS)
        while deleted := await self._executor.call(lambda c: c.execute(_SQL["purge_chunk"], params).rowcount, durable=True):
            purged += deleted
        return purged

    async def erase_event(self, event_id: str) -> bool:
        return await self._executor.call(lambda c: _erase_event(c, event_id), durable=True)

    async def stats(self, tenant: str | None = None) -> QueueStats:
        sql, params = (_SQL["stats_of_tenant"], (tenant_prefix(tenant),) * 2) if tenant else (_SQL["stats"], ())
        rows = await self._executor.call(lambda c: c.execute(sql, params).fetchall())
        return QueueStats(dict(rows))

    async def record_created(self, delivery_id: str, step: str, record_id: str, now: float) -> None:
        await self._executor.call(lambda c: c.execute(_SQL["record_created"], (delivery_id, step, record_id, now)), durable=True)

    async def records_created(self, delivery_id: str) -> dict[str, str]:
        return dict(await self._executor.call(lambda c: c.execute(_SQL["records_created"], (delivery_id,)).fetchall()))

    # ----------------------------------------------------------------- alerts' incidents

    async def open_incident(self, incident: Incident) -> bool:
        row = (incident.id, incident.key, incident.kind, incident.subject, incident.detail, incident.opened_at)
        return bool(await self._executor.call(lambda c: c.execute(_SQL["open_incident"], row).rowcount, durable=True))

    async def resolve_incident(self, key: str, now: float) -> bool:
        return bool(await self._executor.call(lambda c: c.execute(_SQL["resolve_incident"], (now, key)).rowcount, durable=True))

    async def claim_notices(self, now: float, lease: float, max_attempts: int) -> list[Incident]:
        params = {"until": now + lease, "now": now, "max": max_attempts}
        return await self._executor.call(lambda c: [Incident(*row) for row in c.execute(_SQL["claim_notices"], params).fetchall()], durable=True)

    async def notice_sent(self, incident_id: str, notice: str, now: float, error: str | None = None, retry_at: float | None = None) -> None:
        sql, params = notice_update(notice, incident_id, now, error, retry_at)
        await self._executor.call(lambda c: c.execute(_SQL[sql], params), durable=True)

    async def incidents(self, limit: int = 50) -> list[Incident]:
        return await self._executor.call(lambda c: [Incident(*row) for row in c.execute(_SQL["incidents"], (limit,))])

    async def oldest_pending_at(self) -> float | None:
        return await self._executor.call(lambda c: c.execute(_SQL["oldest_pending_at"]).fetchone()[0])  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- the console's logins

    async def add_session(self, session: ConsoleSession, forget_before: float) -> None:
        def add(c: sqlite3.Connection) -> None:
            c.execute(_SQL["forget_sessions"], (forget_before,))
            c.execute(_SQL["add_session"], (session.id, session.started_at, session.address, session.agent, session.tenant))

        await self._executor.call(add, durable=True)

    async def get_session(self, session_id: str) -> ConsoleSession | None:
        row = await self._executor.call(lambda c: c.execute(_SQL["get_session"], (session_id,)).fetchone())
        return ConsoleSession(*row) if row else None

    async def end_session(self, session_id: str, now: float) -> bool:
        return bool(await self._executor.call(lambda c: c.execute(_SQL["end_session"], (now, session_id)).rowcount, durable=True))

    async def active_sessions(self, since: float) -> list[ConsoleSession]:
        return await self._executor.call(lambda c: [ConsoleSession(*row) for row in c.execute(_SQL["active_sessions"], (since,))])

    async def record_login_failure(self, address: str, now: float, forget_before: float) -> None:
        def record(c: sqlite3.Connection) -> None:
            c.execute(_SQL["forget_login_failures"], (forget_before,))
            c.execute(_SQL["record_login_failure"], (address, now))

        await self._executor.call(record)

    async def login_failures(self, address: str, since: float) -> int:
        return int(await self._executor.call(lambda c: c.execute(_SQL["login_failures"], (address, since)).fetchone()[0]))


# --------------------------------------------------------------------------- run in the executor's thread


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute(_SQL["create_migrations_table"])
    applied = {row[0] for row in connection.execute(_SQL["applied_migrations"])}
    for version, statements in migrations("sqlite"):
        if version in applied:
            continue
        for statement in statements:
            connection.execute(statement)
        connection.execute(_SQL["record_migration"], (version,))


def _named(name: str) -> str:
    return f":{name}"


def _marks(values: Any) -> str:
    return ",".join("?" * len(values))


def _sync_recent(connection: sqlite3.Connection, recent: RecentKeys, keyed: list[NewEvent]) -> None:
    """Bring the remembered window up to date with the database, inside the write lock.

    New rows get a larger rowid than any before, so rows past `high_water` are what other
    processes stored since: only those are read. The window is loaded whole the first time,
    when rows went away from its end, and when a longer window than any before (a reloaded
    routes.yaml) needs more. Keys that were purged or erased stay remembered: a key found here
    is confirmed in the database (`_original`), so remembering too much costs a query, never
    an event."""
    newest = connection.execute(_SQL["newest_event_row"]).fetchone()[0] or 0
    since = min(e.received_at - (e.dedupe_window or 0) for e in keyed)
    recent.longest_window = max(recent.longest_window, *(e.dedupe_window or 0 for e in keyed))
    if recent.high_water is None or newest < recent.high_water or (not recent.covers(since) and not recent.overflowed):
        since = min(since, recent.covered_since)
        recent.reset(since, connection.execute(_SQL["dedupe_keys_since"], (since,)), newest)
    elif newest > recent.high_water:
        recent.extend(connection.execute(_SQL["dedupe_keys_after_row"], (recent.high_water,)))
        recent.high_water = newest


def _original(connection: sqlite3.Connection, recent: RecentKeys, in_batch: dict[bytes, NewEvent], event: NewEvent, key: bytes) -> str | None:
    """The id of the latest stored event this one duplicates, if one is inside its window."""
    since = event.received_at - (event.dedupe_window or 0)
    earlier = in_batch.get(key)
    if earlier is not None and earlier.received_at >= since:
        return earlier.id
    stored_at = recent.stored_since(key, since)
    if stored_at is not None:
        row = connection.execute(_SQL["original_stored_at"], (stored_at, event.source, event.dedupe_key)).fetchone()
        return row[0] if row else None  # remembered but not found: store it (sent twice at worst, never lost)
    if recent.covers(since):
        return None
    row = connection.execute(_SQL["original_between"], (since, recent.covered_since, event.source, event.dedupe_key)).fetchone()
    return row[0] if row else None


def _insert_rows(connection: sqlite3.Connection, query: str, rows: list[tuple[Any, ...]]) -> int | None:
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
        sql = _SQL[query].format(rows=",".join([placeholder] * len(chunk)))
        last = connection.execute(sql, [v for row in chunk for v in row]).lastrowid
    return last


def _claim_due(connection: sqlite3.Connection, now: float, quotas: Mapping[str, int], lease_until: float, others: int) -> list[ClaimedDelivery]:
    """Expired leases back in line, then one UPDATE per chunk of destinations, each arm taking
    at most its destination's quota (SQLite allows 500 arms in a compound SELECT)."""
    connection.execute(_SQL["expire_leases"], (now, now))
    arms: list[tuple[str, tuple[Any, ...]]] = [(_SQL["claim_arm"], (name, now, n)) for name, n in sorted(quotas.items()) if n > 0]
    if others > 0:
        arms.append((_SQL["claim_others_arm"].format(marks=_marks(quotas)), (now, *sorted(quotas), others)))
    claimed: list[ClaimedDelivery] = []
    for start in range(0, len(arms), _MAX_CLAIM_ARMS):
        chunk = arms[start : start + _MAX_CLAIM_ARMS]
        sql = _SQL["claim_due"].format(arms=" UNION ALL ".join(arm for arm, _ in chunk))
        params = (lease_until, now, *(p for _, arm_params in chunk for p in arm_params))
        claimed += [ClaimedDelivery(*row) for row in connection.execute(sql, params).fetchall()]
    return claimed


def _record_attempts(connection: sqlite3.Connection, items: list[tuple[AttemptResult, float]]) -> list[None]:
    """Record a batch's attempts and move their deliveries on: three statements in all."""
    ids = sorted({result.delivery_id for result, _ in items})
    counts = dict(connection.execute(_SQL["attempts_made"].format(marks=_marks(ids)), ids))
    attempts, changes = [], []
    for result, now in items:
        counts[result.delivery_id] = counts.get(result.delivery_id, 0) + 1
        attempts.append((result.delivery_id, counts[result.delivery_id], result.started_at, result.duration_ms, result.status_code, result.response, result.error, result.outcome))
        status = _OUTCOME_STATUS[result.outcome]
        error = None if status == DELIVERED else (result.error or f"HTTP {result.status_code}")
        changes.append((result.delivery_id, status, result.next_attempt_at, error, now))
    _insert_rows(connection, "insert_attempts", attempts)
    per_statement = _SQLITE_MAX_VARIABLES // 5
    for start in range(0, len(changes), per_statement):
        chunk = changes[start : start + per_statement]
        sql = _SQL["move_attempted_deliveries"].format(rows=",".join(["(?, ?, ?, ?, ?)"] * len(chunk)))
        connection.execute(sql, [value for change in chunk for value in change])
    return [None] * len(items)


def _where(selection: DeliveryFilter) -> tuple[str, list[Any]]:
    """A WHERE fragment (placeholders only) and its parameters for a selection of deliveries."""
    clauses, params = [], []
    if selection.statuses:
        clauses.append(f"status IN ({_marks(selection.statuses)})")
        params.extend(selection.statuses)
    if selection.destination:
        clauses.append("destination = ?")
        params.append(selection.destination)
    if selection.since is not None:
        clauses.append("created_at >= ?")
        params.append(selection.since)
    if selection.ids:
        clauses.append(f"(id IN ({_marks(selection.ids)}) OR event_id IN ({_marks(selection.ids)}))")
        params.extend(selection.ids)
        params.extend(selection.ids)
    if selection.tenant is not None:
        clauses.append("substr(destination, 1, length(?)) = ?")
        params += [tenant_prefix(selection.tenant)] * 2
    return (" AND ".join(clauses) or "1 = 1"), params


def _get_event(connection: sqlite3.Connection, event_id: str) -> EventRow | None:
    row = connection.execute(_SQL["get_event"], (event_id,)).fetchone()
    if row is None:
        return None
    deliveries = []
    for delivery in connection.execute(_SQL["event_deliveries"], (event_id,)).fetchall():
        attempts = connection.execute(_SQL["delivery_attempts"], (delivery[0],)).fetchall()
        replaced = connection.execute(_SQL["delivery_replaced_bodies"], (delivery[0],)).fetchall()
        deliveries.append(DeliveryRow(*delivery, attempt_log=tuple(AttemptRow(*a) for a in attempts), replaced_bodies=tuple(replaced)))
    return EventRow(*row, deliveries=tuple(deliveries))


def _erase_event(connection: sqlite3.Connection, event_id: str) -> bool:
    if connection.execute(_SQL["erase_event_body"], (event_id,)).rowcount == 0:
        return False
    connection.execute(_SQL["erase_event_deliveries"], (PENDING, SENDING, DEAD, PENDING, SENDING, event_id))
    connection.execute(_SQL["erase_event_responses"], (event_id,))
    connection.execute(_SQL["erase_event_replaced_bodies"], (event_id,))
    return True


def _rerender(connection: sqlite3.Connection, delivery_id: str, body: str | None, error: str | None, version: str, now: float) -> None:
    """Keep the old body in replaced_bodies; the new one is due now (or failed, with why)."""
    connection.execute(_SQL["keep_replaced_body"], (now, delivery_id))
    status = PENDING if error is None else FAILED
    connection.execute(_SQL["rerender"], (body, status, error, version, now, now, delivery_id))
