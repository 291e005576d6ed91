"""The operator console, under /console: server-rendered pages in Brazilian Portuguese.

Pages are Jinja templates (gateway/admin/templates/) filled by the admin API's own functions
(api.py), so the console shows exactly what the API answers. htmx (vendored in static/) swaps
fragments for filters, live updates and replays; the pages carry no inline script, and the
Content-Security-Policy forbids any, and anything from outside the gateway.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from gateway.admin import api, schemas
from gateway.admin.auth import SESSION_COOKIE, SESSION_SECONDS, access_of, admin_auth, client_address, require_admin
from gateway.delivery.client import CONNECTION_CLOSED, CONNECTION_ERROR, CONNECTION_REFUSED, DNS_FAILURE, FAILURE_NAMES, TIMEOUT, TLS_ERROR
from gateway.service.http_errors import GatewayHTTPError
from gateway.store import DeliveryFilter, EventQuery
from gateway.store.base import DEAD, STATUSES

log = logging.getLogger("gateway.admin")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")  # the console shows times as GO's users read them
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def page(request: Request[Any, Any, Any], name: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Template:
    session = getattr(request.state, "session", None)
    context.setdefault("current", request.url.path)
    context.setdefault("shop", session.access.tenant if session else None)  # a shop's login: its name in the header
    return Template(f"{name}.html", context={"csrf": session.csrf if session else "", "statuses": STATUSES, **context}, status_code=status_code, headers=headers)


def replay_page(request: Request[Any, Any, Any], job: schemas.ReplayJob) -> Template:
    """A replay's progress; once it ended, the page around it is told to show the deliveries anew."""
    return page(request, "replay", job=job, headers={"HX-Trigger": "deliveries-changed"} if job.state != "running" else None)


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


# --------------------------------------------------------------------------- login


@get("/login", name="console_login")
async def login_page(request: Request[Any, Any, Any], next: FromQuery[str] = "/console") -> Template:
    admin_auth(request)
    return page(request, "login", next=_safe_next(next), error=None)


@post("/login")
async def login(request: Request[Any, Any, Any], data: URLEncodedBody[dict[str, str]]) -> Response[Any]:
    auth = admin_auth(request)
    target = _safe_next(data.get("next", "/console"))
    access = auth.access_for(data.get("token", ""))
    if access is None:
        await auth.refuse(client_address(request), "wrong token")  # slowed: each failure adds to the wait
        log.warning("console login refused for %s", client_address(request))
        return page(request, "login", status_code=401, next=target, error="Token inválido. Confira o valor de GATEWAY_ADMIN_TOKEN (ou o token da sua loja).")
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    value = await auth.new_session(client_address(request), request.headers.get("user-agent", ""), access)
    cookie = Cookie(key=SESSION_COOKIE, value=value, path="/", httponly=True, samesite="strict", secure=secure, max_age=SESSION_SECONDS)
    log.info("console login for %s (%s)", client_address(request), f"shop {access.tenant}" if access.tenant else "every shop")
    return Redirect(target, status_code=303, cookies=[cookie])


def _safe_next(target: str) -> str:
    """Only a path of the console itself: a login link must not send anyone elsewhere."""
    return target if target.startswith("/console") and "//" not in target and "\\" not in target else "/console"


@post("/logout", guards=[require_admin])
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    """Ends the session in the store (for every replica), not only the browser's cookie."""
    session = getattr(request.state, "session", None)
    if session is not None:
        await admin_auth(request).end(session.id)
        log.info("console logout for %s", client_address(request))
    response: Response[Any] = Response(b"", status_code=204, headers={"HX-Redirect": "/console/login"})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --------------------------------------------------------------------------- pages


@get("", guards=[require_admin])
async def overview(request: Request[Any, Any, Any], shop: FromQuery[str] = "") -> Template:
    """The whole gateway's overview, or one shop's (`?shop=`); a shop's login sees its own only."""
    access = access_of(request)
    summary = await api.overview(api.runtime_of(request), api.shop_filter(access, shop), access)
    return page(request, "overview", overview=summary, chart=_chart_data(summary), refresh="/console" + (f"?shop={quote(shop)}" if shop and access.tenant is None else ""))


def _chart_data(summary: schemas.Overview) -> str:
    return json.dumps(
        {
            "labels": [datetime.fromtimestamp(m.start, SAO_PAULO).strftime("%H:%M") for m in summary.minutes],
            "events": [m.events for m in summary.minutes],
            "delivered": [m.delivered for m in summary.minutes],
            "failed": [m.retried + m.dead for m in summary.minutes],
        }
    )


@get("/events", guards=[require_admin])
async def events(
    request: Request[Any, Any, Any],
    event_type: FromQuery[str] = "",
    source: FromQuery[str] = "",
    status: FromQuery[str] = "",
    destination: FromQuery[str] = "",
    code: FromQuery[str] = "",
    q: FromQuery[str] = "",
    since: FromQuery[str] = "",
    until: FromQuery[str] = "",
    before: FromQuery[str] = "",
) -> Template:
    runtime = api.runtime_of(request)
    if status and status not in STATUSES:
        raise GatewayHTTPError(400, "unknown_status", f"'{status}' is not a delivery status")
    start, end = _local_time(since, "since"), _local_time(until, "until")
    access = access_of(request)
    query = EventQuery(50, start, end, event_type or None, source or None, status or None, destination or None, code or None, q or None, before or None, tenant=access.tenant)
    found = await api.list_events(runtime, query)
    config = api.config_in_view(runtime, access)
    filters = {"event_type": event_type, "source": source, "status": status, "destination": destination, "code": code, "q": q, "since": since, "until": until}
    next_link = "/console/events?" + "&".join(f"{k}={quote(v)}" for k, v in {**filters, "before": found.next or ""}.items() if v) if found.next else None
    event_types = sorted({e for route in config.routes for e in (route.event_ids or ())})
    return page(
        request, "events", page=found, filters=filters, next_link=next_link, live=not before, event_types=event_types,
        sources=list(config.sources), destinations=list(config.destinations),
        rotating=any(len(s.tokens) > 1 for s in config.sources.values()),  # a token column while a source's token is being rotated
    )


def _local_time(text: str, name: str) -> float | None:
    """A time typed in the filter (São Paulo's clock, as the page shows times) as unix seconds."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=SAO_PAULO).timestamp()
    except ValueError:
        raise GatewayHTTPError(400, "bad_time", f"'{text}' is not a date and time like 2026-12-01T14:30 ({name})") from None


@get("/events/{event_id:str}", guards=[require_admin])
async def event(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Template:
    detail = await api.load_event(request, event_id, unmasked=False)
    return page(request, "event", event=detail)


@post("/events/{event_id:str}/reveal", guards=[require_admin])
async def reveal(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Template:
    """Personal data unmasked: an explicit action, and a logged one (the fact, not the data)."""
    detail = await api.load_event(request, event_id, unmasked=True)
    return page(request, "payload", event=detail)


@get("/deliveries", guards=[require_admin])
async def deliveries(request: Request[Any, Any, Any], status: FromQuery[str] = DEAD) -> Template:
    if status not in STATUSES:
        raise GatewayHTTPError(400, "unknown_status", f"'{status}' is not a delivery status; use one of {', '.join(STATUSES)}")
    runtime = api.runtime_of(request)
    tenant = access_of(request).tenant
    groups = await api.dead_groups(runtime, tenant) if status == DEAD else []
    dead_total = await runtime.store.count_deliveries(DeliveryFilter(statuses=(DEAD,), tenant=tenant)) if status == DEAD else 0
    listed = await api.delivery_page(runtime, DeliveryFilter(statuses=(status,), tenant=tenant), 100) if status != DEAD else None
    return page(request, "deliveries", status=status, groups=groups, listed=listed, dead_total=dead_total, grouped=sum(g.count for g in groups))


@post("/replays", guards=[require_admin])
async def replay(request: Request[Any, Any, Any], data: URLEncodedBody[dict[str, str]]) -> Template:
    ids = [i for i in data.get("ids", "").split(",") if i]
    statuses = [data.get("status", DEAD)] if not ids else list(api.RESENDABLE)  # a button on a delivery resends it whatever its end
    ask = schemas.ReplayRequest(ids=ids, statuses=statuses, destination=data.get("destination") or None, rerender=data.get("rerender") == "1")
    return replay_page(request, api.start_replay(request, ask))


@get("/replays/{job_id:str}", guards=[require_admin])
async def replay_progress(request: Request[Any, Any, Any], job_id: FromPath[str]) -> Template:
    job = api.jobs_of(request).get(job_id, access_of(request).tenant)
    if job is None:
        raise GatewayHTTPError(404, "unknown_replay", f"no replay has the id '{job_id}'")
    return replay_page(request, job)


@get("/playground", guards=[require_admin])
async def playground(request: Request[Any, Any, Any], sample: FromQuery[str] = "") -> Template:
    config = api.config_in_view(api.runtime_of(request), access_of(request))
    samples = _samples(config.path(config.settings.samples))
    chosen = samples.get(sample) or next(iter(samples.values()), '{\n  "event_id": "ORDER_CREATED",\n  "data": {}\n}')
    return page(request, "playground", samples=list(samples), sample=sample, text=chosen, sources=list(config.sources))


def _samples(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {path.name: path.read_text("utf-8") for path in sorted(folder.glob("*.json"))[:100] if path.stat().st_size < 1024 * 1024}


def _playground_request(data: dict[str, str]) -> schemas.PlaygroundRequest:
    try:
        event = json.loads(data.get("event", ""))
    except ValueError as exc:
        raise GatewayHTTPError(400, "invalid_json", f"o evento não é JSON válido: {exc}") from None
    if not isinstance(event, dict):
        raise GatewayHTTPError(400, "not_an_object", "o evento precisa ser um objeto JSON, como {\"event_id\": \"ORDER_CREATED\", \"data\": {...}}")
    return schemas.PlaygroundRequest(event=event, source=data.get("source") or None)


@post("/playground/dry-run", guards=[require_admin])
async def playground_dry_run(request: Request[Any, Any, Any], data: URLEncodedBody[dict[str, str]]) -> Template:
    try:
        result = api.dry_run_of(api.runtime_of(request), _playground_request(data), access_of(request))
    except GatewayHTTPError as exc:
        return page(request, "verdicts", result=None, error=exc.detail)
    return page(request, "verdicts", result=result, error=None)


@post("/playground/send", guards=[require_admin])
async def playground_send(request: Request[Any, Any, Any], data: URLEncodedBody[dict[str, str]]) -> Template:
    try:
        sent = await api.send_event(request, _playground_request(data))
    except GatewayHTTPError as exc:
        return page(request, "sent", sent=None, error=exc.detail)
    return page(request, "sent", sent=sent, error=None)


@get("/routes", guards=[require_admin])
async def routes(request: Request[Any, Any, Any]) -> Template:
    return page(request, "routes", routes=await api.routes_in_force(api.runtime_of(request), access_of(request)))


@get("/sessions", guards=[require_admin])
async def sessions(request: Request[Any, Any, Any]) -> Template:
    current = getattr(request.state, "session", None)
    return page(request, "sessions", sessions=await api.session_list(request), this_session=current.id if current else None)


@post("/sessions/{session_id:str}/end", guards=[require_admin])
async def end_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[Any]:
    """Ends another login (a lost laptop, a colleague who left); ending one's own logs out."""
    await api.end_login(request, session_id)
    current = getattr(request.state, "session", None)
    target = "/console/login" if current is not None and current.id == session_id else "/console/sessions"
    return Response(b"", status_code=204, headers={"HX-Redirect": target})


# --------------------------------------------------------------------------- errors and headers


def _refused(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Not logged in: to the login page (htmx is told to go there itself); other errors as JSON."""
    if exc.status_code == 401:
        target = "/console/login?next=" + quote(request.url.path)
        if _is_htmx(request):
            return Response(b"", status_code=401, headers={"HX-Redirect": target})
        return Redirect(target, status_code=303)
    error = getattr(exc, "error", None) or "error"
    return Response({"error": error, "detail": str(exc.detail)}, status_code=exc.status_code, headers={**SECURITY_HEADERS, **(exc.headers or {})})


async def _secure(response: Response[Any]) -> Response[Any]:
    response.headers.update(SECURITY_HEADERS)
    return response


def template_filters() -> dict[str, Any]:
    """What the templates format with: dates in São Paulo's time, statuses in Portuguese."""
    def when(timestamp: float | None) -> str:
        return datetime.fromtimestamp(timestamp, SAO_PAULO).strftime("%d/%m/%Y %H:%M:%S") if timestamp else "—"

    def as_json(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, indent=2)

    def pretty_body(body: str | None) -> str:
        if body is None:
            return "—"
        try:
            return json.dumps(json.loads(body), ensure_ascii=False, indent=2)
        except ValueError:
            return body

    def status_pt(status: str, count: int = 1) -> str:
        return (STATUS_PT if count == 1 else STATUS_PT_PLURAL).get(status, status)

    def failure_pt(error: str | None) -> str:
        """Why no answer came, in Portuguese, from the name the error starts with ("" if none)."""
        name = (error or "").split(":", 1)[0]
        return next((label for failure, label in FAILURE_PT.items() if FAILURE_NAMES[failure] == name), "")

    return {"when": when, "as_json": as_json, "pretty_body": pretty_body, "status_pt": status_pt, "state_pt": STATE_PT.get, "failure_pt": failure_pt}


STATUS_PT = {"pending": "pendente", "sending": "enviando", "delivered": "entregue", "dead": "falhou", "failed": "erro no template", "skipped": "ignorada", "shadow": "sombra"}
STATUS_PT_PLURAL = {**STATUS_PT, "pending": "pendentes", "delivered": "entregues", "skipped": "ignoradas", "failed": "com erro no template"}
FAILURE_PT = {
    CONNECTION_REFUSED: "Conexão recusada", DNS_FAILURE: "Endereço não encontrado (DNS)", TLS_ERROR: "Erro de certificado (TLS)",
    TIMEOUT: "Sem resposta a tempo", CONNECTION_CLOSED: "Conexão interrompida", CONNECTION_ERROR: "Erro de conexão",
}
STATE_PT = {"ok": "funcionando", "circuit_open": "pausado (muitas falhas)", "stopped": "parado (410 Gone)", "inactive": "inativo"}

console = Router(
    path="/console",
    route_handlers=[login_page, login, logout, sessions, end_session, overview, events, event, reveal, deliveries, replay, replay_progress, playground, playground_dry_run, playground_send, routes],
    exception_handlers={HTTPException: _refused},
    after_request=_secure,
    include_in_schema=False,
)

__all__ = ["STATIC", "TEMPLATES", "console", "template_filters"]
