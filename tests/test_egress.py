"""Egress guard: resolved addresses in private or reserved ranges are refused unless allowed."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.egress import CheckedResolver, EgressDenied, blocked_reason, check_url
from tests.harness import Sink

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254"],
)
def test_private_and_reserved_addresses_are_blocked(address: str) -> None:
    assert blocked_reason(address, ()) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "200.160.2.3", "2001:4860:4860::8888"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(address, ()) is None


def test_explicit_allowance() -> None:
    assert blocked_reason("127.0.0.1", LOOPBACK) is None
    assert blocked_reason("10.0.0.1", LOOPBACK) is not None


@pytest.mark.parametrize("url", ["http://2130706433/x", "http://127.1/x", "http://0x7f000001/x", "http://localhost/x", "http://[::ffff:7f00:1]/x"])
def test_odd_spellings_of_loopback_are_caught_after_resolution(url: str) -> None:
    with pytest.raises(EgressDenied):
        asyncio.run(check_url(url, ()))


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x"])
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(EgressDenied, match="only http"):
        asyncio.run(check_url(url, ()))


# ------------------------------------------------------------------ DNS rebinding


class Rebinding(AbstractResolver):
    """A name server that answers an allowed address first and loopback afterwards."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        address = self.answers.pop(0)
        return [ResolveResult(hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        pass


@pytest.fixture
def sink_on_127_0_0_2() -> Iterator[Sink]:
    server = Sink(host="127.0.0.2")
    yield server
    server.close()


def test_each_connection_is_checked_on_the_address_it_uses(sink_on_127_0_0_2: Sink) -> None:
    """The address checked is the address connected to: when the name later resolves to a
    forbidden address, that connection is refused (no check-then-connect gap)."""
    allowed = (ipaddress.ip_network("127.0.0.2/32"),)
    url = f"http://rebind.test:{sink_on_127_0_0_2.port}/in"

    async def twice() -> tuple[int, BaseException | None]:
        resolver = CheckedResolver(lambda: allowed, base=Rebinding(["127.0.0.2", "127.0.0.1"]))
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(url, data=b"{}") as first:
                status = first.status
            try:
                async with session.post(url, data=b"{}"):
                    return status, None
            except EgressDenied as exc:
                return status, exc

    status, refused = asyncio.run(twice())
    assert status == 200 and len(sink_on_127_0_0_2.received) == 1
    assert refused is not None and "rebind.test -> 127.0.0.1 is in the private or reserved range 127.0.0.0/8" in str(refused)
