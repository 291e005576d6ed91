"""The admin API, under /admin/api: what arrived, where it went, replay, dry-run, the routes.

Every route is guarded by `require_admin` (Bearer GATEWAY_ADMIN_TOKEN, or the console's
session cookie plus its CSRF token). The console's pages are built on these same functions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from gateway.admin import schemas, views
from gateway.admin.auth import admin_auth, client_address, require_admin
from gateway.admin.jobs import ReplayJobs
from gateway.errors import EventError
from gateway.replay import requeue, rerender
from gateway.routing import route_event, validate_event
from gateway.service.http_errors import GatewayHTTPError
from gateway.service.topology import Runtime
from gateway.store import DeliveryFilter, EventQuery, StoreUnavailable
from gateway.store.base import DEAD, DELIVERED, FAILED, SHADOW, SKIPPED, STATUSES

log = logging.getLogger("gateway.admin")
MAX_PAGE = 200
RESENDABLE = (DEAD, DELIVERED, FAILED, SKIPPED, SHADOW)  # never pending or sending: those are on their way, a replay would send them twice
TEXT_SEARCH_WINDOW = 100_000  # events a text search reads per page (bench/bench_console.py: under 300 ms)
DEAD_GROUPED = 5000  # dead deliveries read to group them, oldest first (the page says when there are more)


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def jobs_of(request: Request[Any, Any, Any]) -> ReplayJobs:
    return request.app.state.replays  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- reading


async def list_events(runtime: Runtime, query: EventQuery, window: int | None = None) -> schemas.EventPage:
    """A page of events. A text search reads at most `window` events (newest first, after
    `before`): it cannot use an index, and one page must cost the same at ten million events as
    at a thousand. When the window ends before the page is full, `searched_to` says how far back
    it read, and `next` continues from there."""
    end = await runtime.store.window_end(query, window or TEXT_SEARCH_WINDOW) if query.text else None
    rows = await runtime.store.list_events(replace(query, down_to=end[0]) if end else query)
    statuses = await runtime.store.delivery_statuses([r.id for r in rows])
    summaries = [views.event_summary(r, statuses.get(r.id, {})) for r in rows]
    if len(rows) == query.limit:
        return schemas.EventPage(summaries, rows[-1].id)
    return schemas.EventPage(summaries, end[0] if end else None, end[1] if end else None)


@get("/events", summary="Events received, newest first")
async def events(
    request: Request[Any, Any, Any],
    event_type: Annotated[str | None, QueryParameter(name="type", description="GO's event_id, like ORDER_CREATED")] = None,
    source: FromQuery[str | None] = None,
    status: Annotated[str | None, QueryParameter(description="only events with a delivery in this status")] = None,
    destination: Annotated[str | None, QueryParameter(description="only events with a delivery to this destination")] = None,
    since: Annotated[float | None, QueryParameter(description="received at or after (unix seconds)")] = None,
    until: Annotated[float | None, QueryParameter(description="received before (unix seconds)")] = None,
    code: Annotated[str | None, QueryParameter(description="GO's data.code (order or invoice number)")] = None,
    q: Annotated[str | None, QueryParameter(description="text anywhere in the payload; read 100,000 events a page (see `searched_to`)")] = None,
    before: Annotated[str | None, QueryParameter(description="the `next` of the previous page")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
) -> schemas.EventPage:
    _check_status(status)
    query = EventQuery(limit, since, until, event_type or None, source or None, status or None, destination or None, code or None, q or None, before or None)
    return await list_events(runtime_of(request), query)


async def load_event(request: Request[Any, Any, Any], event_id: str, unmasked: bool) -> schemas.EventDetail:
    runtime = runtime_of(request)
    row = await runtime.store.get_event(event_id)
    if row is None:
        raise GatewayHTTPError(404, "unknown_event", f"no stored event has the id '{event_id}' (it may have been purged)")
    if unmasked:  # the fact is logged, never the data
        log.warning("personal data of event %s shown unmasked to %s", event_id, client_address(request))
    return views.event_detail(row, runtime.config, reveal=unmasked)


@get("/events/{event_id:str}", summary="One event with its deliveries and every attempt")
async def event(
    request: Request[Any, Any, Any], event_id: FromPath[str], unmasked: Annotated[bool, QueryParameter(description="show personal data (logged)")] = False
) -> schemas.EventDetail:
    return await load_event(request, event_id, unmasked)


@get("/deliveries", summary="Deliveries by status, destination and time")
async def deliveries(
    request: Request[Any, Any, Any],
    status: Annotated[str, QueryParameter(description=f"one of {', '.join(STATUSES)}")] = DEAD,
    destination: FromQuery[str | None] = None,
    since: Annotated[float | None, QueryParameter(description="created at or after (unix seconds)")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
) -> schemas.DeliveryPage:
    _check_status(status)
    return await delivery_page(runtime_of(request), DeliveryFilter(statuses=(status,), destination=destination or None, since=since), limit)


async def delivery_page(runtime: Runtime, selection: DeliveryFilter, limit: int) -> schemas.DeliveryPage:
    rows = await runtime.store.list_deliveries(selection, limit)
    total = await runtime.store.count_deliveries(selection)
    return schemas.DeliveryPage([views.delivery(r, runtime.config, reveal=False) for r in rows], total)


async def dead_groups(runtime: Runtime) -> list[schemas.DeadGroup]:
    return views.dead_groups(await runtime.store.list_deliveries(DeliveryFilter(statuses=(DEAD,)), DEAD_GROUPED))


@get("/deliveries/dead-groups", summary="Dead deliveries grouped by destination and reason")
async def grouped_dead(request: Request[Any, Any, Any]) -> list[schemas.DeadGroup]:
    return await dead_groups(runtime_of(request))


def refused(runtime: Runtime) -> schemas.Refused | None:
    return schemas.Refused(*runtime.refused_edit) if runtime.refused_edit else None


async def routes_in_force(runtime: Runtime) -> schemas.RoutesInForce:
    counts = await runtime.store.route_counts(runtime.clock() - 86400)
    return views.routes_in_force(runtime.config, counts, refused(runtime))


@get("/routes", summary="The routes in force, their destinations (secrets masked) and any refused edit")
async def routes(request: Request[Any, Any, Any]) -> schemas.RoutesInForce:
    return await routes_in_force(runtime_of(request))


async def overview(runtime: Runtime) -> schemas.Overview:
    now = runtime.clock()
    activity = await runtime.store.activity(now - 3600, 60)
    by_status = (await runtime.store.stats()).by_status
    scraped = await runtime.delivery.scrape() if runtime.delivery is not None else None
    delivery_metrics = scraped if scraped is not None else runtime.metrics.delivery.render()
    health = views.destination_health(runtime.config, delivery_metrics, await runtime.store.destination_holds(now))
    return schemas.Overview(runtime.config.version, refused(runtime), by_status, views.minutes(activity, now), health)


@get("/overview", summary="Metrics summary: the last hour per minute, deliveries by status, destinations' health")
async def overview_handler(request: Request[Any, Any, Any]) -> schemas.Overview:
    return await overview(runtime_of(request))


# --------------------------------------------------------------------------- acting


def start_replay(request: Request[Any, Any, Any], ask: schemas.ReplayRequest) -> schemas.ReplayJob:
    for status in ask.statuses:
        _check_status(status)
        if status not in RESENDABLE:
            raise GatewayHTTPError(400, "not_resendable", f"deliveries that are {status} are on their way already; replay one of {', '.join(RESENDABLE)}")
    runtime = runtime_of(request)
    selection = DeliveryFilter(statuses=tuple(ask.statuses), destination=ask.destination, since=ask.since, ids=tuple(ask.ids))

    async def work(job: schemas.ReplayJob) -> tuple[int, list[str]]:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        if ask.rerender:
            outcome = await rerender(runtime.store, runtime.config, selection, progress)
            return outcome.queued, outcome.notes
        return await requeue(runtime.store, selection, progress), []

    log.info("replay of %s asked by %s (rerender: %s)", "selected deliveries" if ask.ids else f"{'/'.join(ask.statuses)} deliveries", client_address(request), ask.rerender)
    return jobs_of(request).start(ask.rerender, work)


@post("/replays", status_code=202, summary="Send deliveries again (by id, or a selection), optionally rendered anew")
async def replay(request: Request[Any, Any, Any], data: JSONBody[schemas.ReplayRequest]) -> schemas.ReplayJob:
    return start_replay(request, data)


@get("/replays/{job_id:str}", summary="A replay's progress")
async def replay_progress(request: Request[Any, Any, Any], job_id: FromPath[str]) -> schemas.ReplayJob:
    job = jobs_of(request).get(job_id)
    if job is None:
        raise GatewayHTTPError(404, "unknown_replay", f"no replay has the id '{job_id}' (only the last ones are remembered)")
    return job


def playground_event(runtime: Runtime, ask: schemas.PlaygroundRequest) -> tuple[str, dict[str, Any]]:
    source = ask.source or next(iter(runtime.config.sources), "go")
    if source not in runtime.config.sources:
        raise GatewayHTTPError(400, "unknown_source", f"no source named '{source}' in routes.yaml; sources: {', '.join(runtime.config.sources)}")
    try:
        return source, validate_event(ask.event)
    except EventError as exc:
        raise GatewayHTTPError(400, "invalid_event", str(exc)) from None


def dry_run_of(runtime: Runtime, ask: schemas.PlaygroundRequest) -> schemas.DryRun:
    source, event = playground_event(runtime, ask)
    config = runtime.config
    result = route_event(config, event, source=source, received_at=datetime.now(UTC), explain=True)
    return views.dry_run(config, result, source)


@post("/dry-run", status_code=200, summary="What an event would do: each route's verdict and the exact requests (secrets masked)")
async def dry_run(request: Request[Any, Any, Any], data: JSONBody[schemas.PlaygroundRequest]) -> schemas.DryRun:
    return dry_run_of(runtime_of(request), data)


async def send_event(request: Request[Any, Any, Any], ask: schemas.PlaygroundRequest) -> schemas.Sent:
    """Ingest an event as if its source had sent it (the admin is trusted; no source token)."""
    runtime = runtime_of(request)
    source, event = playground_event(runtime, ask)
    if runtime.ingest is None or runtime.delivery is None:
        raise GatewayHTTPError(503, "unavailable", "the gateway is starting; send it again in a moment")
    try:
        stored = await runtime.ingest.ingest(source, msgspec.json.encode(event), event, time.time())
    except StoreUnavailable:
        raise GatewayHTTPError(503, "store_unavailable", "the gateway could not store the event; send it again later") from None
    runtime.delivery.wake(stored)
    log.info("event %s (%s) sent from the admin API by %s", stored.id, event["event_id"], client_address(request))
    return schemas.Sent(event["event_id"], stored.id, stored.deliveries, stored.duplicate)


@post("/events", status_code=202, summary="Store and route an event as if its source had sent it")
async def post_event(request: Request[Any, Any, Any], data: JSONBody[schemas.PlaygroundRequest]) -> schemas.Sent:
    return await send_event(request, data)


# --------------------------------------------------------------------------- console logins


async def session_list(request: Request[Any, Any, Any]) -> list[schemas.LoginSession]:
    return [schemas.LoginSession(s.id, s.started_at, s.address, s.agent) for s in await admin_auth(request).active()]


async def end_login(request: Request[Any, Any, Any], session_id: str) -> None:
    if not await admin_auth(request).end(session_id):
        raise GatewayHTTPError(404, "unknown_session", f"no active console session has the id '{session_id}' (it may have ended already)")
    log.warning("console session %s ended by %s", session_id, client_address(request))


@get("/sessions", summary="The console's active logins (every replica's)")
async def sessions(request: Request[Any, Any, Any]) -> list[schemas.LoginSession]:
    return await session_list(request)


@post("/sessions/{session_id:str}/end", status_code=204, summary="End a console login on every replica")
async def end_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> None:
    await end_login(request, session_id)


def _check_status(status: str | None) -> None:
    if status and status not in STATUSES:
        raise GatewayHTTPError(400, "unknown_status", f"'{status}' is not a delivery status; use one of {', '.join(STATUSES)}")


admin_api = Router(
    path="/admin/api",
    guards=[require_admin],
    route_handlers=[events, event, deliveries, grouped_dead, routes, overview_handler, replay, replay_progress, dry_run, post_event, sessions, end_session],
    tags=["admin"],
    security=[{"BearerToken": []}],
)
