"""The Litestar app: HTTP in, nothing else. Ingest, health, readiness and metrics.

Ingest answers 202 only after the event and all its deliveries are in the store, in one
transaction; if the store cannot write, 503 so GO may try again. Every error body is
`{"error": "<code>", "detail": "<sentence for a person>"}`. The body decides, not the
Content-Type header: GO is a PHP system and may label a valid JSON event wrongly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException

from gateway.config import Config, Source
from gateway.delivery import DeliveryEngine, delivery_client
from gateway.errors import TemplateError
from gateway.metrics import Metrics
from gateway.reload import ConfigReloader
from gateway.routing import RoutingResult, route_event, template_context
from gateway.store import Store, StoreUnavailable
from gateway.store.base import NewDelivery, NewEvent

log = logging.getLogger("gateway.ingest")

MAX_BODY_BYTES = 1024 * 1024
_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 503: "unavailable"}


@dataclass
class Runtime:
    """What the app works with; `config` is replaced whole when routes.yaml is reloaded."""

    config: Config
    store: Store
    metrics: Metrics = field(default_factory=Metrics)
    concurrency: int = 32
    deliver: bool = True  # False: ingest only, a separate `gateway worker` delivers
    config_path: str | None = None  # watched for hot reload when set
    engine: DeliveryEngine | None = None
    clock: Any = time.time


class GatewayHTTPError(HTTPException):
    def __init__(self, status_code: int, error: str, detail: str) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.error = error


def _error_response(request: Request, exc: HTTPException) -> Response[dict[str, str]]:
    code = getattr(exc, "error", None) or _ERROR_CODES.get(exc.status_code, "error")
    detail = exc.detail
    if exc.status_code == 413:
        detail = f"the body is larger than the limit of {MAX_BODY_BYTES // 1024} KiB"
    return Response({"error": code, "detail": str(detail)}, status_code=exc.status_code, headers=exc.headers)


def _internal_error(request: Request, exc: Exception) -> Response[dict[str, str]]:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return Response({"error": "internal_error", "detail": "the gateway failed unexpectedly; the event was not stored, please send it again"}, status_code=500)


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


def _check_token(request: Request, source: Source) -> None:
    if source.token is None:
        return
    given = request.query_params.getall("token", [])
    if not given:  # GO sends the token in the query; the header is read only when it does not
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = [header[7:].strip()]
    if len(given) != 1:
        detail = "add ?token=<your token> to the URL registered in GO" if not given else "send the token once"
        raise GatewayHTTPError(401, "unauthorized", f"missing or repeated token: {detail}")
    if not hmac.compare_digest(given[0].encode("utf-8", "surrogateescape"), source.token.encode()):
        raise GatewayHTTPError(401, "unauthorized", "the token does not match the one configured for this source")


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


def _new_event(source: Source, body: bytes, event: dict[str, Any], routed: RoutingResult, received_at: datetime, config: Config) -> NewEvent:
    deliveries = tuple(
        NewDelivery(
            id=uuid.uuid4().hex,
            route=d.route,
            destination=d.destination,
            body=d.body,
            status=d.status,
            error=d.error or d.skipped,
            ordering_key=d.ordering_key,
        )
        for d in routed.deliveries
    )
    return NewEvent(
        id=uuid.uuid4().hex,
        source=source.name,
        event_type=event["event_id"],
        body=body.decode("utf-8"),
        received_at=received_at.timestamp(),
        config_version=config.version,
        deliveries=deliveries,
        dedupe_key=_dedupe_key(source, body, event, received_at),
        dedupe_window=source.dedupe_window,
    )


# --------------------------------------------------------------------------- handlers


@post("/hooks/{source:str}", request_max_body_size=MAX_BODY_BYTES, status_code=202)
async def ingest(request: Request, source: str) -> Response[dict[str, Any]]:
    runtime: Runtime = request.app.state.runtime
    config = runtime.config
    found = config.sources.get(source)
    if found is None:
        raise GatewayHTTPError(404, "unknown_source", f"no source named '{source}' in routes.yaml; events go to /hooks/{next(iter(config.sources), 'go')}")
    if found.inactive:
        raise GatewayHTTPError(503, "source_not_configured", f"source '{source}' is not configured on the gateway ({found.inactive})")
    address = _client_address(request, found)
    if found.allow_ips and not _in(address, found.allow_ips):
        runtime.metrics.events.labels(source, "forbidden").inc()
        raise GatewayHTTPError(403, "forbidden", f"the address {address} is not in allow_ips for source '{source}'")
    _check_token(request, found)
    body = await request.body()
    event = _parse_event(body)
    received_at = datetime.fromtimestamp(runtime.clock(), UTC)
    routed = route_event(config, event, source=source, received_at=received_at)
    new_event = _new_event(found, body, event, routed, received_at, config)
    try:
        stored = await runtime.store.add_event(new_event)
    except StoreUnavailable as exc:
        log.error("event not stored: %s", exc)
        runtime.metrics.events.labels(source, "store_unavailable").inc()
        raise GatewayHTTPError(503, "store_unavailable", "the gateway could not store the event; send it again later") from None
    if runtime.deliver and runtime.engine and stored.deliveries:
        runtime.engine.notify()
    runtime.metrics.events.labels(source, "duplicate" if stored.duplicate else "accepted").inc()
    if not stored.duplicate:
        for delivery in new_event.deliveries:
            if delivery.status != "pending":  # shadow, skipped or failed: recorded, never sent
                runtime.metrics.deliveries.labels(delivery.destination, delivery.status).inc()
    log.info("event %s %s from %s: %d deliveries%s", stored.id, event["event_id"], source, stored.deliveries, " (duplicate)" if stored.duplicate else "")
    answer = {"event_id": event["event_id"], "id": stored.id, "deliveries": stored.deliveries, "duplicate": stored.duplicate}
    return Response(answer, status_code=200 if stored.duplicate else 202)


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
    return Response({"status": "ready", "config_version": runtime.config.version}, status_code=200)


@get("/metrics")
async def metrics(request: Request) -> Response[bytes]:
    runtime: Runtime = request.app.state.runtime
    runtime.metrics.config.clear()
    runtime.metrics.config.labels(runtime.config.version).set(1)
    try:
        depth = (await runtime.store.stats()).by_status
    except StoreUnavailable:
        depth = {}
    return Response(runtime.metrics.render(depth), media_type="text/plain; version=0.0.4; charset=utf-8")


# --------------------------------------------------------------------------- app


async def _purge_periodically(runtime: Runtime, every_seconds: float = 3600) -> None:
    """Retention: payloads hold personal data (LGPD), so old events are deleted automatically."""
    while True:
        try:
            purged = await runtime.store.purge(runtime.clock() - runtime.config.settings.retention.seconds)
            if purged:
                log.info("retention: purged %d events older than %s", purged, runtime.config.settings.retention)
        except StoreUnavailable as exc:
            log.error("retention purge failed: %s", exc)
        await asyncio.sleep(every_seconds)


def _start_reloader(runtime: Runtime) -> asyncio.Task[None] | None:
    """Watch routes.yaml and templates/, and reload on SIGHUP."""
    if runtime.config_path is None:
        return None

    def swap(new: Config) -> None:
        runtime.config = new
        runtime.metrics.reloads.labels("applied").inc()

    refused = runtime.metrics.reloads.labels("refused").inc
    reloader = ConfigReloader(runtime.config_path, lambda: runtime.config, swap, refused=refused)
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals outside the main thread
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.request)
    return asyncio.create_task(reloader.watch())


def create_app(runtime: Runtime) -> Litestar:
    """The app; its lifespan opens the store and runs the delivery engine."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.store.open()
        async with delivery_client(runtime.concurrency, lambda: runtime.config.egress_allow) as client:
            runtime.engine = DeliveryEngine(runtime.store, lambda: runtime.config, client, runtime.metrics, concurrency=runtime.concurrency, clock=runtime.clock)
            task = asyncio.create_task(runtime.engine.run()) if runtime.deliver else None
            retention = asyncio.create_task(_purge_periodically(runtime))
            watcher = _start_reloader(runtime)
            try:
                yield
            finally:
                retention.cancel()
                if watcher:
                    watcher.cancel()
                if task:
                    await runtime.engine.stop()
                    await task
                await runtime.store.close()

    app = Litestar(
        route_handlers=[ingest, healthz, readyz, metrics],
        lifespan=[lifespan],
        exception_handlers={HTTPException: _error_response, Exception: _internal_error},
        logging_config=None,
    )
    app.state.runtime = runtime
    return app
