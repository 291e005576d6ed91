"""From what the store and the config hold to what the admin API shows: pure functions.

Personal data: payloads and rendered bodies are masked by default, by field name (document,
e-mail, phone, ...) and by what the value looks like (gateway/masking.py's patterns). Secrets of
routes.yaml are masked everywhere, always.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from gateway.admin import schemas
from gateway.alerts import notices
from gateway.config import Config
from gateway.delivery.metrics import read_states
from gateway.masking import MASK, is_secret_name, mask_personal_data, mask_text, mask_url
from gateway.preview import masked_steps, refused_address
from gateway.routing import RoutingResult
from gateway.store.base import Activity, DeliveryRow, DestinationHold, EventRow, Incident, tenant_prefix

# Field names whose values are personal data whatever they look like.
_PERSONAL_FIELDS = re.compile(r"document|cpf|cnpj|e-?mail|phone|fone|celular|mobile|\brg\b|birth|nascimento|zip|cep|street|address|endereco|logradouro", re.IGNORECASE)
_ERROR_PREFIX = re.compile(r"^(HTTP \d{3}|[^:]{1,80})")


def mask_payload(value: Any, key: str = "") -> Any:
    """A JSON value with its personal data replaced by ***."""
    if isinstance(value, dict):
        return {k: mask_payload(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_payload(v, key) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if _PERSONAL_FIELDS.search(key):
        return MASK
    return mask_personal_data(value) if isinstance(value, str) else value


def personal_values(value: Any, key: str = "") -> set[str]:
    """The personal data of a payload (values of its personal fields), to find them again in
    the bodies rendered from it: a template may print a phone in a sentence."""
    if isinstance(value, dict):
        return {found for k, v in value.items() for found in personal_values(v, k)}
    if isinstance(value, list):
        return {found for v in value for found in personal_values(v, key)}
    text = "" if value is None or isinstance(value, bool) else str(value)
    return {text} if len(text) >= 4 and _PERSONAL_FIELDS.search(key) else set()


def mask_body(body: str | None, config: Config, reveal: bool, personal: frozenset[str] = frozenset()) -> str | None:
    """A rendered body: secrets always masked, personal data unless `reveal`."""
    if body is None:
        return None
    body = mask_text(body, config.secrets)
    if reveal:
        return body
    body = mask_text(body, personal)
    try:
        return json.dumps(mask_payload(json.loads(body)), ensure_ascii=False)
    except ValueError:  # a form or text body
        return mask_personal_data(body)


def event_code(body: str | None) -> str | None:
    if body is None:
        return None
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return None if code is None else str(code)


def event_summary(row: EventRow, statuses: dict[str, int]) -> schemas.EventSummary:
    return schemas.EventSummary(row.id, row.source, row.event_type, row.received_at, event_code(row.body), statuses, row.body is None, row.token)


def delivery(row: DeliveryRow, config: Config, reveal: bool, personal: frozenset[str] = frozenset()) -> schemas.Delivery:
    def shown(text: str | None) -> str | None:
        if text is None:
            return None
        text = mask_text(text, config.secrets)
        return text if reveal else mask_personal_data(mask_text(text, personal))

    attempts = [schemas.Attempt(a.number, a.started_at, a.duration_ms, a.status_code, shown(a.response), shown(a.error), a.outcome) for a in row.attempt_log]
    return schemas.Delivery(
        row.id, row.event_id, row.route, row.destination, row.status, row.attempts, row.next_attempt_at,
        shown(row.last_error), mask_body(row.body, config, reveal, personal), row.created_at, row.updated_at, row.config_version, attempts,
    )


def event_detail(row: EventRow, config: Config, reveal: bool) -> schemas.EventDetail:
    payload = json.loads(row.body) if row.body is not None else None
    personal = frozenset(personal_values(payload))
    if payload is not None and not reveal:
        payload = mask_payload(payload)
    return schemas.EventDetail(
        row.id, row.source, row.event_type, row.received_at, row.config_version, event_code(row.body), payload, not reveal,
        [delivery(d, config, reveal, personal) for d in row.deliveries],
        row.token,
    )


def dead_groups(rows: Iterable[DeliveryRow]) -> list[schemas.DeadGroup]:
    """Dead deliveries by destination and reason (the error's first words: `HTTP 400`, ...)."""
    groups: dict[tuple[str, str], list[DeliveryRow]] = defaultdict(list)
    for row in rows:
        match = _ERROR_PREFIX.match(mask_personal_data(row.last_error or "no answer recorded"))
        groups[(row.destination, match.group(1) if match else "unknown")].append(row)
    found = [
        schemas.DeadGroup(destination, reason, len(members), [m.id for m in members], max(m.updated_at for m in members))
        for (destination, reason), members in groups.items()
    ]
    return sorted(found, key=lambda g: (-g.count, g.destination, g.reason))


def dry_run(config: Config, result: RoutingResult, source: str) -> schemas.DryRun:
    routes = []
    for verdict in result.verdicts:
        planned = []
        for item in result.deliveries:
            if item.route != verdict.route.name:
                continue
            requests = [schemas.PlannedRequest(r.method, r.url, dict(r.headers), r.body) for r in masked_steps(config, item)]
            planned.append(
                schemas.PlannedDelivery(
                    item.destination, config.destinations[item.destination].type, item.status, item.error, item.skipped, refused_address(config, item), requests
                )
            )
        reasons = [schemas.Reason(r.text, str(r.location) if r.location else None) for r in verdict.reasons]
        routes.append(schemas.RouteVerdict(verdict.route.name, verdict.matched, verdict.route.shadow, str(verdict.route.location), reasons, planned))
    routes.sort(key=lambda r: not r.matched)
    return schemas.DryRun(result.event_id, source, config.version, routes)


def routes_in_force(config: Config, counts: dict[str, int], refused: schemas.Refused | None) -> schemas.RoutesInForce:
    routes = [
        schemas.RouteInfo(
            route.name, route.source, sorted(route.event_ids) if route.event_ids is not None else None, route.condition.describe(),
            sorted({send.destination for send in route.sends}), route.shadow, str(route.location), counts.get(route.name, 0),
        )
        for route in config.routes
    ]
    destinations = [
        schemas.DestinationInfo(name, d.type, _masked_settings(msgspec.to_builtins(d.spec, enc_hook=str), config), d.inactive, str(d.location))
        for name, d in config.destinations.items()
    ]
    return schemas.RoutesInForce(config.file, config.version, routes, destinations, refused)


def _masked_settings(value: Any, config: Config, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _masked_settings(v, config, k) for k, v in value.items() if k != "type"}
    if isinstance(value, list):
        return [_masked_settings(v, config, key) for v in value]
    if isinstance(value, str):
        if is_secret_name(key) and value:
            return MASK
        return mask_url(value, config.secrets)
    return value


def alerts(incidents: Iterable[Incident], tenant: str | None, limit: int = 10) -> list[schemas.Alert]:
    """Open incidents first, then the latest resolved, `limit` in all; a shop sees those about its
    own destinations only (the gateway's as a whole are the gateway operator's)."""
    shown = [i for i in incidents if tenant is None or i.subject.startswith(tenant_prefix(tenant))]
    shown.sort(key=lambda i: (i.resolved_at is not None, -i.opened_at))
    return [
        schemas.Alert(
            i.id, i.kind, i.subject or None, i.detail, notices.text(i, "resolved" if i.resolved_at else "opened"), i.opened_at, i.resolved_at,
            i.resolved_notified_at if i.resolved_at else i.open_notified_at, i.notice_error,
        )
        for i in shown[:limit]
    ]


def minutes(activity: Activity, now: float, count: int = 60) -> list[schemas.Minute]:
    """The last `count` minutes, oldest first, each with its counts (0 when nothing happened)."""
    first = (now // 60 - count + 1) * 60
    found = []
    for n in range(count):
        start = first + 60 * n
        outcomes = activity.attempts.get(start, {})
        found.append(schemas.Minute(start, activity.events.get(start, 0), outcomes.get("delivered", 0), outcomes.get("retry", 0), outcomes.get("dead", 0)))
    return found


def destination_health(config: Config, delivery_metrics: bytes, holds: list[DestinationHold]) -> list[schemas.DestinationHealth]:
    """Each destination's state, from the delivery engine's metrics and the cluster's holds."""
    states = read_states(delivery_metrics)
    open_ = states.circuit_open | {h.destination for h in holds if h.open_until}
    stopped = states.stopped | {h.destination for h in holds if h.gone}
    delivered, failed = states.delivered, states.failed
    health = []
    for name, destination in config.destinations.items():
        state = "inactive" if destination.inactive else "stopped" if name in stopped else "circuit_open" if name in open_ else "ok"
        health.append(schemas.DestinationHealth(name, state, delivered[name], failed[name], destination.inactive))
    return sorted(health, key=lambda h: (h.state == "ok", -h.failed, h.destination))


# Families a shop's metrics keep whole: the queue depth is computed for the shop before rendering.
_SCOPED_BEFORE_RENDER = frozenset({"gateway_queue_depth"})


def metrics_of_tenant(text: bytes, tenant: str) -> bytes:
    """The Prometheus text with only one shop's samples: those labelled tenant="<shop>" (and the
    queue depth, counted for that shop). Nothing of another shop, and nothing gateway-wide (the
    process's memory, reloads), reaches a shop's token."""
    lines: list[str] = []
    for family in text_string_to_metric_families(text.decode()):
        kept = [s for s in family.samples if family.name in _SCOPED_BEFORE_RENDER or s.labels.get("tenant") == tenant]
        if not kept:
            continue
        lines += [f"# HELP {family.name} {family.documentation}", f"# TYPE {family.name} {family.type}"]
        lines += [f"{s.name}{_labels(s.labels)} {floatToGoString(s.value)}" for s in kept]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _labels(labels: dict[str, str]) -> str:
    """A sample's labels as the exposition format writes them (\\, \\n and \\" escaped)."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
