"""The one HTTP client every delivery shares: aiohttp's connection pool, used directly.

Deliveries went through httpx's API on aiohttp's pool (httpx-aiohttp) until bench/README.md
measured the layer: 444 µs of CPU per request against 125 µs for aiohttp alone, on uvloop, to
the same local nginx. That difference was a third of the delivery child's CPU. The address is
still parsed by httpx (`delivery/egress.py` judges the host as httpx reads it) and handed to
aiohttp already normalised, so the guard and the connection agree on the host.

Names are resolved through the egress guard (`egress_allow()` gives the private ranges allowed
now), and every socket is checked when it connects, so the checked address is the connected
one. Redirects are never followed, nothing is read from the environment (proxies), and a
receiver's cookies never reach another delivery.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Iterable
from types import TracebackType

import aiohttp
import httpx
import yarl

from gateway.delivery.egress import CheckedResolver, Network, checked_socket
from gateway.destinations.base import OutgoingRequest

MAX_RESPONSE_BYTES = 64 * 1024
KEEPALIVE_SECONDS = 5.0
USER_AGENT = "go-webhook-gateway"


class UnusableURL(Exception):
    """The address is not one an HTTP client can send to (no http/https, no host)."""


# What went wrong when no answer came, each under its own name: in `last_error` (the reason
# starts with the name), the console and the metrics' `failure` label. A shop owner told
# "connection refused" looks at the receiver; told "DNS failure", at the address.
CONNECTION_REFUSED, DNS_FAILURE, TLS_ERROR, TIMEOUT, CONNECTION_CLOSED, CONNECTION_ERROR = (
    "connection_refused", "dns_failure", "tls_error", "timeout", "connection_closed", "connection_error",
)
FAILURE_NAMES = {
    CONNECTION_REFUSED: "connection refused", DNS_FAILURE: "DNS failure", TLS_ERROR: "TLS error",
    TIMEOUT: "timeout", CONNECTION_CLOSED: "connection closed", CONNECTION_ERROR: "connection error",
}


class SendFailed(Exception):
    """No complete answer: the connection failed or broke. Worth trying again later.
    `failure` is one of FAILURE_NAMES; the message starts with its name."""

    def __init__(self, failure: str, detail: str) -> None:
        super().__init__(f"{FAILURE_NAMES[failure]}: {detail}")
        self.failure = failure


Answer = tuple[int, dict[str, str], str]  # status, headers (lower-case names), body kept


class DeliveryClient:
    def __init__(self, egress_allow: Callable[[], Iterable[Network]] = tuple) -> None:
        self._egress_allow = egress_allow
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use: a ClientSession belongs to the running event loop.
        connector = aiohttp.TCPConnector(
            # No pool-wide cap: a shop's hanging CRM would hold connections another shop's
            # request then waits for. The engine bounds requests per shop and per destination.
            limit=0,
            keepalive_timeout=KEEPALIVE_SECONDS,
            ssl=httpx.create_ssl_context(trust_env=False),
            resolver=CheckedResolver(self._egress_allow),
            socket_factory=checked_socket(self._egress_allow),  # IP literals skip the resolver
        )
        self._session = aiohttp.ClientSession(
            connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": USER_AGENT}, auto_decompress=False
        )
        return self._session

    async def send(self, request: OutgoingRequest, timeout: float) -> Answer:
        """Send one request and keep at most MAX_RESPONSE_BYTES of the answer (a huge answer
        is cut off). UnusableURL when the address cannot be sent to, SendFailed when no
        complete answer came; the caller bounds the whole exchange in time."""
        session = self._session or self._open()
        url = _normalised(request.url)
        try:
            async with session.request(
                request.method, url, headers=request.headers, data=request.body.encode(), allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                kept = bytearray()
                while len(kept) < MAX_RESPONSE_BYTES and (chunk := await response.content.read(MAX_RESPONSE_BYTES - len(kept))):
                    kept += chunk
                headers = {k.lower(): v for k, v in response.headers.items()}
                return response.status, headers, kept.decode("utf-8", "replace")
        except TimeoutError:
            raise  # aiohttp's own timeouts: the caller's "no complete answer within ..."
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise UnusableURL(str(exc)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise failure_of(exc, url) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> DeliveryClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        await self.aclose()


def failure_of(exc: Exception, url: yarl.URL) -> SendFailed:
    """The most specific name for a connection that gave no answer (most specific type first:
    aiohttp's DNS and certificate errors are connector errors too)."""
    where = f"{url.host}:{url.port}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return SendFailed(DNS_FAILURE, f"the name {url.host} does not resolve ({exc.os_error.strerror or exc.os_error})")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        return SendFailed(TLS_ERROR, f"the certificate of {where} is not trusted ({getattr(error, 'verify_message', None) or error})")
    if isinstance(exc, (aiohttp.ClientConnectorSSLError, aiohttp.ClientSSLError, ssl.SSLError)):
        return SendFailed(TLS_ERROR, f"the TLS handshake with {where} failed ({exc})")
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ConnectionRefusedError) or isinstance(exc, ConnectionRefusedError):
        return SendFailed(CONNECTION_REFUSED, f"nothing accepts connections at {where}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError, ConnectionResetError, aiohttp.ClientPayloadError)):
        return SendFailed(CONNECTION_CLOSED, f"{where} closed the connection before its answer was complete")
    return SendFailed(CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")


@functools.lru_cache(maxsize=4096)  # every delivery to a destination sends to the same URL
def _normalised(url: str) -> yarl.URL:
    """The address as httpx reads it (the host the egress guard judged), for aiohttp as is."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnusableURL(str(exc)) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnusableURL(f"'{parsed.scheme}://' is not http or https" if parsed.scheme not in ("http", "https") else "no host in the address")
    return yarl.URL(str(parsed), encoded=True)


def delivery_client(egress_allow: Callable[[], Iterable[Network]] = tuple) -> DeliveryClient:
    """The one HTTP client every delivery shares (an async context manager)."""
    return DeliveryClient(egress_allow)
