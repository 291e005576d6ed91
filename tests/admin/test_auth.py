"""Sessions, tokens and the slowdown of failures (pure logic; the HTTP side is in test_api.py)."""

from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeTimedSerializer

from gateway.admin import auth
from gateway.admin.auth import AdminAuth, FailedLogins


def test_a_session_holds_its_own_csrf_token_and_only_for_this_admin_token() -> None:
    one = AdminAuth("token-numero-um-0123456789")
    cookie = one.new_session()
    session = one.session(cookie)
    assert session is not None and len(session.csrf) >= 24
    assert one.session(one.new_session()).csrf != session.csrf  # a fresh token per session
    assert AdminAuth("token-numero-dois-012345678").session(cookie) is None  # a new admin token ends every session
    assert one.session(cookie[:-2] + "xx") is None and one.session("") is None and one.session(None) is None


def test_an_old_session_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    one = AdminAuth("token-numero-um-0123456789")
    cookie = one.new_session()
    monkeypatch.setattr(auth, "SESSION_SECONDS", -1)
    assert one.session(cookie) is None


def test_the_token_is_compared_whole() -> None:
    one = AdminAuth("token-numero-um-0123456789")
    assert one.token_matches("token-numero-um-0123456789")
    assert not one.token_matches("token-numero-um") and not one.token_matches("") and not one.token_matches("token-numero-um-0123456789 ")


def test_each_recent_failure_from_an_address_adds_to_the_wait_up_to_a_cap() -> None:
    failed = FailedLogins()
    now = 1000.0
    assert failed.delay("10.0.0.1", now) == 0
    for _ in range(3):
        failed.record("10.0.0.1", now)
    assert failed.delay("10.0.0.1", now) == 3 * auth.FAILURE_DELAY_SECONDS
    assert failed.delay("10.0.0.2", now) == 0  # another address is not slowed
    for _ in range(100):
        failed.record("10.0.0.1", now)
    assert failed.delay("10.0.0.1", now) == auth.MAX_FAILURE_DELAY_SECONDS
    assert failed.delay("10.0.0.1", now + auth.FAILURE_MEMORY_SECONDS + 1) == 0  # forgotten after a while


def test_the_cookie_is_signed_not_encrypted_and_holds_no_secret() -> None:
    """What a session cookie carries: a random CSRF token and the time, never the admin token."""
    token = "token-numero-um-0123456789"
    cookie = AdminAuth(token).new_session()
    assert token not in cookie
    payload = URLSafeTimedSerializer("x", salt="console-session").loads_unsafe(cookie)[1]
    assert set(payload) == {"csrf", "at"} and abs(payload["at"] - time.time()) < 5
