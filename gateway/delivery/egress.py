"""Where deliveries may go: only to addresses reachable on the internet, unless routes.yaml
allows a private range explicitly (`settings.egress_allow`).

Three checks, each on what the connection will really use, never on the URL as written:

- `url_problem`: the address parsed by the HTTP client's own parser (httpx), so a host written
  with ideographic dots (`127。0。0。1`) is judged as the `127.0.0.1` the client connects to.
  Addresses that cannot work (credentials in the URL, a host that is not valid IDNA) are refused
  with a plain reason instead of failing later in the client.
- `CheckedResolver`: every address a name resolves to, when the connection resolves it, so a name
  that answers a public address to a check and a private one to the connection (DNS rebinding)
  gets nowhere.
- `checked_socket`: the address each socket is about to connect to. aiohttp calls no resolver for
  an IP literal, so this is the last word for every form the checks above did not foresee.

An address is refused when it is not globally reachable (Python's `is_global`, completed with
the ranges it misses: multicast, site-local, IPv4-compatible, local-use NAT64) or when it wraps an
IPv4 address that is not (IPv4-mapped, NAT64 and 6to4 are judged by the address they wrap;
Teredo and IPv4-compatible forms are refused outright).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable

import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from gateway.errors import GatewayError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Named so a refusal says what the address is; most specific first. Anything else that is not
# `is_global` is refused too, as "not reachable on the internet".
_NAMED_RANGES: tuple[tuple[Network, str], ...] = tuple(
    sorted(
        ((ipaddress.ip_network(cidr), kind) for cidr, kind in (
            ("0.0.0.0/8", "'this network'"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "carrier-grade NAT"),
            ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local (cloud metadata)"), ("172.16.0.0/12", "private"),
            ("192.0.0.0/24", "IETF protocol"), ("192.0.2.0/24", "documentation"), ("192.88.99.0/24", "6to4 relay"),
            ("192.168.0.0/16", "private"), ("198.18.0.0/15", "benchmarking"), ("198.51.100.0/24", "documentation"),
            ("203.0.113.0/24", "documentation"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
            ("::/128", "unspecified"), ("::1/128", "loopback"), ("::/96", "IPv4-compatible (deprecated)"),
            ("64:ff9b:1::/48", "local-use NAT64"), ("100::/64", "discard-only"),
            ("2001::/32", "Teredo tunnel"), ("2001::/23", "IETF protocol"), ("2001:db8::/32", "documentation"),
            ("3fff::/20", "documentation"), ("5f00::/16", "segment routing"), ("fc00::/7", "unique local (private)"),
            ("fe80::/10", "link-local"), ("fec0::/10", "site-local (deprecated)"), ("ff00::/8", "multicast"),
        )),
        key=lambda pair: -pair[0].prefixlen,
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_TEREDO = ipaddress.ip_network("2001::/32")
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?\.?")


class EgressDenied(GatewayError):
    """The delivery's address is not one the gateway may reach."""


class UnusableAddress(EgressDenied):
    """The delivery's address cannot work, whatever the network (credentials in it, a bad host)."""


# --------------------------------------------------------------------------- addresses


def blocked_reason(address: str, allowed: Iterable[Network]) -> str | None:
    """Why `address` (an IP address as text) may not be reached, or None if it may."""
    ip: IPAddress = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # the same endpoint, reached over IPv6 sockets
    if any(ip.version == network.version and ip in network for network in allowed):
        return None
    fix = "allow its range in settings.egress_allow if you mean it"
    wrapped = _wrapped_ipv4(ip)
    if wrapped is not None:
        form, inner = wrapped
        if form in ("Teredo tunnel", "IPv4-compatible (deprecated)"):
            return f"{ip} is a {form} address wrapping {inner}, which deliveries never use"
        inner_kind = _not_global_kind(inner)
        return f"{ip} is a {form} address wrapping {inner}, a {inner_kind} address; {fix}" if inner_kind else None
    kind = _not_global_kind(ip)
    if kind is None:
        return None
    network = next((n for n, _ in _NAMED_RANGES if ip.version == n.version and ip in n), None)
    where = f" (in {network})" if network else ""
    return f"{ip} is a {kind} address{where}, not reachable on the internet; {fix}"


def _wrapped_ipv4(ip: IPAddress) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 transition form carries, with the form's name."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip in _TEREDO and ip.teredo is not None:
        return "Teredo tunnel", ip.teredo[1]
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return "IPv4-compatible (deprecated)", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _not_global_kind(ip: IPAddress) -> str | None:
    """What kind of address `ip` is if it is not reachable on the internet, else None. The
    named ranges come first: Python's `is_global` misses some (multicast, site-local, 3fff::/20)."""
    named = next((kind for network, kind in _NAMED_RANGES if ip.version == network.version and ip in network), None)
    if named is None and (not ip.is_global or ip.is_multicast or ip.is_reserved):
        return "reserved"
    return named


# --------------------------------------------------------------------------- URLs


def url_problem(url: str) -> str | None:
    """Why `url` can never receive a delivery, as a sentence that does not quote it (it may
    hold a secret), or None. Parsed by httpx, the parser the deliveries use."""
    parsed = _parsed(url)
    return parsed if isinstance(parsed, str) else None


@functools.lru_cache(maxsize=4096)  # every delivery to a destination checks the same URL
def _parsed(url: str) -> httpx.URL | str:
    """The URL as the HTTP client reads it, or why it cannot receive a delivery."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"it is not a valid address ({_without(str(exc), url)})"
    if parsed.scheme not in ("http", "https"):
        return f"only http:// and https:// addresses can receive deliveries, not '{parsed.scheme}:'" if parsed.scheme else "it must start with http:// or https://"
    if not parsed.host:
        return "it has no host name after http:// or https://"
    if parsed.userinfo:
        return "it has a user name or password before '@'; send credentials in `headers:` (Authorization) instead"
    if _ip_literal(parsed.host) is None and not _HOST_NAME.fullmatch(parsed.host):
        return "its host has characters no host name can have (only letters, digits, '-' and '.')"
    return parsed


def literal_address_refused(url: str, allowed: Iterable[Network]) -> str | None:
    """Why the guard will refuse a usable `url` whose host is an IP address or `localhost`
    (known without a name server), or None. For `gateway check`: refused now, not at delivery."""
    literal = _literal_address(httpx.URL(url).host)
    return blocked_reason(literal, allowed) if literal else None


def _without(message: str, secret: str) -> str:
    return message.replace(secret, "…")


async def check_url(url: str, allowed: Iterable[Network], resolve: bool = True) -> None:
    """Raise UnusableAddress or EgressDenied unless every address `url`'s host resolves to may
    be reached.

    With `resolve=False` only the URL, IP literals and odd numeric forms are checked: the caller
    connects through CheckedResolver and checked_socket, which check at connection time.
    """
    parsed = _parsed(url)
    if isinstance(parsed, str):
        raise UnusableAddress(parsed)
    host = parsed.host
    allowed = tuple(allowed)
    literal = _literal_address(host)
    if literal is not None:  # no resolver round trip for an address
        reason = _blocked_literal(literal, allowed)
        if reason:
            raise EgressDenied(f"{host} -> {reason}")
        return
    if not resolve and not _numeric(host):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return  # unresolvable now: the connection attempt fails and is retried like any outage
    for info in infos:
        reason = blocked_reason(str(info[4][0]), allowed)
        if reason:
            raise EgressDenied(f"{host} -> {reason}")


@functools.lru_cache(maxsize=4096)
def _blocked_literal(address: str, allowed: tuple[Network, ...]) -> str | None:
    return blocked_reason(address, allowed)


def _numeric(host: str) -> bool:
    """Odd numeric forms like 127.1, 2130706433 or 0x7f.1: resolved here, whatever the caller."""
    return all(c in "0123456789abcdefx.:[]" for c in host.lower())


@functools.lru_cache(maxsize=4096)  # every delivery to a destination checks the same host
def _literal_address(host: str) -> str | None:
    """The address a host stands for without asking a name server: an IP literal, or
    127.0.0.1 for `localhost` and its subdomains (RFC 6761: always loopback)."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return "127.0.0.1"
    return _ip_literal(host)


def _ip_literal(host: str) -> str | None:
    """The host if it is written as a standard IP address (odd forms go through the resolver)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


# --------------------------------------------------------------------------- at connection time


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


def checked_socket(allowed: Callable[[], Iterable[Network]]) -> Callable[[tuple], socket.socket]:  # type: ignore[type-arg]
    """aiohttp's `socket_factory`: refuses to make the socket for an address that may not be
    reached. Called for every connection, IP literals included (they skip the resolver)."""

    def make(addr_info: tuple) -> socket.socket:  # type: ignore[type-arg]
        family, type_, proto, _, sockaddr = addr_info
        reason = blocked_reason(str(sockaddr[0]), tuple(allowed()))
        if reason:
            raise EgressDenied(f"connection refused by the egress guard: {reason}")
        return socket.socket(family=family, type=type_, proto=proto)

    return make
