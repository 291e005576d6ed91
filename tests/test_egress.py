"""Egress guard: resolved addresses in private or reserved ranges are refused unless allowed."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from gateway.egress import EgressDenied, blocked_reason, check_url

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
