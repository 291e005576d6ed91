"""Egress guard: resolved addresses in private or reserved ranges are refused unless allowed."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.delivery.egress import CheckedResolver, EgressDenied, blocked_reason, check_url, checked_socket, url_problem
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
    assert refused is not None and "rebind.test -> 127.0.0.1 is a loopback address (in 127.0.0.0/8)" in str(refused)


# ------------------------------------------------------------------ a corpus of address tricks

# Spellings of loopback, private, link-local and metadata addresses from public SSRF cheat
# sheets (decimal, octal, hex, mixed, short forms, Unicode dots and digits, IPv6 forms,
# credentials and fragments). {port} is a receiver on 127.0.0.1: none of them may reach it.
LOOPBACK_TRICKS = [
    "http://127.0.0.1:{port}/", "http://127.1:{port}/", "http://127.0.1:{port}/", "http://127.000.000.001:{port}/",
    "http://2130706433:{port}/", "http://017700000001:{port}/", "http://0177.0.0.1:{port}/", "http://0177.1:{port}/",
    "http://0x7f000001:{port}/", "http://0x7f.0x0.0x0.0x1:{port}/", "http://0x7f.1:{port}/", "http://0x7f.0.0.01:{port}/",
    "http://00000177.00000000.00000000.00000001:{port}/", "http://127.127.127.127:{port}/", "http://127.0.0.1.:{port}/",
    "http://127。0。0。1:{port}/", "http://127｡0｡0｡1:{port}/", "http://127．0．0．1:{port}/", "http://127%E3%80%820%E3%80%820%E3%80%821:{port}/",
    "http://①②⑦.⓪.⓪.①:{port}/", "http://１２７.０.０.１:{port}/", "http://ｌｏｃａｌｈｏｓｔ:{port}/",
    "http://localhost:{port}/", "http://LOCALHOST:{port}/", "http://localhost.:{port}/", "http://[::1]:{port}/",
    "http://[0:0:0:0:0:0:0:1]:{port}/", "http://[::ffff:127.0.0.1]:{port}/", "http://[::ffff:7f00:1]:{port}/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/", "http://[::127.0.0.1]:{port}/", "http://[::7f00:1]:{port}/",
    "http://[64:ff9b::127.0.0.1]:{port}/", "http://[2002:7f00:1::]:{port}/", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/",
    "http://user@127.0.0.1:{port}/", "http://user:password@127.0.0.1:{port}/", "http://example.com@127.0.0.1:{port}/",
    "http://127.0.0.1:{port}#@example.com/", "http://127.0.0.1:{port}?@example.com/", "http://0:{port}/", "http://0.0.0.0:{port}/",
    "http://[::]:{port}/", "http://[::ffff:0.0.0.0]:{port}/",
]
# Other inside addresses: nothing listens there, so a connection attempt would time out
# ("retry"); refused means refused before any connection.
INSIDE_ADDRESSES = [
    "http://169.254.169.254/latest/meta-data/", "http://2852039166/", "http://0xa9fea9fe/", "http://0251.0376.0251.0376/",
    "http://169.254.169.254.:80/", "http://[::ffff:169.254.169.254]/", "http://[fd00:ec2::254]/", "http://[fe80::1]/",
    "http://10.0.0.1/", "http://167772161/", "http://012.0.0.1/", "http://0xa.0.0.1/", "http://172.16.0.1/", "http://192.168.0.1/",
    "http://3232235521/", "http://0xc0a80001/", "http://100.64.0.1/", "http://198.18.0.1/", "http://192.0.0.1/", "http://224.0.0.1/",
    "http://255.255.255.255/", "http://240.0.0.1/", "http://[fec0::1]/", "http://[fc00::1]/", "http://[ff02::1]/", "http://[2001:db8::1]/",
    "http://[64:ff9b::a9fe:a9fe]/", "http://[64:ff9b:1::a00:1]/", "http://[2002:a9fe:a9fe::]/", "http://[2002:c0a8:1::]/",
    "http://[2001::1]/", "http://[100::1]/", "http://[::10.0.0.1]/", "http://[::ffff:10.0.0.1]/", "http://[3fff::1]/",
    "http://169。254。169。254/", "http://①⑥⑨.②⑤④.①⑥⑨.②⑤④/",
]


def _attempt_to(url: str, tmp_path: Path) -> tuple[str, str]:
    """One real delivery attempt to `url` (from a variable, as a user would set it), with the
    shipped client and no egress_allow: (outcome, reason)."""
    from gateway.config import load_config
    from gateway.delivery.attempt import attempt
    from gateway.delivery.client import delivery_client

    (tmp_path / "routes.yaml").write_text(
        "version: 1\nsources: {go: {token: t0ken-de-teste}}\n"
        "destinations: {alvo: {type: http, url: '${TARGET_URL}', timeout: 3s}}\n"
        "routes: [{name: r, when: {event_id: ORDER_CREATED}, send: {to: alvo, body: '{}'}}]\n"
    )
    config = load_config(tmp_path / "routes.yaml", {"TARGET_URL": url})

    async def once() -> tuple[str, str]:
        async with delivery_client(lambda: config.egress_allow) as client:
            outcome, _, _ = await attempt(client, config.destinations["alvo"].spec, "{}", "key-1", config)
        return outcome.kind, outcome.reason

    return asyncio.run(once())


@pytest.mark.parametrize("template", LOOPBACK_TRICKS)
def test_no_spelling_of_loopback_reaches_a_receiver_on_127_0_0_1(template: str, sink: Sink, tmp_path: Path) -> None:
    """Every form is dead at once with a reason, and the receiver on 127.0.0.1 gets nothing."""
    kind, reason = _attempt_to(template.format(port=sink.port), tmp_path)
    assert kind == "dead", reason
    assert reason.startswith(("address not allowed", "the address cannot be used")), reason
    assert sink.received == []


@pytest.mark.parametrize("url", INSIDE_ADDRESSES)
def test_inside_addresses_are_refused_before_any_connection(url: str, tmp_path: Path) -> None:
    """Private, link-local, metadata and transition forms: dead before a connection is tried."""
    kind, reason = _attempt_to(url, tmp_path)
    assert kind == "dead", reason
    assert reason.startswith(("address not allowed", "the address cannot be used")), reason


def test_a_redirect_to_the_inside_is_never_followed(sink: Sink, tmp_path: Path) -> None:
    """A public-looking receiver that redirects to metadata: the redirect is an answer, not a hop."""
    sink.behaviour = lambda request, count: (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"", 0)
    from gateway.config import load_config
    from gateway.delivery.attempt import attempt
    from gateway.delivery.client import delivery_client

    (tmp_path / "routes.yaml").write_text(
        "version: 1\nsettings: {egress_allow: [127.0.0.1/32]}\nsources: {go: {token: t0ken-de-teste}}\n"
        f"destinations: {{alvo: {{type: http, url: '{sink.url('/in')}'}}}}\n"
        "routes: [{name: r, when: {event_id: ORDER_CREATED}, send: {to: alvo, body: '{}'}}]\n"
    )
    config = load_config(tmp_path / "routes.yaml", {})

    async def once() -> tuple[str, int | None]:
        async with delivery_client(lambda: config.egress_allow) as client:
            outcome, status, _ = await attempt(client, config.destinations["alvo"].spec, "{}", "key-1", config)
        return outcome.kind, status

    assert asyncio.run(once()) == ("dead", 302)
    assert len(sink.received) == 1


def test_the_socket_guard_refuses_an_ip_literal_that_skipped_the_resolver(sink: Sink) -> None:
    """aiohttp calls no resolver for an IP literal: the socket factory still refuses it."""

    async def direct() -> BaseException | None:
        connector = aiohttp.TCPConnector(socket_factory=checked_socket(tuple), resolver=CheckedResolver(tuple))
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                async with session.get(f"http://127.0.0.1:{sink.port}/in"):
                    return None
            except EgressDenied as exc:
                return exc

    refused = asyncio.run(direct())
    assert refused is not None and "127.0.0.1 is a loopback address" in str(refused)
    assert sink.received == []


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("::127.0.0.1", "IPv4-compatible"), ("2002:7f00:1::", "6to4 address wrapping 127.0.0.1"), ("64:ff9b::7f00:1", "NAT64 address wrapping 127.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"), ("fec0::1", "site-local"), ("64:ff9b:1::1", "local-use NAT64"), ("224.0.0.1", "multicast"),
        ("169.254.169.254", "link-local (cloud metadata)"), ("100.64.0.1", "carrier-grade NAT"), ("fd00:ec2::254", "unique local"),
    ],
)
def test_refusals_say_what_the_address_is(address: str, words: str) -> None:
    reason = blocked_reason(address, ())
    assert reason is not None and words in reason


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_transition_forms_of_public_addresses_pass(address: str) -> None:
    """NAT64 (an IPv6-only network reaching IPv4 receivers) and 6to4 are judged by what they wrap."""
    assert blocked_reason(address, ()) is None


def test_an_allowed_range_does_not_open_its_wrapped_forms() -> None:
    """egress_allow: [127.0.0.0/8] allows 127.0.0.1 (and its IPv4-mapped form), not ::127.0.0.1."""
    assert blocked_reason("::ffff:127.0.0.1", LOOPBACK) is None
    assert blocked_reason("::127.0.0.1", LOOPBACK) is not None
    assert blocked_reason("2002:7f00:1::", LOOPBACK) is not None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://user:secret-pass@hooks.example.com/x", "user name or password"),
        ("http://ｌｏｃａｌｈｏｓｔ/x", "not a valid address"),
        ("hooks.example.com/erp", "must start with http"),
        ("ftp://example.com/x", "only http:// and https://"),
        ("http:///x", "no host name"),
    ],
)
def test_addresses_that_cannot_work_are_told_apart_without_quoting_them(url: str, words: str) -> None:
    problem = url_problem(url)
    assert problem is not None and words in problem
    assert "secret-pass" not in problem
