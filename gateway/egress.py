"""Where deliveries may go: never to loopback, private, link-local or metadata addresses
unless routes.yaml allows a range explicitly (`settings.egress_allow`).

The check is on the *resolved* addresses, not the URL text, so `http://2130706433/`,
`http://127.1/` and names that resolve inside the network are caught like `127.0.0.1`.
Deliveries resolve names through `CheckedResolver`, so the addresses checked are the ones the
connection uses: a name that answers a public address to a check and a private one to the
connection (DNS rebinding) gets nowhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from gateway.errors import GatewayError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BLOCKED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96",
    )
)


class EgressDenied(GatewayError):
    """The delivery's address is not one the gateway may reach."""


def blocked_reason(address: str, allowed: Iterable[Network]) -> str | None:
    """Why `address` may not be reached, or None if it may."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return None
    for network in BLOCKED:
        if ip.version == network.version and ip in network:
            return f"{ip} is in the private or reserved range {network}; allow it in settings.egress_allow if you mean it"
    return None


async def check_url(url: str, allowed: Iterable[Network], resolve: bool = True) -> None:
    """Raise EgressDenied unless every address `url`'s host resolves to may be reached.

    With `resolve=False` only the scheme and IP literals are checked: the caller connects
    through CheckedResolver, which checks names at connection time.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressDenied(f"only http:// and https:// addresses can receive deliveries, not '{parts.scheme}:'")
    allowed = tuple(allowed)
    literal = _ip_literal(parts.hostname)
    if literal is not None:  # no resolver round trip for an address
        reason = blocked_reason(literal, allowed)
        if reason:
            raise EgressDenied(f"{parts.hostname} -> {reason}")
        return
    if not resolve and not _numeric(parts.hostname):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return  # unresolvable now: the connection attempt fails and is retried like any outage
    for info in infos:
        reason = blocked_reason(str(info[4][0]), allowed)
        if reason:
            raise EgressDenied(f"{parts.hostname} -> {reason}")


def _numeric(host: str) -> bool:
    """Odd numeric forms like 127.1, 2130706433 or 0x7f.1: resolved here, whatever the caller."""
    return all(c in "0123456789abcdefx.:[]" for c in host.lower())


def _ip_literal(host: str) -> str | None:
    """The host if it is written as a standard IP address (odd forms go through the resolver)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name when any of its addresses may not be reached."""

    def __init__(self, allowed: Callable[[], Iterable[Network]], base: AbstractResolver | None = None) -> None:
        self._allowed = allowed
        self._resolver = base or ThreadedResolver()  # created inside the event loop

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        allowed = tuple(self._allowed())
        for result in results:
            reason = blocked_reason(result["host"], allowed)
            if reason:
                raise EgressDenied(f"{host} -> {reason}")
        return results

    async def close(self) -> None:
        await self._resolver.close()
