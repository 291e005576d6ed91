"""The store interface: the domain's operations, not SQL.

SQLite and PostgreSQL claim work differently (a single writer vs `FOR UPDATE SKIP LOCKED`), so
the interface speaks of events, deliveries, claims and attempts, and each backend does them its
own way. Every backend passes the same test suite (tests/store/).

Times are unix seconds (floats, UTC) passed in by the caller, so tests can drive a clock.
"""

from __future__ import annotations

import abc
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError
from gateway.quotas import Quota, QuotaBuckets

# Delivery statuses. Terminal: delivered, dead, failed (never rendered), skipped, shadow.
PENDING, SENDING, DELIVERED, DEAD, FAILED, SKIPPED, SHADOW = "pending", "sending", "delivered", "dead", "failed", "skipped", "shadow"
STATUSES = (PENDING, SENDING, DELIVERED, DEAD, FAILED, SKIPPED, SHADOW)


def new_id() -> str:
    """An id for a new event or delivery: 32 hex digits, milliseconds since 1970 then 80 random
    bits. Ids that grow with time put each new row at the end of every index keyed by them. With
    random ids every insert touched pages all over the file: once it held 18,000 events,
    ingest's p99 at 900 events/s was 43 ms instead of 24 (bench/README.md).

    The random part needs to be unique, not secret: `random`'s generator (seeded from the OS,
    and again in a forked child) costs no system call, where os.urandom took 7-12 µs here."""
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


class StoreUnavailable(GatewayError):
    """The store cannot be reached or written; nothing was stored."""


@dataclass(frozen=True)
class NewDelivery:
    id: str
    route: str
    destination: str
    body: str | None
    status: str
    error: str | None = None
    ordering_key: str | None = None
    trace: str | None = None  # the W3C traceparent of its event's ingest (gateway/tracing.py), when traces are on


@dataclass(frozen=True)
class NewEvent:
    id: str
    source: str
    event_type: str
    body: str
    received_at: float
    config_version: str
    deliveries: tuple[NewDelivery, ...] = ()
    dedupe_key: str | None = None
    dedupe_window: float | None = None  # seconds; None = no dedupe
    code: str | None = None  # GO's data.code, indexed for the console's search
    token: str | None = None  # which of the source's tokens it came with, masked (…3f9a)
    tenant: str | None = None  # the shop whose source received it (routes.d/<tenant>.yaml); None: routes.yaml's


@dataclass(frozen=True)
class AddResult:
    id: str  # the stored event's id (the original one for a duplicate)
    duplicate: bool
    deliveries: int


@dataclass(frozen=True)
class ClaimedDelivery:
    id: str
    event_id: str
    route: str
    destination: str
    body: str
    attempts: int  # attempts made before this one
    ordering_key: str | None
    created_at: float
    trace: str | None = None  # its event's ingest span (traceparent): each attempt's span is its child


@dataclass(frozen=True)
class DestinationHold:
    """A destination every sender on the database must hold off: backed off by the circuit
    breaker until `open_until`, or stopped (`gone`: it answered 410) while routes.yaml is
    at `config_version`."""

    destination: str
    open_until: float = 0.0
    gone: str | None = None
    config_version: str | None = None


@dataclass(frozen=True)
class AttemptResult:
    delivery_id: str
    started_at: float
    duration_ms: float
    outcome: str  # delivered | retry | dead
    status_code: int | None = None
    response: str | None = None
    error: str | None = None
    next_attempt_at: float | None = None  # for retry


@dataclass(frozen=True)
class AttemptRow:
    number: int
    started_at: float
    duration_ms: float
    status_code: int | None
    response: str | None
    error: str | None
    outcome: str


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    event_id: str
    route: str
    destination: str
    status: str
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    body: str | None
    created_at: float
    updated_at: float
    config_version: str | None = None  # the routes.yaml version that rendered the body
    attempt_log: tuple[AttemptRow, ...] = ()
    replaced_bodies: tuple[tuple[str | None, str | None, float], ...] = ()  # (body, version, when), by re-renders


@dataclass(frozen=True)
class EventRow:
    id: str
    source: str
    event_type: str
    body: str | None
    received_at: float
    config_version: str
    token: str | None = None  # which of the source's tokens it came with, masked (…3f9a)
    tenant: str | None = None  # the shop whose source received it; None: routes.yaml's
    deliveries: tuple[DeliveryRow, ...] = ()


@dataclass(frozen=True)
class DeliveryFilter:
    """Which deliveries `requeue` and listings select."""

    statuses: tuple[str, ...] = (DEAD,)
    destination: str | None = None
    since: float | None = None
    ids: tuple[str, ...] = ()
    tenant: str | None = None  # only this shop's (its destinations are named `tenant/...`)


@dataclass(frozen=True)
class DeliveryRef:
    """A delivery named without its body: what a page of a long selection holds."""

    id: str
    event_id: str
    route: str
    destination: str
    has_body: bool


@dataclass(frozen=True)
class EventQuery:
    """Which events `list_events` lists, newest first; every filter applies only when set."""

    limit: int = 50
    since: float | None = None
    until: float | None = None
    event_type: str | None = None
    source: str | None = None
    status: str | None = None  # events with a delivery in this status
    destination: str | None = None  # events with a delivery to this destination
    code: str | None = None  # GO's `data.code` (the order's, the invoice's number)
    text: str | None = None  # text anywhere in the payload
    before: str | None = None  # the id of the last event of the previous page
    down_to: str | None = None  # the oldest event a page may hold (inclusive): a text search's window (window_end)
    tenant: str | None = None  # only this shop's events (an admin token scoped to it)


NEWEST_EVENTS = EventQuery()


@dataclass(frozen=True)
class Activity:
    """Counts per time bucket (its start, unix seconds): events received, attempts by outcome."""

    events: dict[float, int] = field(default_factory=dict)
    attempts: dict[float, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ConsoleSession:
    """A console login: where from, when, and when it ended (logout, or ended from the console)."""

    id: str
    started_at: float
    address: str
    agent: str  # the browser's User-Agent, shortened
    ended_at: float | None = None
    tenant: str | None = None  # the shop whose admin token logged in; None: the gateway's


@dataclass(frozen=True)
class Incident:
    """Something an operator is told about once (gateway/alerts/): opened when its condition
    starts, resolved when it clears, with a notice for each; one open incident per key, however
    many replicas see the condition."""

    id: str
    key: str  # what it is about: "failing:loja-a/crm", "dead_over", ...
    kind: str  # failing | circuit_open | gone | dead_over | pending_old | edit_refused
    subject: str  # the destination it is about ("" for the gateway as a whole)
    detail: str  # what was seen when it opened (masked): the last error, the count
    opened_at: float
    resolved_at: float | None = None
    open_notified_at: float | None = None
    resolved_notified_at: float | None = None
    notice_attempts: int = 0  # of the notice due now
    notice_error: str | None = None  # why the last notice could not be sent

    @property
    def notice_due(self) -> str | None:
        """Which notice is still to send: "opened", "resolved" (a resolved incident whose opening
        was never told is told as resolved only), or None."""
        if self.resolved_at is not None:
            return "resolved" if self.resolved_notified_at is None else None
        return "opened" if self.open_notified_at is None else None


@dataclass
class QueueStats:
    by_status: dict[str, int] = field(default_factory=dict)


def list_events_sql(template: str, query: EventQuery, param: Callable[[str], str], down_to: str = "") -> str:
    """An SQL backend's list_events (or window_end) block for `query`: the code and tenant
    filters only when given (so the planner takes their indexes), the window's bound only when
    there is one. `param` writes the backend's named placeholder."""
    return template.format(
        by_code=f"AND code = {param('code')}" if query.code is not None else "",
        by_tenant=f"AND tenant = {param('tenant')}" if query.tenant is not None else "",
        down_to=down_to if query.down_to is not None else "",
    )


def notice_update(notice: str, incident_id: str, now: float, error: str | None, retry_at: float | None) -> tuple[str, tuple[Any, ...]]:
    """The SQL backends' named query and parameters for `Store.notice_sent`."""
    if error is not None:
        return "notice_failed", (error, retry_at, incident_id)
    return ("notice_resolved_sent" if notice == "resolved" else "notice_opened_sent"), (now, incident_id)


def tenant_prefix(tenant: str) -> str:
    """What the names of a shop's destinations and routes start with (gateway/tenants.py)."""
    return f"{tenant}/"


def event_query_params(query: EventQuery) -> dict[str, object]:
    """The named parameters of both SQL backends' list_events."""
    return {
        "since": query.since or 0, "until": query.until, "type": query.event_type, "source": query.source, "status": query.status,
        "destination": query.destination, "code": query.code, "text": query.text, "before": query.before, "limit": query.limit,
        "down_to": query.down_to, "tenant": query.tenant,
    }


def activity_from_rows(events: Iterable[tuple[float, int]], attempts: Iterable[tuple[float, str, int]]) -> Activity:
    per_bucket: dict[float, dict[str, int]] = {}
    for start, outcome, count in attempts:
        per_bucket.setdefault(float(start), {})[outcome] = count
    return Activity({float(start): count for start, count in events}, per_bucket)


class Store(abc.ABC):
    """Durable storage of events, deliveries and attempts.

    What the service's topology needs to know of a backend, it asks the store (never the URL):
    `url`, the address another process opens the same database at (None: only this object
    holds it), and `many_writers`, whether several processes may store events at once."""

    url: str | None = None
    many_writers: bool = False

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store can be read and written."""

    @abc.abstractmethod
    async def add_event(self, event: NewEvent) -> AddResult:
        """Store an event and all its deliveries in one transaction, unless it is a duplicate:
        an event of the same source with the same dedupe key is stored, received at most
        `dedupe_window` seconds before this one (the result names it, and nothing is stored).
        Whoever else writes to the same database, a duplicate is never missed because another
        process stored the original, and an event purged or erased is nobody's original."""

    @abc.abstractmethod
    async def claim_due(
        self, now: float, quotas: Mapping[str, int], lease_seconds: float, others: int = 0, rates: Mapping[str, tuple[int, float]] | None = None
    ) -> list[ClaimedDelivery]:
        """Claim what can start now: for each destination in `quotas`, at most that many of its
        deliveries due by `now`, oldest first, and at most `others` to destinations that are
        not in `quotas` at all (routes.yaml no longer has them). Claims whose lease expired
        (their sender died) are due again first. One transaction, nothing claimed to be given
        back: a sender claims only for the slots it has free.

        `rates` (count, per seconds) of rate-limited destinations: a backend shared by several
        senders (PostgreSQL) keeps one token bucket per destination for all of them, so the
        limit holds for the cluster; a single sender's own limiter is enough elsewhere.

        A delivery with an ordering key is claimed only when no earlier delivery with the same
        destination and key is still pending or being sent.
        """

    async def subscribe(self, wake: Callable[[], None]) -> None:
        """Call `wake` when another process stores work to deliver, until the store is closed.
        A backend that cannot tell (SQLite) leaves the engine to poll (IDLE_SECONDS)."""

    async def hold_destination(self, hold: DestinationHold) -> None:
        """Tell every sender on this database to hold a destination off. A backend with one
        sender (SQLite, memory) keeps nothing: that sender's engine holds it itself."""

    async def destination_holds(self, now: float) -> list[DestinationHold]:
        """The holds in force: circuits open at `now`, destinations stopped."""
        return []

    async def clear_stops(self) -> None:
        """Forget the 410 stops (a sender starting again tries the address again)."""

    @abc.abstractmethod
    async def record_attempt(self, result: AttemptResult, now: float) -> None:
        """Record an attempt and move its delivery to delivered, pending (retry) or dead."""

    @abc.abstractmethod
    async def release(self, delivery_ids: list[str], now: float) -> None:
        """Give claimed deliveries back (shutdown): pending again, due now."""

    @abc.abstractmethod
    async def next_due_at(self) -> float | None:
        """When the earliest pending delivery or claim lease falls due, or None."""

    @abc.abstractmethod
    async def requeue(self, selection: DeliveryFilter, now: float) -> int:
        """Make the selected deliveries pending again, due now (replay); returns how many."""

    @abc.abstractmethod
    async def rerender(self, delivery_id: str, body: str | None, error: str | None, config_version: str, now: float) -> None:
        """Replace a delivery's body with a new rendering (the old one is kept in the history);
        pending and due now, or failed with `error` when the new rendering failed too."""

    @abc.abstractmethod
    async def list_deliveries(self, selection: DeliveryFilter, limit: int = 1000) -> list[DeliveryRow]: ...

    @abc.abstractmethod
    async def delivery_refs(self, selection: DeliveryFilter, after: str, limit: int) -> list[DeliveryRef]:
        """One page of the selection, by id: those after `after` ("" for the first page). A
        selection of any size is read page by page, never held whole in memory."""

    @abc.abstractmethod
    async def count_deliveries(self, selection: DeliveryFilter) -> int: ...

    @abc.abstractmethod
    async def list_events(self, query: EventQuery = NEWEST_EVENTS) -> list[EventRow]:
        """Newest first, at most `query.limit`; with `status` and/or `destination`, only events
        that have a delivery so."""

    @abc.abstractmethod
    async def window_end(self, query: EventQuery, size: int) -> tuple[str, float] | None:
        """Where a window of `size` events ends: the id and time of the `size`-th newest event
        that `query`'s time, type, source and code filters select after `query.before`; None
        when no more than `size` are (the window reaches the oldest: it needs no bound). A text search reads one window at a time (`down_to`), so a
        page costs the same at a million events as at a thousand."""

    @abc.abstractmethod
    async def activity(self, since: float, bucket_seconds: int = 60, tenant: str | None = None) -> Activity:
        """Events received and attempts made since `since`, counted per bucket (one shop's only,
        with `tenant`)."""

    @abc.abstractmethod
    async def route_counts(self, since: float) -> dict[str, int]:
        """How many events each route matched since `since` (by their deliveries)."""

    @abc.abstractmethod
    async def delivery_statuses(self, event_ids: list[str]) -> dict[str, dict[str, int]]:
        """For each event, how many of its deliveries are in each status."""

    @abc.abstractmethod
    async def get_event(self, event_id: str) -> EventRow | None:
        """One event with its deliveries and every attempt."""

    @abc.abstractmethod
    async def purge(self, older_than: float) -> int:
        """Delete events received before `older_than` (with their deliveries); returns how many."""

    @abc.abstractmethod
    async def erase_event(self, event_id: str) -> bool:
        """Erase one event's personal data (payload and rendered bodies) on request."""

    @abc.abstractmethod
    async def stats(self, tenant: str | None = None) -> QueueStats:
        """Deliveries by status (one shop's only, with `tenant`)."""

    @abc.abstractmethod
    async def record_created(self, delivery_id: str, step: str, record_id: str, now: float) -> None:
        """Remember what a step of a delivery created at the receiver (a CRM's person), at once:
        a retry reuses it instead of creating it again (the CRM's search lags behind its creates)."""

    @abc.abstractmethod
    async def records_created(self, delivery_id: str) -> dict[str, str]:
        """What earlier attempts of a delivery created, by step."""

    async def take_quota(self, key: str, quota: Quota, now: float) -> float:
        """Take one event's token from the bucket `key`: 0.0 when taken, else the seconds until
        one is available. Here, in this process: where one HTTP process takes every event (SQLite,
        memory) that is the whole node. A backend shared by replicas keeps it in the database."""
        buckets: QuotaBuckets = self.__dict__.setdefault("_quota_buckets", QuotaBuckets())
        return buckets.take(key, quota, now)

    # ----------------------------------------------------------------- the console's logins
    # In the database, so every replica sees the same: a logout ends a session everywhere,
    # and a wrong token slows the next try on every replica, not only on the one that saw it.

    @abc.abstractmethod
    async def open_incident(self, incident: Incident) -> bool:
        """Open it unless an incident with its key is open already (on any replica); True when
        this call opened it."""

    @abc.abstractmethod
    async def resolve_incident(self, key: str, now: float) -> bool:
        """Resolve the open incident with this key; True when this call resolved it."""

    @abc.abstractmethod
    async def claim_notices(self, now: float, lease: float, max_attempts: int) -> list[Incident]:
        """Incidents with a notice due and not claimed by another sender (or whose claim
        expired), each claimed until now + lease: one replica sends each notice."""

    @abc.abstractmethod
    async def notice_sent(self, incident_id: str, notice: str, now: float, error: str | None = None, retry_at: float | None = None) -> None:
        """The notice ("opened" or "resolved") went out, or (with `error`) did not: tried again at `retry_at`."""

    @abc.abstractmethod
    async def incidents(self, limit: int = 50) -> list[Incident]:
        """The latest incidents, open or resolved, newest first."""

    @abc.abstractmethod
    async def oldest_pending_at(self) -> float | None:
        """When the oldest delivery still pending was created, or None."""

    @abc.abstractmethod
    async def add_session(self, session: ConsoleSession, forget_before: float) -> None:
        """Record a login, and forget the sessions started before `forget_before` (expired)."""

    @abc.abstractmethod
    async def get_session(self, session_id: str) -> ConsoleSession | None: ...

    @abc.abstractmethod
    async def end_session(self, session_id: str, now: float) -> bool:
        """End a session (logout); False when it had ended already or never was."""

    @abc.abstractmethod
    async def active_sessions(self, since: float) -> list[ConsoleSession]:
        """Sessions started since `since` and not ended, newest first."""

    @abc.abstractmethod
    async def record_login_failure(self, address: str, now: float, forget_before: float) -> None:
        """Note a wrong token from `address`, and forget failures older than `forget_before`."""

    @abc.abstractmethod
    async def login_failures(self, address: str, since: float) -> int:
        """How many wrong tokens came from `address` since `since`."""
