"""What the admin API answers and accepts, typed with msgspec (and so listed in /schema).

Times are unix seconds (UTC). Payloads and rendered bodies hold personal data: they are masked
unless the caller asked for them unmasked (and that request was logged). Secrets never appear.
"""

from __future__ import annotations

from typing import Any

import msgspec


class EventSummary(msgspec.Struct):
    id: str
    source: str
    event_type: str
    received_at: float
    code: str | None  # GO's data.code: the order's or the invoice's number
    deliveries: dict[str, int]  # how many in each status
    erased: bool  # its payload was purged or erased
    token: str | None = None  # which of the source's tokens it came with, masked (…3f9a)


class EventPage(msgspec.Struct):
    events: list[EventSummary]
    next: str | None  # pass as `before` for the next page
    searched_to: float | None = None  # a text search read back to this time only: `next` searches older events


class Attempt(msgspec.Struct):
    number: int
    started_at: float
    duration_ms: float
    status_code: int | None
    response: str | None  # the receiver's answer, truncated
    error: str | None
    outcome: str


class Delivery(msgspec.Struct):
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
    config_version: str | None
    attempt_log: list[Attempt] = []


class EventDetail(msgspec.Struct):
    id: str
    source: str
    event_type: str
    received_at: float
    config_version: str
    code: str | None
    payload: Any  # the event as GO sent it; None once purged or erased
    masked: bool  # personal data in payload and bodies is replaced by ***
    deliveries: list[Delivery]
    token: str | None = None  # which of the source's tokens it came with, masked (…3f9a)


class DeliveryPage(msgspec.Struct):
    deliveries: list[Delivery]
    total: int


class DeadGroup(msgspec.Struct):
    destination: str
    reason: str
    count: int
    delivery_ids: list[str]
    last_at: float


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Deliveries to send again: by id (of deliveries or their events), or a selection."""

    ids: list[str] = []
    statuses: list[str] = msgspec.field(default_factory=lambda: ["dead"])
    destination: str | None = None
    since: float | None = None
    rerender: bool = False  # render again with the routes in force now


class ReplayJob(msgspec.Struct):
    id: str
    state: str  # running | done | failed
    rerender: bool
    total: int
    done: int
    queued: int
    notes: list[str]
    started_at: float
    finished_at: float | None
    shop: str | None = None  # the shop whose token started it; None: the gateway's token


class PlaygroundRequest(msgspec.Struct, forbid_unknown_fields=True):
    event: dict[str, Any]
    source: str | None = None  # the first source of routes.yaml when not given


class Reason(msgspec.Struct):
    text: str
    location: str | None


class PlannedRequest(msgspec.Struct):
    method: str
    url: str
    headers: dict[str, str]
    body: str


class PlannedDelivery(msgspec.Struct):
    destination: str
    type: str
    status: str
    error: str | None
    skipped: str | None
    address_refused: str | None
    requests: list[PlannedRequest]


class RouteVerdict(msgspec.Struct):
    name: str
    matched: bool
    shadow: bool
    location: str
    reasons: list[Reason]
    deliveries: list[PlannedDelivery]


class DryRun(msgspec.Struct):
    event_id: str
    source: str
    config_version: str
    routes: list[RouteVerdict]


class Sent(msgspec.Struct):
    event_id: str
    id: str
    deliveries: int
    duplicate: bool


class Refused(msgspec.Struct):
    """The last edit of routes.yaml or of shops' files that was refused; the routes in force stayed."""

    at: float
    problems: list[str]
    tenants: list[str] = []  # the shops (routes.d/<tenant>.yaml) whose edits were refused while the others applied; [] = all of it


class RouteInfo(msgspec.Struct):
    name: str
    source: str
    event_ids: list[str] | None  # None: every event of the source
    condition: str
    destinations: list[str]
    shadow: bool
    location: str
    matched_last_24h: int


class DestinationInfo(msgspec.Struct):
    name: str
    type: str
    settings: dict[str, Any]  # secrets masked
    inactive: str | None
    location: str


class RoutesInForce(msgspec.Struct):
    file: str
    version: str
    routes: list[RouteInfo]
    destinations: list[DestinationInfo]
    refused: Refused | None


class Minute(msgspec.Struct):
    start: float
    events: int
    delivered: int
    retried: int
    dead: int


class DestinationHealth(msgspec.Struct):
    destination: str
    state: str  # ok | circuit_open | stopped | inactive
    delivered: int
    failed: int  # attempts that will be retried or ended dead, since the gateway started
    inactive: str | None = None  # why its deliveries are skipped (a variable not set)


class Alert(msgspec.Struct):
    """An incident of the alerts (routes.yaml's alerts: section) and what became of its notices."""

    id: str
    kind: str  # failing | circuit_open | gone | dead_over | pending_old | edit_refused
    subject: str | None  # the destination it is about; None for the gateway as a whole
    detail: str
    text: str  # the notice's words
    opened_at: float
    resolved_at: float | None
    notified_at: float | None  # when its latest notice (opened, or resolved) went out
    notice_error: str | None  # why a notice could not be sent (it is tried again, a bounded number of times)


class Overview(msgspec.Struct):
    config_version: str
    refused: Refused | None
    by_status: dict[str, int]
    minutes: list[Minute]  # the last hour, oldest first
    destinations: list[DestinationHealth]
    shop: str | None = None  # the shop (routes.d/<shop>.yaml) it is about; None: the whole gateway
    shops: list[str] = []  # the shops this token may filter by
    alerts: list[Alert] = []  # open incidents, then the latest resolved ones


class LoginSession(msgspec.Struct):
    id: str
    started_at: float
    address: str
    agent: str  # the browser's User-Agent, shortened
    shop: str | None = None  # the shop whose admin token logged in; None: the gateway's token
