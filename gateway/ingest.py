"""What ingest does with an authenticated, well-formed event: dedupe key, routing, rendering,
and the event with all its deliveries stored in ONE transaction.

`gateway serve` runs this in its ingest child (gateway/service/ingest_child.py) so that
rendering uses a second core; an app built in code runs it in its own process
(gateway/service/topology.py). Both answer the same `Accepted`, which is all the HTTP handler
needs.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

import gateway.tenants as tenants
import gateway.tracing as tracing
from gateway.config import Config, Source
from gateway.errors import TemplateError, plural
from gateway.routing import RoutingResult, route_event, template_context
from gateway.store import Store
from gateway.store.base import NewDelivery, NewEvent, new_id

log = logging.getLogger("gateway.ingest")


class Accepted(msgspec.Struct, array_like=True, frozen=True):
    """A stored event, as the sender is told about it."""

    id: str  # the stored event's id (the original one for a duplicate)
    deliveries: int
    duplicate: bool
    not_sent: list[tuple[str, str]] = []  # (destination, status) of deliveries recorded but never sent: failed, skipped, shadow


async def accept(
    config: Config, store: Store, source: str, body: bytes, event: dict[str, Any], received_at: float, token: str | None = None, trace: str | None = None
) -> Accepted:
    """Route and render `event`, store it with its deliveries, and say what was stored. `trace`:
    the ingest span's traceparent (gateway/tracing.py), kept with each delivery."""
    found = config.sources[source]
    moment = datetime.fromtimestamp(received_at, UTC)
    if tracing.enabled():
        with tracing.span("route", trace, {"gateway.source": source, "gateway.event_id": str(event["event_id"])}) as current:
            routed = route_event(config, event, source=source, received_at=moment)
            tracing.note(current, **{"gateway.deliveries": len(routed.deliveries)})
    else:
        routed = route_event(config, event, source=source, received_at=moment)
    new_event = _new_event(found, body, event, routed, moment, config, token, trace)
    stored = await store.add_event(new_event)
    not_sent = [] if stored.duplicate else [(d.destination, d.status) for d in new_event.deliveries if d.status != "pending"]
    if not stored.duplicate:
        for delivery in new_event.deliveries:
            if delivery.status == "failed":  # said once, here; counted in /metrics (failed); the reason is masked
                log.warning(
                    "event %s: delivery %s of route %s to %s failed to render: %s", stored.id, delivery.id, delivery.route, delivery.destination, delivery.error,
                    extra=tenants.log_extra(found.tenant),
                )
    # DEBUG (GATEWAY_LOG_LEVEL=debug): formatting and writing it was a tenth of the ingest child's CPU
    if log.isEnabledFor(logging.DEBUG):
        shop = f" (shop {found.tenant})" if found.tenant else ""
        log.debug(
            "event %s %s from %s%s: %s%s", stored.id, event["event_id"], source, shop, plural(stored.deliveries, "delivery"), " (duplicate)" if stored.duplicate else "",
            extra=tenants.log_extra(found.tenant),
        )
    return Accepted(id=stored.id, deliveries=stored.deliveries, duplicate=stored.duplicate, not_sent=not_sent)


def _dedupe_key(source: Source, body: bytes, event: dict[str, Any], received_at: datetime) -> str | None:
    if source.dedupe_window is None:
        return None
    if source.dedupe_key is None:
        return hashlib.sha256(body).hexdigest()
    try:
        return source.dedupe_key.render(template_context(event, source.name, received_at, route=""))
    except TemplateError as exc:
        log.warning("dedupe key of source %s failed (%s); using the body hash", source.name, exc)
        return hashlib.sha256(body).hexdigest()


def _new_event(source: Source, body: bytes, event: dict[str, Any], routed: RoutingResult, received_at: datetime, config: Config, token: str | None, trace: str | None) -> NewEvent:
    deliveries = tuple(
        NewDelivery(
            id=new_id(),
            route=d.route,
            destination=d.destination,
            body=d.body,
            status=d.status,
            error=d.error or d.skipped,
            ordering_key=d.ordering_key,
            trace=trace,
        )
        for d in routed.deliveries
    )
    return NewEvent(
        id=new_id(),
        source=source.name,
        event_type=event["event_id"],
        body=body.decode("utf-8"),
        received_at=received_at.timestamp(),
        config_version=config.version,
        deliveries=deliveries,
        dedupe_key=_dedupe_key(source, body, event, received_at),
        dedupe_window=source.dedupe_window,
        code=_code(event),
        token=token,
        tenant=source.tenant,
    )


def _code(event: dict[str, Any]) -> str | None:
    """GO's data.code as text (its search key in the console), when the event has one."""
    data = event.get("data")
    code = data.get("code") if isinstance(data, dict) else None
    return None if code is None or isinstance(code, (dict, list)) else str(code)
