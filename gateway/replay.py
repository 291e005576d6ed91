"""Replay: selected deliveries sent again, as they were or rendered anew with today's routes.

The CLI (`gateway replay`) and the admin API share it. A selection of any size is read page by
page (never held whole in memory), and `progress(done, total)` is told after each delivery or
page, for a progress bar or a console's progress indicator.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.config import Config
from gateway.routing import route_event
from gateway.store import DeliveryFilter, Store
from gateway.store.base import DeliveryRef

REPLAY_CHUNK = 500
MAX_NOTES = 100  # notes kept after a re-render; the rest are counted

Progress = Callable[[int, int], None]


def _ignore(done: int, total: int) -> None:
    pass


@dataclass
class ReplayOutcome:
    queued: int = 0
    notes: list[str] = field(default_factory=list)  # why some were not re-rendered


async def requeue(store: Store, selection: DeliveryFilter, progress: Progress = _ignore) -> int:
    """Make the selected deliveries pending again, due now; how many were."""
    total, seen, done = await store.count_deliveries(selection), 0, 0
    progress(0, total)
    async for page in _pages(store, selection):
        ids = tuple(ref.id for ref in page if ref.has_body)
        if ids:
            done += await store.requeue(DeliveryFilter(statuses=selection.statuses, ids=ids), time.time())
        seen += len(page)
        progress(seen, total)
    return done


async def rerender(store: Store, config: Config, selection: DeliveryFilter, progress: Progress = _ignore) -> ReplayOutcome:
    """Render the selected deliveries again with `config` and queue them; why not, for those
    that could not be."""
    outcome, unnoted, seen = ReplayOutcome(), 0, 0
    total = await store.count_deliveries(selection)
    progress(0, total)
    async for page in _pages(store, selection):
        for ref in page:
            note = await _rerender_one(store, config, ref)
            if not note:
                outcome.queued += 1
            elif len(outcome.notes) < MAX_NOTES:
                outcome.notes.append(f"{ref.id}: {note}")
            else:
                unnoted += 1
            seen += 1
            progress(seen, total)
    if unnoted:
        outcome.notes.append(f"{unnoted} more not re-rendered (the first {MAX_NOTES} are above; each event's page tells its story)")
    return outcome


async def _pages(store: Store, selection: DeliveryFilter) -> AsyncIterator[list[DeliveryRef]]:
    """The selection in pages of REPLAY_CHUNK, by id; each page starts after the last one."""
    after = ""
    while page := await store.delivery_refs(selection, after, REPLAY_CHUNK):
        yield page
        after = page[-1].id


async def _rerender_one(store: Store, config: Config, row: DeliveryRef) -> str | None:
    """Re-render one delivery; why not, or None when it is queued (or failed again, recorded)."""
    event = await store.get_event(row.event_id)
    if event is None or event.body is None:
        return "its event's payload was purged or erased; nothing to render from"
    received = datetime.fromtimestamp(event.received_at, UTC)
    routed = route_event(config, json.loads(event.body), source=event.source, received_at=received, explain=True, only_route=row.route)
    if not routed.verdicts:
        return f"route '{row.route}' is no longer in {config.file}"
    if not routed.verdicts[0].matched:
        return f"route '{row.route}' no longer matches this event: " + "; ".join(r.text for r in routed.verdicts[0].reasons)
    fresh = next((d for d in routed.deliveries if d.destination == row.destination), None)
    if fresh is None:
        return f"route '{row.route}' no longer sends to '{row.destination}'"
    await store.rerender(row.id, fresh.body, fresh.error, config.version, time.time())
    return f"the template still fails: {fresh.error}" if fresh.error else None
