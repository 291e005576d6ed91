"""An in-memory store: the store contract without a database, for tests of what sits above it.

It passes the same contract suite as the real backends (tests/store/), so the delivery engine's
behaviour can be tested on it with a controlled clock in milliseconds instead of processes and
files (tests/delivery/test_engine.py). Several `MemoryStore`s on one `MemoryDatabase` behave
like several processes on one database file. Nothing is durable: no command of the gateway
opens one; `gateway serve` always stores on disk.

Each operation runs without awaiting inside it, so it is atomic on the event loop, as a
transaction is in a database.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

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
    Incident,
    Store,
    StoreUnavailable,
    activity_from_rows,
    tenant_prefix,
)

_OUTCOME_STATUS = {"delivered": DELIVERED, "retry": PENDING, "dead": DEAD}


@dataclass
class _Event:
    row: EventRow
    dedupe_key: str | None
    seq: int
    code: str | None = None  # GO's data.code, kept at ingest (and after an erasure) as the SQL backends keep it


@dataclass
class _Delivery:
    row: DeliveryRow  # attempt_log and replaced_bodies grow as tuples
    ordering_key: str | None
    seq: int
    claimed_until: float | None = None
    trace: str | None = None


@dataclass
class _Incident:
    row: Incident
    claimed_until: float | None = None  # its notice's claim, kept by the store and not shown


@dataclass
class MemoryDatabase:
    """What several MemoryStores share, as processes share a database file."""

    events: dict[str, _Event] = field(default_factory=dict)
    deliveries: dict[str, _Delivery] = field(default_factory=dict)  # in insertion (seq) order
    sequence: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]
    sessions: dict[str, ConsoleSession] = field(default_factory=dict)
    created: dict[str, dict[str, str]] = field(default_factory=dict)  # delivery id -> step -> record id
    login_failures: list[tuple[str, float]] = field(default_factory=list)  # (address, at)
    incidents: dict[str, _Incident] = field(default_factory=dict)  # by id, in opening order


class MemoryStore(Store):
    def __init__(self, database: MemoryDatabase | None = None) -> None:
        self.db = database or MemoryDatabase()
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> MemoryDatabase:
        if not self._open:
            raise StoreUnavailable("the store is not open")
        return self.db

    async def ping(self) -> None:
        self._check_open()

    # ----------------------------------------------------------------- ingest

    async def add_event(self, event: NewEvent) -> AddResult:
        db = self._check_open()
        original = _original(db, event)
        if original is not None:
            return AddResult(original, True, 0)
        if event.id in db.events or any(d.id in db.deliveries for d in event.deliveries):
            raise ValueError(f"UNIQUE constraint failed: event {event.id} or one of its deliveries is stored already")
        db.events[event.id] = _Event(EventRow(event.id, event.source, event.event_type, event.body, event.received_at, event.config_version, event.token, event.tenant), event.dedupe_key, next(db.sequence), event.code)
        for d in event.deliveries:
            row = DeliveryRow(d.id, event.id, d.route, d.destination, d.status, 0, event.received_at, d.error, d.body, event.received_at, event.received_at, event.config_version)
            db.deliveries[d.id] = _Delivery(row, d.ordering_key, next(db.sequence), trace=d.trace)
        return AddResult(event.id, False, len(event.deliveries))

    # ----------------------------------------------------------------- the engine's work

    async def claim_due(
        self, now: float, quotas: Mapping[str, int], lease_seconds: float, others: int = 0, rates: Mapping[str, tuple[int, float]] | None = None
    ) -> list[ClaimedDelivery]:
        db = self._check_open()
        for d in db.deliveries.values():  # expired leases: due again, in their old place
            if d.row.status == SENDING and d.claimed_until is not None and d.claimed_until < now:
                d.row = replace(d.row, status=PENDING, updated_at=now)
                d.claimed_until = None
        due = [d for d in db.deliveries.values() if _is_due(d, now) and not _held_back(db, d)]
        due.sort(key=lambda d: (d.row.next_attempt_at or 0, d.seq))
        left = dict(quotas)
        claimed = []
        for d in due:
            name = d.row.destination
            if name not in left:
                if others <= 0:
                    continue
                others -= 1
            elif left[name] <= 0:
                continue
            else:
                left[name] -= 1
            d.row = replace(d.row, status=SENDING, updated_at=now)
            d.claimed_until = now + lease_seconds
            r = d.row
            claimed.append(ClaimedDelivery(r.id, r.event_id, r.route, r.destination, r.body or "", r.attempts, d.ordering_key, r.created_at, d.trace))
        return claimed

    async def record_attempt(self, result: AttemptResult, now: float) -> None:
        db = self._check_open()
        d = db.deliveries.get(result.delivery_id)
        if d is None:
            return
        status = _OUTCOME_STATUS[result.outcome]
        number = len(d.row.attempt_log) + 1
        attempt = AttemptRow(number, result.started_at, result.duration_ms, result.status_code, result.response, result.error, result.outcome)
        error = None if status == DELIVERED else (result.error or f"HTTP {result.status_code}")
        d.row = replace(
            d.row, status=status, attempts=d.row.attempts + 1, next_attempt_at=result.next_attempt_at, last_error=error, updated_at=now, attempt_log=(*d.row.attempt_log, attempt)
        )
        d.claimed_until = None

    async def release(self, delivery_ids: list[str], now: float) -> None:
        db = self._check_open()
        for delivery_id in delivery_ids:
            d = db.deliveries.get(delivery_id)
            if d is not None and d.row.status == SENDING:
                d.row = replace(d.row, status=PENDING, next_attempt_at=now, updated_at=now)
                d.claimed_until = None

    async def next_due_at(self) -> float | None:
        db = self._check_open()
        times = [d.row.next_attempt_at for d in db.deliveries.values() if d.row.status == PENDING and d.row.next_attempt_at is not None]
        times += [d.claimed_until for d in db.deliveries.values() if d.row.status == SENDING and d.claimed_until is not None]
        return min(times, default=None)

    # ----------------------------------------------------------------- operators

    async def requeue(self, selection: DeliveryFilter, now: float) -> int:
        db = self._check_open()
        chosen = [d for d in db.deliveries.values() if d.row.body is not None and _selected(d.row, selection)]
        for d in chosen:
            d.row = replace(d.row, status=PENDING, next_attempt_at=now, attempts=0, updated_at=now)
            d.claimed_until = None
        return len(chosen)

    async def rerender(self, delivery_id: str, body: str | None, error: str | None, config_version: str, now: float) -> None:
        db = self._check_open()
        d = db.deliveries.get(delivery_id)
        if d is None:
            return
        replaced = (*d.row.replaced_bodies, (d.row.body, d.row.config_version, now))
        status = PENDING if error is None else FAILED
        d.row = replace(
            d.row, body=body, status=status, last_error=error, config_version=config_version, attempts=0, next_attempt_at=now, updated_at=now, replaced_bodies=replaced
        )
        d.claimed_until = None

    async def list_deliveries(self, selection: DeliveryFilter, limit: int = 1000) -> list[DeliveryRow]:
        db = self._check_open()
        found = [replace(d.row, attempt_log=(), replaced_bodies=()) for d in db.deliveries.values() if _selected(d.row, selection)]
        return found[:limit]

    async def delivery_refs(self, selection: DeliveryFilter, after: str, limit: int) -> list[DeliveryRef]:
        db = self._check_open()
        found = sorted((d.row for d in db.deliveries.values() if d.row.id > after and _selected(d.row, selection)), key=lambda r: r.id)
        return [DeliveryRef(r.id, r.event_id, r.route, r.destination, r.body is not None) for r in found[:limit]]

    async def count_deliveries(self, selection: DeliveryFilter) -> int:
        db = self._check_open()
        return sum(1 for d in db.deliveries.values() if _selected(d.row, selection))

    async def list_events(self, query: EventQuery = NEWEST_EVENTS) -> list[EventRow]:
        db = self._check_open()
        status, destination = query.status, query.destination
        having = (
            {d.row.event_id for d in db.deliveries.values() if (status is None or d.row.status == status) and (destination is None or d.row.destination == destination)}
            if status or destination
            else None
        )
        found = sorted((e for e in db.events.values() if _event_selected(e, query) and (having is None or e.row.id in having)), key=lambda e: (e.row.received_at, e.seq), reverse=True)
        found = _after(db, found, query.before)
        if query.down_to is not None and query.down_to in db.events:
            bound = db.events[query.down_to]
            found = [e for e in found if (e.row.received_at, e.seq) >= (bound.row.received_at, bound.seq)]
        return [e.row for e in found[: query.limit]]

    async def window_end(self, query: EventQuery, size: int) -> tuple[str, float] | None:
        db = self._check_open()
        plain = replace(query, text=None, status=None, destination=None, down_to=None)
        found = _after(db, sorted((e for e in db.events.values() if _event_selected(e, plain)), key=lambda e: (e.row.received_at, e.seq), reverse=True), query.before)
        return (found[size - 1].row.id, found[size - 1].row.received_at) if len(found) > size else None

    async def activity(self, since: float, bucket_seconds: int = 60, tenant: str | None = None) -> Activity:
        db = self._check_open()
        events: Counter[float] = Counter(
            e.row.received_at // bucket_seconds * bucket_seconds for e in db.events.values() if e.row.received_at >= since and (tenant is None or e.row.tenant == tenant)
        )
        attempts: Counter[tuple[float, str]] = Counter(
            (a.started_at // bucket_seconds * bucket_seconds, a.outcome)
            for d in db.deliveries.values()
            if _of_tenant(d.row, tenant)
            for a in d.row.attempt_log
            if a.started_at >= since
        )
        return activity_from_rows(events.items(), [(start, outcome, n) for (start, outcome), n in attempts.items()])

    async def route_counts(self, since: float) -> dict[str, int]:
        db = self._check_open()
        matched = {(d.row.route, d.row.event_id) for d in db.deliveries.values() if d.row.created_at >= since}
        return dict(Counter(route for route, _ in matched))

    async def delivery_statuses(self, event_ids: list[str]) -> dict[str, dict[str, int]]:
        db = self._check_open()
        wanted, found = set(event_ids), {}  # type: ignore[var-annotated]
        for d in db.deliveries.values():
            if d.row.event_id in wanted:
                counts = found.setdefault(d.row.event_id, {})
                counts[d.row.status] = counts.get(d.row.status, 0) + 1
        return found

    async def get_event(self, event_id: str) -> EventRow | None:
        db = self._check_open()
        event = db.events.get(event_id)
        if event is None:
            return None
        return replace(event.row, deliveries=tuple(d.row for d in db.deliveries.values() if d.row.event_id == event_id))

    async def purge(self, older_than: float) -> int:
        db = self._check_open()
        unfinished = {d.row.event_id for d in db.deliveries.values() if d.row.status in (PENDING, SENDING)}
        gone = {i for i, e in db.events.items() if e.row.received_at < older_than and i not in unfinished}
        for event_id in gone:
            del db.events[event_id]
        for delivery_id in [i for i, d in db.deliveries.items() if d.row.event_id in gone]:
            del db.deliveries[delivery_id]
            db.created.pop(delivery_id, None)
        return len(gone)

    async def erase_event(self, event_id: str) -> bool:
        db = self._check_open()
        event = db.events.get(event_id)
        if event is None:
            return False
        event.row, event.dedupe_key = replace(event.row, body=None), None
        for d in db.deliveries.values():
            if d.row.event_id != event_id:
                continue
            unfinished = d.row.status in (PENDING, SENDING)
            d.row = replace(
                d.row,
                status=DEAD if unfinished else d.row.status,
                last_error="erased on request before delivery" if unfinished else d.row.last_error,
                body=None,
                attempt_log=tuple(replace(a, response=None) for a in d.row.attempt_log),
                replaced_bodies=tuple((None, version, when) for _, version, when in d.row.replaced_bodies),
            )
        return True

    async def stats(self, tenant: str | None = None) -> QueueStats:
        db = self._check_open()
        counts: dict[str, int] = {}
        for d in db.deliveries.values():
            if not _of_tenant(d.row, tenant):
                continue
            counts[d.row.status] = counts.get(d.row.status, 0) + 1
        return QueueStats(counts)

    async def record_created(self, delivery_id: str, step: str, record_id: str, now: float) -> None:
        db = self._check_open()
        if delivery_id not in db.deliveries:
            raise ValueError(f"FOREIGN KEY constraint failed: no delivery {delivery_id}")
        db.created.setdefault(delivery_id, {})[step] = record_id

    async def records_created(self, delivery_id: str) -> dict[str, str]:
        return dict(self._check_open().created.get(delivery_id, {}))

    # ----------------------------------------------------------------- the console's logins

    async def open_incident(self, incident: Incident) -> bool:
        db = self._check_open()
        if any(i.row.key == incident.key and i.row.resolved_at is None for i in db.incidents.values()):
            return False
        db.incidents[incident.id] = _Incident(incident)
        return True

    async def resolve_incident(self, key: str, now: float) -> bool:
        found = next((i for i in self._check_open().incidents.values() if i.row.key == key and i.row.resolved_at is None), None)
        if found is None:
            return False
        found.row, found.claimed_until = replace(found.row, resolved_at=now, notice_attempts=0, notice_error=None), None
        return True

    async def claim_notices(self, now: float, lease: float, max_attempts: int) -> list[Incident]:
        claimed = []
        for incident in self._check_open().incidents.values():
            free = incident.claimed_until is None or incident.claimed_until < now
            if incident.row.notice_due and free and incident.row.notice_attempts < max_attempts:
                incident.claimed_until = now + lease
                claimed.append(incident.row)
        return claimed

    async def notice_sent(self, incident_id: str, notice: str, now: float, error: str | None = None, retry_at: float | None = None) -> None:
        incident = self._check_open().incidents[incident_id]
        row = incident.row
        if error is not None:
            incident.row, incident.claimed_until = replace(row, notice_attempts=row.notice_attempts + 1, notice_error=error), retry_at
        elif notice == "resolved":
            incident.row, incident.claimed_until = replace(row, resolved_notified_at=now, notice_error=None), None
        else:
            incident.row, incident.claimed_until = replace(row, open_notified_at=now, notice_attempts=0, notice_error=None), None

    async def incidents(self, limit: int = 50) -> list[Incident]:
        rows = [i.row for i in self._check_open().incidents.values()]
        return sorted(rows, key=lambda r: (r.opened_at, r.id), reverse=True)[:limit]

    async def oldest_pending_at(self) -> float | None:
        return min((d.row.created_at for d in self._check_open().deliveries.values() if d.row.status == PENDING), default=None)

    async def add_session(self, session: ConsoleSession, forget_before: float) -> None:
        db = self._check_open()
        db.sessions = {k: v for k, v in db.sessions.items() if v.started_at >= forget_before}
        db.sessions[session.id] = session

    async def get_session(self, session_id: str) -> ConsoleSession | None:
        return self._check_open().sessions.get(session_id)

    async def end_session(self, session_id: str, now: float) -> bool:
        db = self._check_open()
        found = db.sessions.get(session_id)
        if found is None or found.ended_at is not None:
            return False
        db.sessions[session_id] = replace(found, ended_at=now)
        return True

    async def active_sessions(self, since: float) -> list[ConsoleSession]:
        found = [s for s in self._check_open().sessions.values() if s.started_at >= since and s.ended_at is None]
        return sorted(found, key=lambda s: s.started_at, reverse=True)

    async def record_login_failure(self, address: str, now: float, forget_before: float) -> None:
        db = self._check_open()
        db.login_failures = [(a, at) for a, at in db.login_failures if at >= forget_before] + [(address, now)]

    async def login_failures(self, address: str, since: float) -> int:
        return sum(1 for a, at in self._check_open().login_failures if a == address and at >= since)


def _after(db: MemoryDatabase, newest_first: list[_Event], before: str | None) -> list[_Event]:
    """The events past the cursor `before` (a page's last), in the same order."""
    if before is None or before not in db.events:
        return newest_first
    cursor = db.events[before]
    return [e for e in newest_first if (e.row.received_at, e.seq) < (cursor.row.received_at, cursor.seq)]


def _original(db: MemoryDatabase, event: NewEvent) -> str | None:
    """The latest stored event of the same source and dedupe key inside the window, if any."""
    if not event.dedupe_key or not event.dedupe_window:
        return None
    since = event.received_at - event.dedupe_window
    same = [e for e in db.events.values() if e.dedupe_key == event.dedupe_key and e.row.source == event.source and e.row.received_at >= since]
    return max(same, key=lambda e: (e.row.received_at, e.seq)).row.id if same else None


def _is_due(d: _Delivery, now: float) -> bool:
    return d.row.status == PENDING and d.row.next_attempt_at is not None and d.row.next_attempt_at <= now


def _held_back(db: MemoryDatabase, d: _Delivery) -> bool:
    """An earlier delivery with the same destination and ordering key is not finished yet."""
    if d.ordering_key is None:
        return False
    return any(
        e.seq < d.seq and e.ordering_key == d.ordering_key and e.row.destination == d.row.destination and e.row.status in (PENDING, SENDING)
        for e in db.deliveries.values()
    )


def _event_selected(event: _Event, query: EventQuery) -> bool:
    row = event.row
    if row.received_at < (query.since or 0) or (query.until is not None and row.received_at >= query.until):
        return False
    if (query.event_type and row.event_type != query.event_type) or (query.source and row.source != query.source):
        return False
    if query.text and (row.body is None or query.text not in row.body):
        return False
    if query.tenant is not None and row.tenant != query.tenant:
        return False
    return query.code is None or event.code == query.code


def _selected(row: DeliveryRow, selection: DeliveryFilter) -> bool:
    return (
        (not selection.statuses or row.status in selection.statuses)
        and (selection.destination is None or row.destination == selection.destination)
        and (selection.since is None or row.created_at >= selection.since)
        and (not selection.ids or row.id in selection.ids or row.event_id in selection.ids)
        and _of_tenant(row, selection.tenant)
    )


def _of_tenant(row: DeliveryRow, tenant: str | None) -> bool:
    return tenant is None or row.destination.startswith(tenant_prefix(tenant))
