"""The Litestar app: HTTP in, nothing else. Ingest, health, readiness and metrics.

Ingest checks the request here (source, address, token, size, JSON) and hands the event to the
ingest part (gateway/ingest.py; under `gateway serve`, the ingest child) that routes, renders
and stores it with all its deliveries in one transaction. 202 only after that; if the store
cannot write, 503 so GO may try again. Then the delivery part is woken for the new work. Which
parts run where, and their start and stop, is gateway/service/topology.py's business.

Every error body is `{"error": "<code>", "detail": "<sentence for a person>"}`. The body
decides, not the Content-Type header: GO is a PHP system and may label a valid JSON event
wrongly.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as package_version
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, asgi, get
from litestar.exceptions import ClientException, HTTPException, MethodNotAllowedException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import Receive, Scope, Send

import gateway.tracing as tracing
from gateway.admin.api import admin_api
from gateway.admin.auth import AdminAuth
from gateway.admin.console import STATIC, TEMPLATES, console, template_filters
from gateway.admin.jobs import ReplayJobs
from gateway.config import Source
from gateway.ingest import Accepted
from gateway.service.http_errors import GatewayHTTPError
from gateway.service.topology import Runtime, running
from gateway.store import StoreUnavailable

log = logging.getLogger("gateway.ingest")

MAX_BODY_BYTES = 1024 * 1024
# Events read and handed to the ingest part but not yet stored. Past it, a flood would only grow
# the HTTP process's memory (every body held while it waits): 503, and GO sends again.
MAX_INGESTS_IN_FLIGHT = 1024
_ERROR_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 429: "over_quota", 503: "unavailable",
}


def _error_response(request: Request, exc: HTTPException) -> Response[dict[str, str]]:
    code = getattr(exc, "error", None) or _ERROR_CODES.get(exc.status_code, "error")
    detail = exc.detail
    if exc.status_code == 413:
        detail = f"the body is larger than the limit of {MAX_BODY_BYTES // 1024} KiB"
    return Response({"error": code, "detail": str(detail)}, status_code=exc.status_code, headers=exc.headers)


def _internal_error(request: Request, exc: Exception) -> Response[dict[str, str]]:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    detail = "the event was not stored, please send it again" if request.url.path.startswith("/hooks") else "the gateway's log says why"
    return Response({"error": "internal_error", "detail": f"the gateway failed unexpectedly; {detail}"}, status_code=500)


# --------------------------------------------------------------------------- ingest checks


def _client_address(request: Request, source: Source) -> str:
    """The sender's address: the peer, or with a trusted proxy, the right-most untrusted hop."""
    peer = request.client.host if request.client else "0.0.0.0"
    if not source.trusted_proxies or not _in(peer, source.trusted_proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("x-forwarded-for", [])).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, source.trusted_proxies):
            return hop
    return peer


def _in(address: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in networks)


def _check_token(request: Request, source: Source) -> str | None:
    """The token the request carries, checked against every token of the source (each compared
    whole, in constant time); which one matched, masked, for the event's record."""
    if not source.tokens:
        return None
    given = request.query_params.getall("token", [])
    if not given:  # GO sends the token in the query; the header is read only when it does not
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = [header[7:].strip()]
    if len(given) != 1:
        detail = "add ?token=<your token> to the URL registered in GO" if not given else "send the token once"
        raise GatewayHTTPError(401, "unauthorized", f"missing or repeated token: {detail}")
    sent = given[0].encode("utf-8", "surrogateescape")
    matches = [hmac.compare_digest(sent, token.encode()) for token in source.tokens]  # all compared: the time tells nothing
    if not any(matches):
        raise GatewayHTTPError(401, "unauthorized", "the token does not match the one configured for this source")
    return token_hint(source.tokens[matches.index(True)])


def token_hint(token: str) -> str:
    """A token as the console shows it: its last characters only (…3f9a), enough to tell two apart."""
    shown = 4 if len(token) >= 12 else 2
    return "…" + token[-shown:]


def _parse_event(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise GatewayHTTPError(400, "invalid_json", "the body is empty; GO sends a JSON object with event_id and data")
    try:
        event = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise GatewayHTTPError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises it for some bytes inside strings
        raise GatewayHTTPError(400, "invalid_json", f"the body is not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise GatewayHTTPError(400, "invalid_json", "the body is nested too deeply to be a GO event") from None
    if not isinstance(event, dict):
        raise GatewayHTTPError(400, "not_an_object", f"the body must be a JSON object, not {type(event).__name__}")
    if not isinstance(event.get("event_id"), str) or not event["event_id"]:
        raise GatewayHTTPError(400, "missing_event_id", "the body has no text field 'event_id' (like \"ORDER_CREATED\")")
    return event


# --------------------------------------------------------------------------- handlers


@asgi("/hooks", is_mount=True, copy_scope=False)  # mounted: Litestar 2.25 fails asgi handlers with path parameters
async def ingest(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /hooks/{source}, as a plain ASGI handler: the one hot path. Without Litestar's
    handler layers (signature model, kwargs, Response objects) the HTTP process spends about
    a tenth less CPU per event (bench/README.md). Errors are still raised, so the app's
    exception handlers write their JSON bodies exactly as for every other route."""
    request: Request[Any, Any, Any] = Request(scope, receive)
    if request.method != "POST":
        raise MethodNotAllowedException(f"{request.method} is not accepted here: GO sends its events with POST", headers={"Allow": "POST"})
    status, answer = await _ingest(request, request.app.state.runtime)
    payload = msgspec.json.encode(answer)
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def _ingest(request: Request[Any, Any, Any], runtime: Runtime) -> tuple[int, dict[str, Any]]:
    source = request.scope["path"].strip("/")  # the path after /hooks (a mount's scope holds only that)
    config = runtime.config
    found = config.sources.get(source)
    if found is None:
        raise GatewayHTTPError(404, "unknown_source", f"no source named '{source}' in routes.yaml; events go to /hooks/{next(iter(config.sources), 'go')}")
    if found.inactive:
        raise GatewayHTTPError(503, "source_not_configured", f"source '{source}' is not configured on the gateway ({found.inactive})")
    address = _client_address(request, found)
    if found.allow_ips and not _in(address, found.allow_ips):
        runtime.metrics.count_event(source, "forbidden", found.tenant)
        raise GatewayHTTPError(403, "forbidden", f"the address {address} is not in allow_ips for source '{source}'")
    token = _check_token(request, found)
    if found.quota is not None:
        await _take_quota(runtime, found)
    if runtime.ingesting >= MAX_INGESTS_IN_FLIGHT:  # beyond it, memory would grow with the flood: GO sends again
        runtime.metrics.count_event(source, "busy", found.tenant)
        raise GatewayHTTPError(503, "busy", f"the gateway is storing {MAX_INGESTS_IN_FLIGHT} events already; send this one again in a moment", {"Retry-After": "1"})
    runtime.ingesting += 1
    try:
        stored, event = await _store(request, runtime, found, token)
    finally:
        runtime.ingesting -= 1
    runtime.delivery.wake(stored)
    runtime.metrics.count_event(source, "duplicate" if stored.duplicate else "accepted", found.tenant)
    answer = {"event_id": event["event_id"], "id": stored.id, "deliveries": stored.deliveries, "duplicate": stored.duplicate}
    return (200 if stored.duplicate else 202), answer


async def _take_quota(runtime: Runtime, source: Source) -> None:
    """One event of the source's quota, or 429 before anything is read or stored (GO sends again)."""
    assert source.quota is not None
    try:
        wait = await runtime.store.take_quota(f"source:{source.name}", source.quota, runtime.clock())
    except StoreUnavailable as exc:
        log.error("quota of %s not checked, event refused: %s", source.name, exc)
        runtime.metrics.count_event(source.name, "store_unavailable", source.tenant)
        raise GatewayHTTPError(503, "store_unavailable", "the gateway could not store the event; send it again later") from None
    if wait > 0:
        runtime.metrics.count_event(source.name, "over_quota", source.tenant)
        retry = max(1, math.ceil(wait))
        raise GatewayHTTPError(
            429, "over_quota", f"source '{source.name}' is over its quota ({source.quota.text}, {source.quota.burst:g} at once); send this one again in {retry} s", {"Retry-After": str(retry)}
        )


async def _store(request: Request[Any, Any, Any], runtime: Runtime, source: Source, token: str | None) -> tuple[Accepted, dict[str, Any]]:
    """Read, parse and store the event: 503 if the store cannot take it now."""
    body = await _read_body(request)
    event = _parse_event(body)
    try:
        assert runtime.ingest is not None and runtime.delivery is not None, "the app's lifespan starts them"
        if tracing.enabled():
            return await _ingest_traced(request, runtime, source, body, event, token), event
        return await runtime.ingest.ingest(source.name, body, event, runtime.clock(), token), event
    except StoreUnavailable as exc:
        log.error("event not stored: %s", exc)
        runtime.metrics.count_event(source.name, "store_unavailable", source.tenant)
        raise GatewayHTTPError(503, "store_unavailable", "the gateway could not store the event; send it again later") from None


async def _ingest_traced(request: Request[Any, Any, Any], runtime: Runtime, source: Source, body: bytes, event: dict[str, Any], token: str | None) -> Accepted:
    """Ingest in a span that continues the sender's trace (W3C traceparent), or starts one."""
    assert runtime.ingest is not None
    with tracing.span("ingest", request.headers.get("traceparent"), {"gateway.source": source.name, "gateway.event_id": str(event["event_id"])}) as current:
        accepted = await runtime.ingest.ingest(source.name, body, event, runtime.clock(), token, tracing.traceparent())
        tracing.note(current, **{"gateway.stored_id": accepted.id, "gateway.deliveries": accepted.deliveries, "gateway.duplicate": accepted.duplicate})
    return accepted


async def _read_body(request: Request[Any, Any, Any]) -> bytes:
    """The body, refused with 413 as soon as it announces or grows past MAX_BODY_BYTES."""
    try:
        announced = request.content_length
    except ClientException:
        raise GatewayHTTPError(400, "bad_request", "the Content-Length header is not a number") from None
    if announced is not None and announced > MAX_BODY_BYTES:
        raise RequestEntityTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientException("the sender disconnected before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestEntityTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz")
async def readyz(request: Request) -> Response[dict[str, Any]]:
    runtime: Runtime = request.app.state.runtime
    try:
        await asyncio.wait_for(runtime.store.ping(), timeout=5)
    except (TimeoutError, StoreUnavailable) as exc:
        return Response({"status": "unavailable", "detail": f"store: {exc}", "config_version": runtime.config.version}, status_code=503)
    if runtime.ingest is not None and not runtime.ingest.ready:
        return Response({"status": "unavailable", "detail": "the ingest child is restarting", "config_version": runtime.config.version}, status_code=503)
    admin = "on" if runtime.admin_tokens else "off (set GATEWAY_ADMIN_TOKEN to turn on the admin API and the console)"
    answer: dict[str, Any] = {"status": "ready", "config_version": runtime.config.version, "admin": admin}
    if runtime.config.tenants:
        answer["tenants"] = {tenant: part.version for tenant, part in runtime.config.tenants.items()}
    if runtime.refused_edit:  # still ready: the routes in force go on; the message says whose edit waits for a fix
        at, problems, tenants = runtime.refused_edit
        answer["refused_edit"] = {"at": at, "tenants": tenants, "problems": problems}
    return Response(answer, status_code=200)


@get("/metrics")
async def metrics(request: Request) -> Response[bytes]:
    runtime: Runtime = request.app.state.runtime
    runtime.metrics.config.clear()
    runtime.metrics.config.labels(runtime.config.version).set(1)
    try:
        depth = (await runtime.store.stats()).by_status
    except StoreUnavailable:
        depth = {}
    deliveries = await runtime.delivery.scrape() if runtime.delivery is not None else None
    # Litestar adds "; charset=utf-8" to a text/ media type itself: naming it here said it twice
    return Response(runtime.metrics.render(depth, deliveries), media_type="text/plain; version=0.0.4")


# --------------------------------------------------------------------------- app


def create_app(runtime: Runtime) -> Litestar:
    """The app; its lifespan runs the parts of `runtime.topology` (gateway/service/topology.py).
    The admin API and the console answer only when an admin token is configured."""
    replays = ReplayJobs()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with running(runtime):
            yield
            await replays.stop()

    def add_filters(engine: JinjaTemplateEngine) -> None:
        engine.engine.filters.update(template_filters())

    swagger = "/static/vendor/swagger"
    app = Litestar(
        route_handlers=[ingest, healthz, readyz, metrics, admin_api, console, create_static_files_router("/static", [STATIC], include_in_schema=False)],
        lifespan=[lifespan],
        exception_handlers={HTTPException: _error_response, Exception: _internal_error},
        logging_config=None,
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=add_filters),
        openapi_config=OpenAPIConfig(
            title="Gateway GO",
            version=package_version("go-webhook-gateway"),
            description="Admin API of the GO webhook gateway: Authorization: Bearer <GATEWAY_ADMIN_TOKEN>.",
            path="/schema",
            components=Components(security_schemes={"BearerToken": SecurityScheme(type="http", scheme="bearer")}),
            render_plugins=[
                SwaggerRenderPlugin(
                    js_url=f"{swagger}/swagger-ui-bundle.js", css_url=f"{swagger}/swagger-ui.css", standalone_preset_js_url=f"{swagger}/swagger-ui-standalone-preset.js",
                    favicon=f"<link rel='icon' type='image/png' href='{swagger}/favicon-32x32.png'>",
                )
            ],
        ),
    )
    app.state.runtime = runtime
    app.state.admin = AdminAuth(runtime.admin_tokens, runtime.store) if runtime.admin_tokens else None
    app.state.replays = replays
    return app
