"""Sessions, tokens and the slowdown of failures (the logic, on the memory store; the HTTP side,
on SQLite and PostgreSQL replicas, is in test_sessions.py and test_api.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from itsdangerous import URLSafeTimedSerializer

from gateway.admin import auth
from gateway.admin.auth import AdminAuth
from gateway.store.memory import MemoryDatabase, MemoryStore

pytestmark = pytest.mark.anyio
TOKEN = "token-numero-um-0123456789"


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
    one = AdminAuth(TOKEN, MemoryStore())
    assert one.token_matches(TOKEN)
    assert not one.token_matches("token-numero-um") and not one.token_matches("") and not one.token_matches(TOKEN + " ")


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
