"""Console sessions end for real (issue #26): a cookie kept after logout is refused, the sessions
page lists the logins and ends another one, and on PostgreSQL replicas a logout or a failed
login on one replica holds on the others. Real `gateway serve` processes, over HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.admin.conftest import ADMIN_TOKEN, AdminGateway, routes
from tests.conftest import Project
from tests.harness import GatewayProcess, Sink

from gateway.admin import auth


def logged_in(base_url: str, agent: str = "Firefox de teste") -> tuple[httpx.Client, str]:
    """A browser-like client with a console session, and that session's CSRF token."""
    client = httpx.Client(base_url=base_url, timeout=30, headers={"User-Agent": agent})
    assert client.post("/console/login", data={"token": ADMIN_TOKEN}).status_code == 303
    return client, csrf_of(client)


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/console")
    assert page.status_code == 200, page.text[:200]
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def session_cookie(client: httpx.Client) -> str:
    value = client.cookies.get(auth.SESSION_COOKIE)
    assert value
    return value


def with_cookie(base_url: str, cookie: str) -> httpx.Client:
    """Another client holding a copy of a cookie (what an attacker who copied it would have)."""
    return httpx.Client(base_url=base_url, timeout=30, cookies={auth.SESSION_COOKIE: cookie})


def test_a_cookie_kept_after_logout_is_refused(admin_gateway: AdminGateway) -> None:
    browser, csrf = logged_in(admin_gateway.url(""))
    cookie = session_cookie(browser)
    with with_cookie(admin_gateway.url(""), cookie) as copy:
        assert copy.get("/admin/api/events").status_code == 200  # the copy works while the session lasts
        assert browser.post("/console/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert copy.get("/admin/api/events").status_code == 401
        assert copy.get("/console").status_code == 303  # to the login page
        assert copy.post("/admin/api/replays", json={"ids": ["x"]}, headers={"X-CSRF-Token": csrf}).status_code == 401
    browser.close()


def test_the_sessions_page_lists_logins_and_ends_another_one(admin_gateway: AdminGateway) -> None:
    mine, csrf = logged_in(admin_gateway.url(""), "Firefox da loja")
    other, _ = logged_in(admin_gateway.url(""), "Chromium do estagiario")
    listed = mine.get("/admin/api/sessions").json()
    agents = {s["agent"]: s["id"] for s in listed}
    assert {"Firefox da loja", "Chromium do estagiario"} <= set(agents) and all(s["address"] == "127.0.0.1" for s in listed)
    page = mine.get("/console/sessions").text
    mine_row = re.search(rf'<tr data-session="{agents["Firefox da loja"]}">(.*?)</tr>', page, re.S)
    assert mine_row is not None and "esta sessão" in mine_row.group(1)
    assert "Chromium do estagiario" in page and page.count("Encerrar") >= 2
    assert mine.post(f"/console/sessions/{agents['Chromium do estagiario']}/end", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert other.get("/console/events").status_code == 303  # ended: back to the login page
    assert mine.get("/console/events").status_code == 200  # mine goes on
    assert agents["Chromium do estagiario"] not in mine.get("/console/sessions").text
    assert mine.post(f"/console/sessions/{agents['Chromium do estagiario']}/end", headers={"X-CSRF-Token": csrf}).status_code == 404  # once
    assert mine.post(f"/console/sessions/{agents['Firefox da loja']}/end").status_code == 403  # no CSRF token, nothing ended
    mine.close()
    other.close()


@pytest.fixture
def two_replicas(tmp_path: Path, postgres_url: str) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    sink = Sink()
    Project(tmp_path).routes(routes(sink))
    replicas = []
    try:
        for number in range(2):
            replica = GatewayProcess(tmp_path, {"GO_WEBHOOK_TOKEN": "token-go-de-teste", "CRM_TOKEN": "x", "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}, workers=4)
            replica.database = postgres_url
            replica.log_path = tmp_path / f"replica-{number}.log"
            replicas.append(replica.start())
        yield replicas[0], replicas[1]
    finally:
        for replica in replicas:
            replica.terminate()
        sink.close()


def test_a_logout_on_one_replica_ends_the_session_on_the_other(two_replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    first, second = two_replicas
    browser, csrf = logged_in(first.url(""))
    cookie = session_cookie(browser)
    with with_cookie(second.url(""), cookie) as on_second:
        assert on_second.get("/admin/api/events").status_code == 200  # one session, valid on every replica
        assert on_second.post("/console/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert browser.get("/admin/api/events").status_code == 401  # ended on the first replica too
    browser.close()


def test_failed_logins_on_one_replica_slow_the_other(two_replicas: tuple[GatewayProcess, GatewayProcess], postgres_url: str) -> None:
    """Three wrong tokens on the first replica: the second answers the fourth after their wait."""
    first, second = two_replicas
    for _ in range(3):
        assert httpx.post(first.url("/console/login"), data={"token": "errado"}, timeout=30).status_code == 401
    started = time.monotonic()
    assert httpx.get(second.url("/admin/api/events"), headers={"Authorization": "Bearer errado-tambem"}, timeout=30).status_code == 401
    waited = time.monotonic() - started
    assert waited >= 3 * auth.FAILURE_DELAY_SECONDS - 0.1, waited  # the first replica's failures counted here
    with psycopg.connect(postgres_url) as db:
        (count,) = db.execute("SELECT count(*) FROM login_failures WHERE address = '127.0.0.1'").fetchone()  # type: ignore[misc]
    assert count == 4
    assert httpx.get(second.url("/admin/api/events"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30).status_code == 200
