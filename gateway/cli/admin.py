"""Operator commands on the store: list and show events, replay deliveries, purge, erase.

They open the same database as a running gateway (SQLite allows it; PostgreSQL is made for it):
a replayed delivery is picked up by the running engine at its next look, within seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from gateway import replay as replay_core
from gateway.cli.plan import PlannedEvent
from gateway.config import Config
from gateway.errors import GatewayError, plural
from gateway.store import DeliveryFilter, EventQuery, Store, open_store
from gateway.store.base import EventRow

T = TypeVar("T")


def with_store(database_url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store of a database that exists, run `work`, close it. These verbs read (or
    change) what `gateway serve` stored: a missing file is a mistake to name, never created."""
    missing = missing_database(database_url)
    if missing:
        raise GatewayError(
            f"there is no database at {missing}: `gateway serve` creates it there (with the same --config); "
            "give the one it uses with --db, GATEWAY_DATABASE_URL or settings.database in routes.yaml"
        )

    async def run() -> T:
        store = open_store(database_url)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def post_event(url: str, token: str | None, event: dict[str, Any]) -> httpx.Response:
    """POST one event as GO does (the token in the query string); a message when nobody answers."""
    try:
        return httpx.post(url, params={"token": token} if token else None, content=json.dumps(event, ensure_ascii=False).encode(), timeout=30, trust_env=False)
    except httpx.HTTPError as exc:
        raise GatewayError(f"no gateway answered at {url.rsplit('/hooks/', 1)[0]} ({type(exc).__name__}): start `gateway serve`, or give its address with --url") from None


async def settled_event(store: Store, event_id: str, seconds: float) -> EventRow:
    """The stored event once none of its deliveries is pending or being sent (or the time is up)."""
    deadline = time.monotonic() + seconds
    while True:
        event = await store.get_event(event_id)
        if event is None:
            raise GatewayError(f"the gateway answered with event {event_id}, but it is not in this database: give the one it uses with --db")
        if time.monotonic() >= deadline or not any(d.status in ("pending", "sending") for d in event.deliveries):
            return event
        await asyncio.sleep(0.2)


def missing_database(database_url: str) -> Path | None:
    """The file a sqlite:/// URL names, when it does not exist."""
    if not database_url.startswith("sqlite:///") or database_url.endswith(":memory:"):
        return None
    path = Path(database_url[len("sqlite:///"):])
    return None if path.is_file() else path.resolve()


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


STATUS_ORDER = ("delivered", "pending", "sending", "dead", "failed", "skipped", "shadow")


def print_events(console: Console, events: list[EventRow], statuses: dict[str, dict[str, int]]) -> None:
    """One line per event, never cut (ids are copied into `events show`), easy to grep, with
    what became of its deliveries: `2 delivered, 1 dead, 1 shadow`."""
    for event in events:
        counts = statuses.get(event.id, {})
        summary = ", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if counts.get(s)) or "no deliveries"
        token = f"  token {event.token}" if event.token else ""
        line = f"{event.id}  {when(event.received_at)}  {event.event_type:<28} {event.source:<8} config {event.config_version}  {summary}{token}"
        console.print(escape(line), highlight=False, soft_wrap=True)
    if not events:
        console.print("no events match")


def print_deliveries(console: Console, deliveries: list[Any]) -> None:
    """One line per delivery (its id, event, destination, status, attempts), then its last error."""
    for d in deliveries:
        console.print(escape(f"{d.id}  {when(d.created_at)}  {d.destination:<20} {d.route:<24} {d.status:<9} {plural(d.attempts, 'attempt')}  event {d.event_id}"), highlight=False, soft_wrap=True)
        if d.last_error:
            console.print(f"    {escape(d.last_error)}", highlight=False, soft_wrap=True)
    if not deliveries:
        console.print("no deliveries match")


def print_event(console: Console, event: EventRow) -> None:
    token = f" with token {escape(event.token)}" if event.token else ""
    console.print(f"[bold]{event.event_type}[/] {event.id} from {event.source}{token}, received {when(event.received_at)}, config {event.config_version}")
    console.print(escape(event.body) if event.body is not None else "[dim](payload erased or purged)[/]", highlight=False)
    for delivery in event.deliveries:
        console.print(f"\n→ {escape(delivery.route)} → {escape(delivery.destination)}: [bold]{delivery.status}[/] after {plural(len(delivery.attempt_log), 'attempt')} ({delivery.id})")
        if delivery.last_error:
            console.print(f"  last error: {escape(delivery.last_error)}")
        if delivery.status == "pending" and delivery.next_attempt_at:
            console.print(f"  next attempt: {when(delivery.next_attempt_at)}")
        for body, version, replaced_at in delivery.replaced_bodies:
            shown = escape(body) if body is not None else "(the template had failed)"
            console.print(f"  body replaced by a re-render at {when(replaced_at)}; before (version {version}): {shown}", highlight=False)
        for attempt in delivery.attempt_log:
            status = attempt.status_code if attempt.status_code is not None else "-"
            detail = f" {escape(attempt.error)}" if attempt.error else ""
            console.print(f"  #{attempt.number} {when(attempt.started_at)} {attempt.outcome} HTTP {status} in {attempt.duration_ms:.0f} ms{detail}")


def event_as_json(event: EventRow) -> str:
    def attempts(delivery: Any) -> list[dict[str, Any]]:
        return [a.__dict__ for a in delivery.attempt_log]

    data = {
        **{k: v for k, v in event.__dict__.items() if k != "deliveries"},
        "deliveries": [
            {
                **{k: v for k, v in d.__dict__.items() if k not in ("attempt_log", "replaced_bodies")},
                "attempts_log": attempts(d),
                "replaced_bodies": [{"body": b, "config_version": v, "replaced_at": t} for b, v, t in d.replaced_bodies],
            }
            for d in event.deliveries
        ],
    }
    return json.dumps(data, ensure_ascii=False, indent=2)


async def replay(store: Store, selection: DeliveryFilter, console: Console) -> int:
    """Requeue the selected deliveries with a progress bar; returns how many."""
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=None)
        return await replay_core.requeue(store, selection, lambda done, total: progress.update(task, completed=done, total=total))


async def stored_events(store: Store, limit: int, since: float | None) -> list[PlannedEvent]:
    """Stored events with their payloads (erased ones are left out), oldest first, for `plan`."""
    rows = await store.list_events(EventQuery(limit=limit, since=since))
    return [PlannedEvent(r.id, r.source, json.loads(r.body), r.received_at) for r in reversed(rows) if r.body is not None]


async def rerender(store: Store, config: Config, selection: DeliveryFilter, console: Console) -> tuple[int, list[str]]:
    """Render the selected deliveries again with the config in force now; (queued, notes)."""
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("re-rendering", total=None)
        outcome = await replay_core.rerender(store, config, selection, lambda done, total: progress.update(task, completed=done, total=total))
    return outcome.queued, outcome.notes
