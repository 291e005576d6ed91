"""The console's sessions and failed logins, on every backend: what one process writes, another
process on the same database reads (a logout and the slowdown hold for every replica)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.store import Store
from gateway.store.base import ConsoleSession

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0


async def test_a_session_ended_by_one_process_is_ended_for_another(store_factory: Callable[[], Store]) -> None:
    one, other = store_factory(), store_factory()
    await one.open()
    await other.open()
    try:
        await one.add_session(ConsoleSession("s1", T0, "203.0.113.7", "Firefox"), forget_before=T0 - 3600)
        await one.add_session(ConsoleSession("s2", T0 + 10, "203.0.113.8", "Chromium"), forget_before=T0 - 3600)
        assert [s.id for s in await other.active_sessions(since=T0 - 1)] == ["s2", "s1"]  # newest first
        assert await other.end_session("s1", T0 + 20) is True
        assert await one.end_session("s1", T0 + 30) is False  # once
        assert await one.end_session("nunca-existiu", T0 + 30) is False
        ended = await one.get_session("s1")
        assert ended is not None and ended.ended_at == T0 + 20 and ended.address == "203.0.113.7"
        assert [s.id for s in await one.active_sessions(since=T0 - 1)] == ["s2"]
        assert [s.id for s in await one.active_sessions(since=T0 + 5)] == ["s2"]  # older ones have expired
        await one.add_session(ConsoleSession("s3", T0 + 50, "203.0.113.9", "Safari"), forget_before=T0 + 5)
        assert await other.get_session("s1") is None  # forgotten once expired
        assert await other.get_session("nunca-existiu") is None
    finally:
        await one.close()
        await other.close()


async def test_failed_logins_are_counted_per_address_for_every_process(store_factory: Callable[[], Store]) -> None:
    one, other = store_factory(), store_factory()
    await one.open()
    await other.open()
    try:
        for n in range(3):
            await one.record_login_failure("198.51.100.1", T0 + n, forget_before=T0 - 900)
        await other.record_login_failure("198.51.100.1", T0 + 3, forget_before=T0 - 900)
        await other.record_login_failure("198.51.100.2", T0 + 3, forget_before=T0 - 900)
        assert await one.login_failures("198.51.100.1", since=T0 - 900) == 4
        assert await other.login_failures("198.51.100.2", since=T0 - 900) == 1
        assert await other.login_failures("198.51.100.1", since=T0 + 2) == 2  # only the recent ones
        await one.record_login_failure("198.51.100.3", T0 + 1000, forget_before=T0 + 100)
        assert await other.login_failures("198.51.100.1", since=0) == 0  # old failures are forgotten
    finally:
        await one.close()
        await other.close()
