"""Who may use the admin API and the console, and how a browser proves it is still them.

- A script sends `Authorization: Bearer <GATEWAY_ADMIN_TOKEN>`. A browser never adds that header
  by itself, so such requests need no CSRF token.
- A person logs in to the console with the same token and gets a session cookie (HttpOnly,
  SameSite=Strict, Secure behind https), signed with a key derived from the token, naming a
  session recorded in the store: every replica reads the same sessions, a logout (or "Encerrar"
  on the console's sessions page) ends it everywhere, and a new token ends every session. Each session has its
  own CSRF token; a state-changing request that the cookie authenticates must carry it in the
  `X-CSRF-Token` header (the console's pages send it with every htmx request), else 403.
- A shop's token (gateway/admin/tokens.py) sees only that shop: the guard leaves its `Access` in
  the request's state, and every admin function reads what it may show from it.
- A wrong token is answered slowly, more slowly with each failure from the same address, counted
  in the store: on several replicas an attacker gets no more tries than on one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.admin.tokens import AdminTokens
from gateway.service.http_errors import GatewayHTTPError
from gateway.store import Store, StoreUnavailable
from gateway.store.base import ConsoleSession

SESSION_COOKIE = "gateway_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
FAILURE_DELAY_SECONDS = 0.5  # per recent failure from the same address
MAX_FAILURE_DELAY_SECONDS = 8.0
FAILURE_MEMORY_SECONDS = 15 * 60
MAX_AGENT_CHARS = 160
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Access:
    """What a token may see: one shop's (tenant's) part, or the whole gateway (None)."""

    tenant: str | None = None

    def sees(self, tenant: str | None) -> bool:
        return self.tenant is None or self.tenant == tenant


EVERYTHING = Access()


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    started_at: float
    access: Access = EVERYTHING


class AdminAuth:
    """The admin token, the sessions it signs, and the failed logins, kept in the store: a
    logout ends a session on every replica, and every replica slows an address that failed."""

    def __init__(self, tokens: AdminTokens | str, store: Store, clock: Callable[[], float] = time.time) -> None:
        tokens = AdminTokens(tokens) if isinstance(tokens, str) else tokens
        self._tokens = [(t.encode(), EVERYTHING) for t in [tokens.gateway] if t] + [(t.encode(), Access(shop)) for shop, t in sorted(tokens.shops.items())]
        # Signed with every token: a changed or removed token ends every session.
        key = hmac.new(b"\0".join(t for t, _ in self._tokens), b"gateway console session", hashlib.sha256).hexdigest()
        self._sessions = URLSafeTimedSerializer(key, salt="console-session")
        self._store = store
        self._clock = clock

    def access_for(self, given: str) -> Access | None:
        """What `given` may see; None when it is no admin token. Every token is compared, each
        in constant time, so the time taken says nothing about which one came close."""
        encoded = given.encode("utf-8", "surrogateescape")
        found = None
        for token, access in self._tokens:
            if hmac.compare_digest(encoded, token):
                found = access
        return found

    async def new_session(self, address: str, agent: str, access: Access = EVERYTHING) -> str:
        """A session cookie's value: signed, naming a session recorded in the store (with the
        shop its token sees), with a fresh CSRF token inside."""
        now = self._clock()
        session = ConsoleSession(secrets.token_urlsafe(16), now, address, agent[:MAX_AGENT_CHARS], tenant=access.tenant)
        await self._store.add_session(session, forget_before=now - SESSION_SECONDS)
        return self._sessions.dumps({"sid": session.id, "csrf": secrets.token_urlsafe(24), "at": now})

    async def session(self, cookie: str | None) -> Session | None:
        """The session a cookie names, while it is signed by this token, younger than
        SESSION_SECONDS and not ended (logout) on any replica."""
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:  # also an expired one (SignatureExpired is a BadSignature)
            return None
        if not isinstance(data, dict) or "sid" not in data:  # a cookie of an older version: log in again
            return None
        recorded = await self._store.get_session(str(data["sid"]))
        if recorded is None or recorded.ended_at is not None:
            return None
        return Session(id=recorded.id, csrf=str(data["csrf"]), started_at=float(data["at"]), access=Access(recorded.tenant))

    async def end(self, session_id: str, access: Access = EVERYTHING) -> bool:
        """End a session this access may see (a shop's token: its own shop's only)."""
        recorded = await self._store.get_session(session_id)
        if recorded is None or not access.sees(recorded.tenant):
            return False
        return await self._store.end_session(session_id, self._clock())

    async def active(self, access: Access = EVERYTHING) -> list[ConsoleSession]:
        return [s for s in await self._store.active_sessions(since=self._clock() - SESSION_SECONDS) if access.sees(s.tenant)]

    async def delay(self, address: str) -> float:
        """How long to wait before answering this address: FAILURE_DELAY_SECONDS per failure
        in the last FAILURE_MEMORY_SECONDS, from any replica, up to MAX_FAILURE_DELAY_SECONDS."""
        failures = await self._store.login_failures(address, since=self._clock() - FAILURE_MEMORY_SECONDS)
        return min(FAILURE_DELAY_SECONDS * failures, MAX_FAILURE_DELAY_SECONDS)

    async def refuse(self, address: str, detail: str) -> GatewayHTTPError:
        """Note this failure, wait as long as the earlier ones from this address say, then the
        401 to raise. Noted first: tries sent in parallel each wait longer than the one before."""
        try:
            now = self._clock()
            await self._store.record_login_failure(address, now, forget_before=now - FAILURE_MEMORY_SECONDS)
            earlier = await self._store.login_failures(address, since=now - FAILURE_MEMORY_SECONDS) - 1
            await asyncio.sleep(min(FAILURE_DELAY_SECONDS * earlier, MAX_FAILURE_DELAY_SECONDS))
        except StoreUnavailable:  # no store to count in: the longest wait, never none
            await asyncio.sleep(MAX_FAILURE_DELAY_SECONDS)
        return GatewayHTTPError(401, "unauthorized", detail)


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client else "unknown"


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def access_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Access:
    """What the request's token or session may see, as `require_admin` found it. No default: a
    route that skipped the guard fails rather than shows everything."""
    return connection.state.access  # type: ignore[no-any-return]


def admin_auth(connection: ASGIConnection[Any, Any, Any, Any]) -> AdminAuth:
    """The app's AdminAuth; 404 when no admin token is configured (the admin surface is off)."""
    auth: AdminAuth | None = connection.app.state.admin
    if auth is None:
        raise GatewayHTTPError(404, "admin_off", "the admin API and console are off: set GATEWAY_ADMIN_TOKEN and restart the gateway")
    return auth


async def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of every admin route: a valid Bearer token, or a session cookie (with the session's
    CSRF token on a state-changing request). The session, if any, is left in the scope."""
    auth = admin_auth(connection)
    given = bearer_token(connection)
    if given is not None:
        access = auth.access_for(given)
        if access is None:
            raise await auth.refuse(client_address(connection), "the admin token matches neither GATEWAY_ADMIN_TOKEN nor a shop's admin token")
        connection.state.access = access
        return
    session = await auth.session(connection.cookies.get(SESSION_COOKIE))
    if session is None:
        raise GatewayHTTPError(401, "unauthorized", "log in at /console/login, or send Authorization: Bearer <GATEWAY_ADMIN_TOKEN>")
    connection.state.session = session
    connection.state.access = session.access
    if connection.scope.get("method", "GET") not in _SAFE_METHODS:
        sent = connection.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), session.csrf.encode()):
            raise GatewayHTTPError(403, "csrf_missing", f"this request changes something and has no valid {CSRF_HEADER} header; reload the page and try again")
