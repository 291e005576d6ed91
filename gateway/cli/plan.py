"""`gateway plan NEW.yaml`: what a change to routes.yaml would do to real traffic.

Each event (stored ones, or files) is routed through the running config and through the new
one, at the time it was received, and the two sets of deliveries are compared: routes that
start or stop firing for which events, and deliveries whose rendered body changes.
"""

from __future__ import annotations

import difflib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

from gateway.config import Config
from gateway.routing import PlannedDelivery, route_event

MAX_LISTED = 10  # events listed per change in the text output


@dataclass(frozen=True)
class PlannedEvent:
    id: str  # the stored id, or the file name
    source: str
    body: dict[str, Any]
    received_at: float


@dataclass
class PlanReport:
    old_version: str
    new_version: str
    events: int = 0
    starts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # route -> events
    stops: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    changes: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))  # route/destination -> (event, diff)

    @property
    def changed(self) -> bool:
        return bool(self.starts or self.stops or self.changes)

    def as_json(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "events": self.events,
            "starts": dict(self.starts),
            "stops": dict(self.stops),
            "body_changes": {key: [{"event": e, "diff": d} for e, d in items] for key, items in self.changes.items()},
        }


def plan(old: Config, new: Config, events: list[PlannedEvent]) -> PlanReport:
    """Compare what `old` and `new` would do with each event."""
    report = PlanReport(old.version, new.version)
    for event in events:
        report.events += 1
        received = datetime.fromtimestamp(event.received_at, UTC)
        before = _by_key(route_event(old, event.body, source=event.source, received_at=received).deliveries)
        after = _by_key(route_event(new, event.body, source=event.source, received_at=received).deliveries)
        _compare(report, event.id, before, after)
    return report


def _by_key(deliveries: tuple[PlannedDelivery, ...]) -> dict[tuple[str, str, int], PlannedDelivery]:
    """Deliveries by (route, destination, n-th send to that destination within the route)."""
    seen: dict[tuple[str, str], int] = defaultdict(int)
    keyed = {}
    for delivery in deliveries:
        number = seen[(delivery.route, delivery.destination)]
        seen[(delivery.route, delivery.destination)] += 1
        keyed[(delivery.route, delivery.destination, number)] = delivery
    return keyed


def _compare(report: PlanReport, event_id: str, before: dict, after: dict) -> None:
    old_routes = {key[0] for key in before}
    new_routes = {key[0] for key in after}
    for route in sorted(new_routes - old_routes):
        report.starts[route].append(event_id)
    for route in sorted(old_routes - new_routes):
        report.stops[route].append(event_id)
    for key in sorted(before.keys() & after.keys()):
        old_text, new_text = _shown(before[key]), _shown(after[key])
        if old_text != new_text:
            report.changes[f"{key[0]}/{key[1]}"].append((event_id, _diff(old_text, new_text)))


def _shown(delivery: PlannedDelivery) -> str:
    if delivery.error:
        return f"(template fails: {delivery.error})"
    try:
        return json.dumps(json.loads(delivery.body or ""), ensure_ascii=False, indent=2, sort_keys=True)
    except json.JSONDecodeError:
        return delivery.body or ""


def _diff(old: str, new: str) -> str:
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), "running", "new", lineterm="", n=1)
    return "\n".join(lines)


def print_report(console: Console, report: PlanReport) -> None:
    """Summary counts first, then which events, then body diffs (the first of each)."""
    console.print(f"Plan: {report.events} events through routes version {report.old_version} (running) and {report.new_version} (new)")
    if not report.changed:
        console.print("[green]No changes: every event would be routed and rendered the same way.[/]")
        return
    for route, events in report.starts.items():
        console.print(f"  [green]+ {escape(route)}[/] starts firing for {len(events)} events")
    for route, events in report.stops.items():
        console.print(f"  [red]- {escape(route)}[/] stops firing for {len(events)} events")
    for key, items in report.changes.items():
        console.print(f"  [yellow]~ {escape(key)}[/]: the body changes for {len(items)} events")
    console.print("")
    for title, groups in (("starts firing", report.starts), ("stops firing", report.stops)):
        for route, events in groups.items():
            listed = ", ".join(events[:MAX_LISTED]) + (f" and {len(events) - MAX_LISTED} more" if len(events) > MAX_LISTED else "")
            console.print(f"{escape(route)} {title} for: {escape(listed)}")
    for key, items in report.changes.items():
        event_id, diff = items[0]
        others = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
        console.print(f"\n{escape(key)}, event {escape(event_id)}{others}:")
        console.print(diff, markup=False, highlight=False)
