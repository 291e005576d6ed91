"""From one event to its deliveries: match the routes, render each send.

This is the single place where an event meets the config; ingest, dry-run, `gateway test`,
`check` and `plan` all go through `route_event`, so what a user dry-runs is what runs.
A render failure becomes a failed delivery that says why: it never rejects the event.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gateway.tracing as tracing
from gateway.config import Config, Route, Send
from gateway.destinations import DRY_RUN_KEY, OutgoingRequest, build_request, check_body
from gateway.errors import EventError, TemplateError
from gateway.masking import mask_personal_data
from gateway.rules import Reason

MAX_EVENT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class PlannedDelivery:
    """One (route, destination) pair an event goes to, with its rendered body or why not."""

    route: str
    destination: str
    body: str | None
    error: str | None = None  # the template failed: file:line and why
    skipped: str | None = None  # the destination is inactive
    shadow: bool = False
    ordering_key: str | None = None

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        if self.skipped:
            return "skipped"
        return "shadow" if self.shadow else "pending"


@dataclass(frozen=True)
class RouteVerdict:
    route: Route
    matched: bool
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class RoutingResult:
    event_id: str
    verdicts: tuple[RouteVerdict, ...]
    deliveries: tuple[PlannedDelivery, ...]

    @property
    def matched_routes(self) -> list[str]:
        return [v.route.name for v in self.verdicts if v.matched]


def validate_event(event: Any) -> dict[str, Any]:
    """The event if it is a GO event (an object with a text event_id); EventError otherwise."""
    if not isinstance(event, dict):
        raise EventError(f"an event must be a JSON object, not {type(event).__name__}")
    if not isinstance(event.get("event_id"), str) or not event["event_id"]:
        raise EventError("the event has no 'event_id' text field; GO events look like {\"event_id\": \"ORDER_CREATED\", \"data\": {...}}")
    return event


def read_event_file(path: str) -> dict[str, Any]:
    """Read an event from a JSON file, or from standard input when path is '-'."""
    try:
        text = sys.stdin.read(MAX_EVENT_BYTES + 1) if path == "-" else Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EventError(f"{path}: cannot read the event: {exc}") from None
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    try:
        return validate_event(event)
    except EventError as exc:
        raise EventError(f"{path}: {exc}") from None


def template_context(event: Mapping[str, Any], source: str, received_at: datetime, route: str) -> dict[str, Any]:
    """What templates see: the whole event, its parts, and where and when it came from."""
    return {
        "event": event,
        "data": event.get("data"),
        "event_id": event.get("event_id"),
        "source": source,
        "received_at": received_at,
        "route": route,
    }


def route_event(
    config: Config,
    event: Mapping[str, Any],
    *,
    source: str | None = None,
    received_at: datetime | None = None,
    explain: bool = False,
    only_route: str | None = None,
) -> RoutingResult:
    """Match `event` against the routes for its event_id and render every matching send.

    With `explain`, every route gets a verdict (reasons for the ones that did not match);
    without it only candidate routes are evaluated, which is what ingest needs.
    """
    source = source or next(iter(config.sources), "go")
    received_at = received_at or datetime.now(UTC)
    event_id = str(event.get("event_id"))
    routes = config.routes if explain else config.index.candidates(event_id)
    verdicts: list[RouteVerdict] = []
    deliveries: list[PlannedDelivery] = []
    for route in routes:
        if only_route is not None and route.name != only_route:
            continue
        verdict = _judge(route, event, source, explain)
        verdicts.append(verdict)
        if verdict.matched:
            context = template_context(event, source, received_at, route.name)
            deliveries.extend(_render_sends(config, route, context))
    return RoutingResult(event_id, tuple(verdicts), tuple(deliveries))


def _judge(route: Route, event: Mapping[str, Any], source: str, explain: bool) -> RouteVerdict:
    if route.source != source:
        return RouteVerdict(route, False, (Reason(f"the route takes events from source '{route.source}', not '{source}'", route.location),))
    if not explain:
        return RouteVerdict(route, route.condition.test(event))
    reasons = route.condition.explain(event)
    return RouteVerdict(route, not reasons, tuple(reasons))


def render_send(config: Config, send: Send, context: dict[str, Any]) -> str:
    """The body for one send, checked against its vendor's limits; TemplateError with file:line."""
    body = send.template.render(context)
    problem = check_body(config.destinations[send.destination].spec, body)
    if problem:
        raise TemplateError(problem, send.template.location(1))
    return body


def _render_sends(config: Config, route: Route, context: dict[str, Any]) -> list[PlannedDelivery]:
    planned = []
    for send in route.sends:
        destination = config.destinations[send.destination]
        common = {"route": route.name, "destination": send.destination, "shadow": route.shadow}
        try:
            with tracing.span("render", attributes={"gateway.route": route.name, "gateway.destination": send.destination}) if tracing.enabled() else tracing.OFF:
                body = render_send(config, send, context)
                ordering_key = _ordering_key(config, send.destination, context)
        except TemplateError as exc:
            planned.append(PlannedDelivery(body=None, error=mask_personal_data(str(exc)), **common))
            continue
        planned.append(PlannedDelivery(body=body, skipped=_skip_reason(destination.inactive), ordering_key=ordering_key, **common))
    return planned


def _skip_reason(inactive: str | None) -> str | None:
    return f"destination inactive: {inactive}" if inactive else None


def _ordering_key(config: Config, destination: str, context: dict[str, Any]) -> str | None:
    template = config.ordering_templates.get(destination)
    return template.render(context) if template else None


def build_delivery_request(config: Config, delivery: PlannedDelivery, idempotency_key: str = DRY_RUN_KEY) -> OutgoingRequest | None:
    """The HTTP request for a planned delivery (built at send time, so no secret is stored)."""
    if delivery.body is None:
        return None
    return build_request(config.destinations[delivery.destination].spec, delivery.body, idempotency_key)
