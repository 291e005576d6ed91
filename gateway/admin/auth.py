"""Who may use the admin API and the console, and how a browser proves it is still them.

- A script sends `Authorization: Bearer <GATEWAY_ADMIN_TOKEN>`. A browser never adds that header
  by itself, so such requests need no CSRF token.
- A person logs in to the console with the same token and gets a session cookie (HttpOnly,
  SameSite=Strict, Secure behind https), signed with a key derived from the token: it holds on
  every replica that has the token, and a new token ends every session. Each session has its
  own CSRF token; a state-changing request that the cookie authenticates must carry it in the
  `X-CSRF-Token` header (the console's pages send it with every htmx request), else 403.
- A wrong token is answered slowly, more slowly with each failure from the same address.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.service.http_errors import GatewayHTTPError

SESSION_COOKIE = "gateway_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
FAILURE_DELAY_SECONDS = 0.5  # per recent failure from the same address
MAX_FAILURE_DELAY_SECONDS = 8.0
FAILURE_MEMORY_SECONDS = 15 * 60
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Session:
    csrf: str
    started_at: float


@dataclass
class FailedLogins:
    """Recent failures per address: each one adds to the wait before the next answer."""

    failures: dict[str, list[float]] = field(default_factory=dict)

    def delay(self, address: str, now: float) -> float:
        recent = [t for t in self.failures.get(address, []) if now - t < FAILURE_MEMORY_SECONDS]
        self.failures[address] = recent
        return min(FAILURE_DELAY_SECONDS * len(recent), MAX_FAILURE_DELAY_SECONDS)

    def record(self, address: str, now: float) -> None:
        self.failures.setdefault(address, []).append(now)
        if len(self.failures) > 10_000:  # a scan from many addresses must not grow memory forever
            self.failures.pop(next(iter(self.failures)))


class AdminAuth:
    """The admin token, the sessions it signs and the failures it has seen."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        key = hmac.new(self._token, b"gateway console session", hashlib.sha256).hexdigest()
        self._sessions = URLSafeTimedSerializer(key, salt="console-session")
        self.failed = FailedLogins()

    def token_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._token)

    def new_session(self) -> str:
        """A session cookie's value: signed, with a fresh CSRF token inside."""
        return self._sessions.dumps({"csrf": secrets.token_urlsafe(24), "at": time.time()})

    def session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:  # also an expired one (SignatureExpired is a BadSignature)
            return None
        return Session(csrf=str(data["csrf"]), started_at=float(data["at"]))

    async def refuse(self, address: str, detail: str) -> GatewayHTTPError:
        """Wait as long as this address's recent failures say, then the 401 to raise."""
        now = time.monotonic()
        await asyncio.sleep(self.failed.delay(address, now))
        self.failed.record(address, now)
        return GatewayHTTPError(401, "unauthorized", detail)


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client else "unknown"


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


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
        if not auth.token_matches(given):
            raise await auth.refuse(client_address(connection), "the admin token does not match GATEWAY_ADMIN_TOKEN")
        return
    session = auth.session(connection.cookies.get(SESSION_COOKIE))
    if session is None:
        raise GatewayHTTPError(401, "unauthorized", "log in at /console/login, or send Authorization: Bearer <GATEWAY_ADMIN_TOKEN>")
    connection.state.session = session
    if connection.scope.get("method", "GET") not in _SAFE_METHODS:
        sent = connection.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), session.csrf.encode()):
            raise GatewayHTTPError(403, "csrf_missing", f"this request changes something and has no valid {CSRF_HEADER} header; reload the page and try again")
