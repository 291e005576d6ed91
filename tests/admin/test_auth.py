"""Sessions, tokens and the slowdown of failures (the logic, on the memory store; the HTTP side,
on SQLite and PostgreSQL replicas, is in test_sessions.py and test_api.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from itsdangerous import URLSafeTimedSerializer

from gateway.admin import auth
from gateway.admin.auth import EVERYTHING, Access, AdminAuth
from gateway.admin.tokens import AdminTokens
from gateway.store.memory import MemoryDatabase, MemoryStore

pytestmark = pytest.mark.anyio
TOKEN = "token-numero-um-0123456789"
SHOP_A_TOKEN = "token-da-loja-a-0123456789"
SHOP_B_TOKEN = "token-da-padaria-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def database() -> AsyncIterator[MemoryDatabase]:
    yield MemoryDatabase()


async def opened(database: MemoryDatabase) -> MemoryStore:
    store = MemoryStore(database)
    await store.open()
    return store


async def test_a_session_holds_its_own_csrf_token_and_only_for_this_admin_token(database: MemoryDatabase) -> None:
    one = AdminAuth(TOKEN, await opened(database))
    cookie = await one.new_session("203.0.113.1", "Firefox")
    session = await one.session(cookie)
    assert session is not None and len(session.csrf) >= 24
    other = await one.session(await one.new_session("203.0.113.1", "Firefox"))
    assert other is not None and other.csrf != session.csrf and other.id != session.id  # a fresh token per session
    assert await AdminAuth("token-numero-dois-012345678", await opened(database)).session(cookie) is None  # a new admin token ends every session
    assert await one.session(cookie[:-2] + "xx") is None and await one.session("") is None and await one.session(None) is None


async def test_a_logout_on_one_replica_ends_the_session_on_every_other(database: MemoryDatabase) -> None:
    """Two AdminAuths on one database are two replicas: the cookie is refused by both once ended."""
    first, second = AdminAuth(TOKEN, await opened(database)), AdminAuth(TOKEN, await opened(database))
    cookie = await first.new_session("203.0.113.1", "Firefox")
    session = await second.session(cookie)
    assert session is not None and [s.id for s in await second.active()] == [session.id]
    assert await first.end(session.id) is True
    assert await first.session(cookie) is None and await second.session(cookie) is None
    assert await second.active() == []


async def test_an_old_session_is_refused(database: MemoryDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    one = AdminAuth(TOKEN, await opened(database))
    cookie = await one.new_session("203.0.113.1", "Firefox")
    monkeypatch.setattr(auth, "SESSION_SECONDS", -1)
    assert await one.session(cookie) is None


def test_the_token_is_compared_whole() -> None:
    """Only the whole token opens: a prefix, nothing or one character more is no token."""
    one = AdminAuth(TOKEN, MemoryStore())
    assert one.access_for(TOKEN) == EVERYTHING
    assert all(one.access_for(wrong) is None for wrong in ("token-numero-um", "", TOKEN + " "))


def test_a_shops_token_sees_its_shop_and_the_gateways_sees_all() -> None:
    """Each token is its own access: the gateway's every shop, a shop's its own only."""
    tokens = AdminTokens(TOKEN, {"loja-a": SHOP_A_TOKEN, "padaria": SHOP_B_TOKEN})
    one = AdminAuth(tokens, MemoryStore())
    assert one.access_for(TOKEN) == EVERYTHING
    assert one.access_for(SHOP_A_TOKEN) == Access("loja-a") and one.access_for(SHOP_B_TOKEN) == Access("padaria")
    assert one.access_for(SHOP_A_TOKEN[:-1]) is None
    assert Access("loja-a").sees("loja-a") and not Access("loja-a").sees("padaria") and not Access("loja-a").sees(None)
    assert EVERYTHING.sees("padaria") and EVERYTHING.sees(None)


async def test_a_shops_session_sees_and_ends_its_own_shops_sessions_only(database: MemoryDatabase) -> None:
    """A shop's login lists and ends its own shop's console sessions; another shop's or the
    gateway's are not there for it (ending one answers False, and the session goes on)."""
    one = AdminAuth(AdminTokens(TOKEN, {"loja-a": SHOP_A_TOKEN, "padaria": SHOP_B_TOKEN}), await opened(database))
    gateway_cookie = await one.new_session("203.0.113.1", "Firefox")
    a_cookie = await one.new_session("203.0.113.2", "Chrome", Access("loja-a"))
    b_cookie = await one.new_session("203.0.113.3", "Safari", Access("padaria"))
    gateway, shop_a, shop_b = [await one.session(c) for c in (gateway_cookie, a_cookie, b_cookie)]
    assert gateway is not None and shop_a is not None and shop_b is not None
    assert shop_a.access == Access("loja-a") and gateway.access == EVERYTHING
    assert [s.id for s in await one.active(Access("loja-a"))] == [shop_a.id]
    assert {s.id for s in await one.active()} == {gateway.id, shop_a.id, shop_b.id}
    assert not await one.end(shop_b.id, Access("loja-a")) and not await one.end(gateway.id, Access("loja-a"))
    assert await one.session(b_cookie) is not None and await one.session(gateway_cookie) is not None
    assert await one.end(shop_b.id)  # the gateway's token ends anyone's
    assert await one.session(b_cookie) is None


async def test_removing_a_shops_token_ends_every_session(database: MemoryDatabase) -> None:
    """Sessions are signed with every token: a shop's token taken away (or changed) ends them all."""
    cookie = await AdminAuth(AdminTokens(TOKEN, {"loja-a": SHOP_A_TOKEN}), await opened(database)).new_session("203.0.113.1", "Firefox", Access("loja-a"))
    assert await AdminAuth(AdminTokens(TOKEN, {"loja-a": SHOP_A_TOKEN}), await opened(database)).session(cookie) is not None
    assert await AdminAuth(AdminTokens(TOKEN), await opened(database)).session(cookie) is None


async def test_each_recent_failure_from_an_address_adds_to_the_wait_on_every_replica(database: MemoryDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(auth.asyncio, "sleep", no_sleep)
    clock = Clock()
    first, second = AdminAuth(TOKEN, await opened(database), clock), AdminAuth(TOKEN, await opened(database), clock)
    for replica in (first, second, first):
        error = await replica.refuse("10.0.0.1", "wrong token")
        assert error.status_code == 401
    assert waited == [0, auth.FAILURE_DELAY_SECONDS, 2 * auth.FAILURE_DELAY_SECONDS]  # the second replica counts the first's failures
    assert await second.delay("10.0.0.1") == 3 * auth.FAILURE_DELAY_SECONDS
    assert await second.delay("10.0.0.2") == 0  # another address is not slowed
    for _ in range(30):
        await first.refuse("10.0.0.1", "wrong token")
    assert await second.delay("10.0.0.1") == auth.MAX_FAILURE_DELAY_SECONDS
    clock.now += auth.FAILURE_MEMORY_SECONDS + 1
    assert await second.delay("10.0.0.1") == 0  # forgotten after a while


async def test_the_cookie_is_signed_not_encrypted_and_holds_no_secret(database: MemoryDatabase) -> None:
    """What a session cookie carries: the session's id, a random CSRF token and the time, never the admin token."""
    cookie = await AdminAuth(TOKEN, await opened(database)).new_session("203.0.113.1", "Firefox")
    assert TOKEN not in cookie
    payload = URLSafeTimedSerializer("x", salt="console-session").loads_unsafe(cookie)[1]
    assert set(payload) == {"sid", "csrf", "at"} and abs(payload["at"] - time.time()) < 5


async def test_wrong_tokens_sent_in_parallel_each_wait_longer(database: MemoryDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure is noted before its wait: three tries at once do not all get the first one's 0 s."""
    real_sleep = asyncio.sleep
    waited: list[float] = []

    async def yielding_sleep(seconds: float) -> None:
        waited.append(seconds)
        await real_sleep(0)  # the others run meanwhile, as during a real wait

    monkeypatch.setattr(auth.asyncio, "sleep", yielding_sleep)
    one = AdminAuth(TOKEN, await opened(database), Clock())
    await asyncio.gather(*(one.refuse("10.0.0.9", "wrong token") for _ in range(3)))
    assert sorted(waited) == [0, auth.FAILURE_DELAY_SECONDS, 2 * auth.FAILURE_DELAY_SECONDS]
