"""The admin API, under /admin/api: what arrived, where it went, replay, dry-run, the routes.

Every route is guarded by `require_admin` (Bearer GATEWAY_ADMIN_TOKEN or a shop's admin token,
or the console's session cookie plus its CSRF token). The console's pages are built on these same
functions. A shop's token (`Access.tenant`) sees that shop's part only: its events (stored with
the shop whose source received them), its deliveries (destinations named `shop/...`), its routes
and metrics; another shop's event or delivery is answered 404, as one that never was.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

import gateway.tenants as tenants
from gateway.admin import schemas, views
from gateway.admin.auth import EVERYTHING, Access, access_of, admin_auth, client_address, require_admin
from gateway.admin.jobs import ReplayJobs
from gateway.config import Config
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
ALERTS_READ = 500  # the latest incidents read for the overview and /alerts
DEAD_GROUPED = 5000  # dead deliveries read to group them, oldest first (the page says when there are more)


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def jobs_of(request: Request[Any, Any, Any]) -> ReplayJobs:
    return request.app.state.replays  # type: ignore[no-any-return]


def config_in_view(runtime: Runtime, access: Access) -> Config:
    """The routes an access may see: all of them, or one shop's file as it is in force."""
    if access.tenant is None:
        return runtime.config
    part = runtime.config.tenants.get(access.tenant)
    if part is None:
        raise GatewayHTTPError(404, "unknown_shop", f"the shop '{access.tenant}' has no routes.d/{access.tenant}.yaml in force")
    return part


def visible_shops(runtime: Runtime, access: Access) -> list[str]:
    return sorted(runtime.config.tenants) if access.tenant is None else [access.tenant]


def shop_filter(access: Access, asked: str | None) -> str | None:
    """The shop a page is filtered by: a shop's token always its own; the gateway's token the
    one it asks for (None: every shop)."""
    if access.tenant is not None:
        return access.tenant
    return asked or None


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
    return await list_events(runtime_of(request), replace(query, tenant=access_of(request).tenant))


async def load_event(request: Request[Any, Any, Any], event_id: str, unmasked: bool) -> schemas.EventDetail:
    runtime = runtime_of(request)
    row = await runtime.store.get_event(event_id)
    if row is None or not access_of(request).sees(row.tenant):  # another shop's: as if it never was
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
    selection = DeliveryFilter(statuses=(status,), destination=destination or None, since=since, tenant=access_of(request).tenant)
    return await delivery_page(runtime_of(request), selection, limit)


async def delivery_page(runtime: Runtime, selection: DeliveryFilter, limit: int) -> schemas.DeliveryPage:
    rows = await runtime.store.list_deliveries(selection, limit)
    total = await runtime.store.count_deliveries(selection)
    return schemas.DeliveryPage([views.delivery(r, runtime.config, reveal=False) for r in rows], total)


async def dead_groups(runtime: Runtime, tenant: str | None = None) -> list[schemas.DeadGroup]:
    return views.dead_groups(await runtime.store.list_deliveries(DeliveryFilter(statuses=(DEAD,), tenant=tenant), DEAD_GROUPED))


@get("/deliveries/dead-groups", summary="Dead deliveries grouped by destination and reason")
async def grouped_dead(request: Request[Any, Any, Any]) -> list[schemas.DeadGroup]:
    return await dead_groups(runtime_of(request), access_of(request).tenant)


def refused(runtime: Runtime, tenant: str | None = None) -> schemas.Refused | None:
    """The last refused edit; for one shop, only its own file's part of it."""
    if not runtime.refused_edit:
        return None
    found = schemas.Refused(*runtime.refused_edit)
    if tenant is None:
        return found
    own_file = re.compile(rf"^(?:.*/)?{re.escape(tenants.TENANTS_DIR)}/{re.escape(tenant)}\.ya?ml:")
    problems = [p for p in found.problems if own_file.match(p)]
    return schemas.Refused(found.at, problems, [tenant]) if tenant in found.tenants and problems else None


async def routes_in_force(runtime: Runtime, access: Access) -> schemas.RoutesInForce:
    counts = await runtime.store.route_counts(runtime.clock() - 86400)
    return views.routes_in_force(config_in_view(runtime, access), counts, refused(runtime, access.tenant))


@get("/routes", summary="The routes in force, their destinations (secrets masked) and any refused edit")
async def routes(request: Request[Any, Any, Any]) -> schemas.RoutesInForce:
    return await routes_in_force(runtime_of(request), access_of(request))


async def overview(runtime: Runtime, tenant: str | None = None, access: Access = EVERYTHING) -> schemas.Overview:
    """The overview of the whole gateway, or of one shop; it names the shops `access` may pick."""
    now = runtime.clock()
    config = config_in_view(runtime, Access(tenant))
    activity = await runtime.store.activity(now - 3600, 60, tenant)
    by_status = (await runtime.store.stats(tenant)).by_status
    health = views.destination_health(config, await runtime.delivery_metrics(), await runtime.store.destination_holds(now))
    alerts = views.alerts(await runtime.store.incidents(ALERTS_READ), tenant)
    return schemas.Overview(config.version, refused(runtime, tenant), by_status, views.minutes(activity, now), health, tenant, visible_shops(runtime, access), alerts)


@get("/alerts", summary="The alerts' incidents: open ones first, then the latest resolved, with their notices' fate")
async def alerts(request: Request[Any, Any, Any], limit: Annotated[int, QueryParameter(ge=1, le=ALERTS_READ)] = 50) -> list[schemas.Alert]:
    runtime = runtime_of(request)
    return views.alerts(await runtime.store.incidents(ALERTS_READ), access_of(request).tenant, limit)


@get("/overview", summary="Metrics summary: the last hour per minute, deliveries by status, destinations' health")
async def overview_handler(
    request: Request[Any, Any, Any], shop: Annotated[str | None, QueryParameter(description="one shop's overview (routes.d/<shop>.yaml); a shop's token sees its own only")] = None
) -> schemas.Overview:
    access = access_of(request)
    return await overview(runtime_of(request), shop_filter(access, shop), access)


@get("/metrics", summary="The Prometheus metrics a token may see: a shop's token, its own shop's samples only", media_type="text/plain; version=0.0.4")
async def scoped_metrics(request: Request[Any, Any, Any]) -> bytes:
    runtime = runtime_of(request)
    tenant = access_of(request).tenant
    depth = (await runtime.store.stats(tenant)).by_status
    text = runtime.metrics.render(depth, await runtime.delivery_metrics())
    return text if tenant is None else views.metrics_of_tenant(text, tenant)


# --------------------------------------------------------------------------- acting


def start_replay(request: Request[Any, Any, Any], ask: schemas.ReplayRequest) -> schemas.ReplayJob:
    for status in ask.statuses:
        _check_status(status)
        if status not in RESENDABLE:
            raise GatewayHTTPError(400, "not_resendable", f"deliveries that are {status} are on their way already; replay one of {', '.join(RESENDABLE)}")
    runtime = runtime_of(request)
    tenant = access_of(request).tenant  # a shop's token replays its own deliveries only, whatever ids it names
    selection = DeliveryFilter(statuses=tuple(ask.statuses), destination=ask.destination, since=ask.since, ids=tuple(ask.ids), tenant=tenant)

    async def work(job: schemas.ReplayJob) -> tuple[int, list[str]]:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        if ask.rerender:
            outcome = await rerender(runtime.store, runtime.config, selection, progress)
            return outcome.queued, outcome.notes
        return await requeue(runtime.store, selection, progress), []

    log.info("replay of %s asked by %s (rerender: %s)", "selected deliveries" if ask.ids else f"{'/'.join(ask.statuses)} deliveries", client_address(request), ask.rerender)
    return jobs_of(request).start(ask.rerender, work, tenant)


@post("/replays", status_code=202, summary="Send deliveries again (by id, or a selection), optionally rendered anew")
async def replay(request: Request[Any, Any, Any], data: JSONBody[schemas.ReplayRequest]) -> schemas.ReplayJob:
    return start_replay(request, data)


@get("/replays/{job_id:str}", summary="A replay's progress")
async def replay_progress(request: Request[Any, Any, Any], job_id: FromPath[str]) -> schemas.ReplayJob:
    job = jobs_of(request).get(job_id, access_of(request).tenant)
    if job is None:
        raise GatewayHTTPError(404, "unknown_replay", f"no replay has the id '{job_id}' (only the last ones are remembered)")
    return job


def playground_event(config: Config, ask: schemas.PlaygroundRequest) -> tuple[str, dict[str, Any]]:
    """The source and event a playground request names, among the sources `config` shows."""
    source = ask.source or next(iter(config.sources), "go")
    if source not in config.sources:
        raise GatewayHTTPError(400, "unknown_source", f"no source named '{source}' in {config.file}; sources: {', '.join(config.sources)}")
    try:
        return source, validate_event(ask.event)
    except EventError as exc:
        raise GatewayHTTPError(400, "invalid_event", str(exc)) from None


def dry_run_of(runtime: Runtime, ask: schemas.PlaygroundRequest, access: Access) -> schemas.DryRun:
    config = config_in_view(runtime, access)
    source, event = playground_event(config, ask)
    result = route_event(config, event, source=source, received_at=datetime.now(UTC), explain=True)
    return views.dry_run(config, result, source)


@post("/dry-run", status_code=200, summary="What an event would do: each route's verdict and the exact requests (secrets masked)")
async def dry_run(request: Request[Any, Any, Any], data: JSONBody[schemas.PlaygroundRequest]) -> schemas.DryRun:
    return dry_run_of(runtime_of(request), data, access_of(request))


async def send_event(request: Request[Any, Any, Any], ask: schemas.PlaygroundRequest) -> schemas.Sent:
    """Ingest an event as if its source had sent it (the admin is trusted; no source token)."""
    runtime = runtime_of(request)
    source, event = playground_event(config_in_view(runtime, access_of(request)), ask)
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
    return [schemas.LoginSession(s.id, s.started_at, s.address, s.agent, s.tenant) for s in await admin_auth(request).active(access_of(request))]


async def end_login(request: Request[Any, Any, Any], session_id: str) -> None:
    if not await admin_auth(request).end(session_id, access_of(request)):
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
    route_handlers=[events, event, deliveries, grouped_dead, routes, overview_handler, alerts, scoped_metrics, replay, replay_progress, dry_run, post_event, sessions, end_session],
    tags=["admin"],
    security=[{"BearerToken": []}],
)
