"""`gateway dry-run`: what an event would do, route by route, request by request.

For each route: matched or not, and why not (the condition, its place in routes.yaml and the
actual value). For each delivery: the exact HTTP request, secrets masked. `--send` delivers
the pending ones for real and shows the answers.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, replace
from typing import Any

from rich.console import Console
from rich.markup import escape

from gateway.alerts import notices
from gateway.config import Config
from gateway.delivery.attempt import attempt
from gateway.delivery.client import delivery_client
from gateway.destinations import DRY_RUN_KEY, OutgoingRequest
from gateway.masking import mask_request, mask_text
from gateway.preview import fails, masked_request, masked_search, masked_steps, refused_address
from gateway.routing import PlannedDelivery, RoutingResult

RESPONSE_PREVIEW_CHARS = 500
__all__ = ["as_json", "fails", "print_text", "send_for_real"]


def as_json(config: Config, result: RoutingResult, sent: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The dry-run as data, for `--json`."""
    routes = []
    for verdict in result.verdicts:
        deliveries = []
        for index, delivery in enumerate(result.deliveries):
            if delivery.route != verdict.route.name:
                continue
            request = masked_request(config, delivery)
            steps = masked_steps(config, delivery)
            search = masked_search(config, delivery)
            deliveries.append(
                {
                    "destination": delivery.destination,
                    "type": config.destinations[delivery.destination].type,
                    "status": delivery.status,
                    "skipped": delivery.skipped,
                    "error": delivery.error,
                    "address_refused": refused_address(config, delivery),
                    "ordering_key": delivery.ordering_key,
                    "request": asdict(request) if request else None,
                    **({"search": asdict(search)} if search else {}),
                    **({"requests": [asdict(step) for step in steps]} if len(steps) > 1 else {}),
                    **({"sent": sent[index]} if sent and index in sent else {}),
                }
            )
        routes.append(
            {
                "name": verdict.route.name,
                "matched": verdict.matched,
                "shadow": verdict.route.shadow,
                "location": str(verdict.route.location),
                "reasons": [{"text": r.text, "location": str(r.location) if r.location else None} for r in verdict.reasons],
                "deliveries": deliveries,
            }
        )
    return {"event_id": result.event_id, "config": config.file, "config_version": config.version, "routes": routes}


def print_text(console: Console, config: Config, result: RoutingResult, sent: dict[int, dict[str, Any]] | None = None) -> None:
    """The dry-run for a person: matches first, then the routes that did not match and why."""
    matched = [v for v in result.verdicts if v.matched]
    console.print(f"[bold]{escape(result.event_id)}[/]: {len(matched)} of {len(result.verdicts)} routes match ({escape(config.file)}, version {config.version})")
    for verdict in matched:
        shadow = " [magenta](shadow: recorded, not sent)[/]" if verdict.route.shadow else ""
        console.print(f"\n[green]✔ {escape(verdict.route.name)}[/] matched{shadow}")
        for index, delivery in enumerate(result.deliveries):
            if delivery.route == verdict.route.name:
                _print_delivery(console, config, delivery, (sent or {}).get(index))
    unmatched = [v for v in result.verdicts if not v.matched]
    if unmatched:
        console.print("\n[bold]Not matched[/]")
    for verdict in unmatched:
        console.print(f"[red]✘ {escape(verdict.route.name)}[/]")
        for reason in verdict.reasons:
            where = f" [dim]({reason.location})[/]" if reason.location else ""
            console.print(f"    {escape(reason.text)}{where}")


def _print_delivery(console: Console, config: Config, delivery: PlannedDelivery, sent: dict[str, Any] | None) -> None:
    kind = config.destinations[delivery.destination].type
    console.print(f"  → [bold]{escape(delivery.destination)}[/] ({kind})")
    if delivery.error:
        console.print(f"    [red]template failed:[/] {escape(delivery.error)}")
        return
    if delivery.skipped:
        console.print(f"    [yellow]would be skipped: {escape(delivery.skipped)}[/]")
    refused = refused_address(config, delivery)
    if refused:
        console.print(f"    [red]would be dead at once, the address cannot be used: {escape(refused)}[/]")
    request = masked_request(config, delivery)
    assert request is not None  # a delivery without an error has a body
    steps = masked_steps(config, delivery)
    if len(steps) > 1:
        console.print(f"    [dim]{len(steps)} requests, in order (each safe to make again; a retry starts over):[/]")
        for number, step in enumerate(steps, 1):
            _print_request(console, step, f"{number}. ")
    else:
        _print_request(console, request, "")
    if delivery.ordering_key:
        console.print(f"    [dim]ordered by: {escape(delivery.ordering_key)}[/]")
    if sent:
        status = sent.get("status") or sent.get("error")
        console.print(f"    [bold]sent:[/] {escape(str(status))} {escape(sent.get('body', ''))} [bold]→ {sent['outcome']}[/] {escape(sent.get('reason', ''))}")


def _print_request(console: Console, request: OutgoingRequest, number: str) -> None:
    note = f" [dim]({escape(request.note)})[/]" if request.note else ""
    console.print(f"    {number}[cyan]{request.method} {escape(request.url)}[/]{note}")
    for name, value in request.headers.items():
        console.print(f"    {escape(name)}: {escape(value)}")
    if request.body:
        console.print("")
        console.print(_indent(request.body, "    "), highlight=False, markup=False)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def print_alerts(console: Console, config: Config) -> None:
    """What each alert kind routes.yaml turns on would send, opened and resolved, to each of its
    destinations (secrets masked)."""
    alerts = config.alerts
    if alerts is None:
        console.print("routes.yaml has no alerts: section; add one to be told when a destination fails (README: Alerts)")
        return
    watched = sorted(d for d in config.destinations if d not in alerts.to)
    console.print(f"[bold]alerts[/] to {escape(', '.join(alerts.to))}, checked every {alerts.check_every:g} s; one notice when an incident opens and one when it clears")
    for resolved in notices.samples(alerts, watched[0] if watched else notices.SAMPLE_SUBJECT):
        for notice, incident in (("opened", replace(resolved, resolved_at=None)), ("resolved", resolved)):
            console.print(f"\n[green]{escape(incident.kind)}[/] ({notice}): {escape(notices.text(incident, notice))}")
            for name in alerts.to:
                destination = config.destinations[name]
                body = notices.body(destination.type, incident, notice, alerts)
                console.print(f"  → [bold]{escape(name)}[/] ({destination.type})")
                for request in destination.spec.planned_requests(body, DRY_RUN_KEY):
                    _print_request(console, mask_request(request, config.secrets), "")


def send_for_real(config: Config, result: RoutingResult) -> dict[int, dict[str, Any]]:
    """`--send`: deliver every pending delivery once, now, exactly as the engine would (same
    client, egress guard, search for updates and answer classification); what each said."""
    return asyncio.run(_send_pending(config, result))


async def _send_pending(config: Config, result: RoutingResult) -> dict[int, dict[str, Any]]:
    answers: dict[int, dict[str, Any]] = {}
    async with delivery_client(lambda: config.egress_allow) as client:
        for index, delivery in enumerate(result.deliveries):
            if delivery.status != "pending":
                continue
            assert delivery.body is not None
            spec = config.destinations[delivery.destination].spec
            outcome, status, excerpt = await attempt(client, spec, delivery.body, str(uuid.uuid4()), config)
            answer: dict[str, Any] = {"status": status, "outcome": outcome.kind}
            if excerpt is not None:
                answer["body"] = mask_text(excerpt[:RESPONSE_PREVIEW_CHARS], config.secrets)
            if outcome.reason:
                answer["error" if status is None else "reason"] = mask_text(outcome.reason, config.secrets)
            answers[index] = answer
    return answers
