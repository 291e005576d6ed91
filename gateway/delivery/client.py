"""The one HTTP client every delivery shares."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway.delivery.egress import CheckedResolver, Network, checked_socket


def delivery_client(concurrency: int, egress_allow: Callable[[], Iterable[Network]] = tuple) -> httpx.AsyncClient:
    """The one HTTP client every delivery shares: httpx's API on aiohttp's connection pool.

    httpcore's pool polls every pooled socket on each request (encode/httpcore#924, #928),
    which made it three quarters of the engine's CPU time in bench_ingest; aiohttp's pool does
    not. Names are resolved through the egress guard (`egress_allow()` gives the private ranges
    allowed now), so the checked address is the connected one. Redirects are never followed
    and nothing is read from the environment (proxies).
    """
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=httpx.create_ssl_context(trust_env=False),
            resolver=CheckedResolver(egress_allow),
            socket_factory=checked_socket(egress_allow),  # IP literals skip the resolver
        )
        # No cookie jar: aiohttp's keeps a receiver's cookies and sends them with later deliveries
        return aiohttp.ClientSession(connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())

    client = httpx.AsyncClient(transport=AiohttpTransport(client=session, trust_env=False), follow_redirects=False, trust_env=False)
    client._cookies = _NoCookies()  # private on purpose: httpx's setter would wrap it in a plain Cookies
    return client


class _NoCookies(httpx.Cookies):
    """A receiver's cookies never reach another delivery. httpx has no switch for it: it copies
    every answer's cookies into the client's jar, even with a policy that refuses them all,
    and that was a tenth of the engine's CPU (bench/README.md)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass
