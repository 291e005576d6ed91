"""A real `gateway serve` on SQLite with the admin token set, a sink that answers per path, and
helpers to post GO's events: what the admin API and console tests share."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Received, Sink

ADMIN_TOKEN = "token-admin-de-teste-0123456789"
GO_TOKEN = "token-go-de-teste"
CRM_SECRET = "segredo-do-crm-987654"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Flaky:
    """The sink's answers: /instavel refuses (400) while `refusing` is set, /sumiu is gone for
    good (410), everything else is 200."""

    def __init__(self) -> None:
        self.refusing = threading.Event()
        self.refusing.set()

    def __call__(self, request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        if request.path == "/sumiu":
            return 410, {}, b"gone", 0.0
        if request.path == "/instavel" and self.refusing.is_set():
            return 400, {}, b'{"erro": "campo pedido invalido"}', 0.0
        return 200, {}, b'{"ok": true}', 0.0


def routes(sink: Sink) -> str:
    return f"""
    version: 1
    settings: {{egress_allow: [127.0.0.0/8]}}
    sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}"}}}}
    destinations:
      crm: {{type: http, url: "{sink.url('/crm')}", headers: {{Authorization: "Bearer ${{CRM_TOKEN}}"}}}}
      instavel: {{type: http, url: "{sink.url('/instavel')}", retry: {{first: 100ms, max: 1s}}}}
      sumiu: {{type: http, url: "{sink.url('/sumiu')}"}}
    routes:
      - name: pedido-no-crm
        when: {{event_id: ORDER_CREATED}}
        send: {{to: crm, body: '{{"pedido": "{{{{ data.code }}}}", "email": "{{{{ data.user.email }}}}"}}'}}
      - name: pedido-pago
        when: {{event_id: ORDER_CREATED, data.status: 2}}
        send: {{to: crm, body: '{{"pago": "{{{{ data.code }}}}"}}'}}
      - name: cancelamento-instavel
        when: {{event_id: ORDER_CANCEL}}
        send: {{to: instavel, body: '{{"pedido": "{{{{ data.code }}}}"}}'}}
      - name: entrega-para-quem-sumiu
        when: {{event_id: ORDER_DELIVERY_CHANGE_STATUS}}
        send: {{to: sumiu, body: '{{"pedido": "{{{{ data.code }}}}"}}'}}
    """


class AdminGateway:
    """The running gateway, its sink, and ways to post events and call the admin API."""

    def __init__(self, gateway: GatewayProcess, sink: Sink, flaky: Flaky) -> None:
        self.gateway, self.sink, self.flaky = gateway, sink, flaky
        self.api = httpx.Client(base_url=gateway.url(""), headers=BEARER, timeout=30)

    def url(self, path: str) -> str:
        return self.gateway.url(path)

    def post_event(self, name: str = "order_created", code: str = "0000593098", **data: Any) -> str:
        """Post one of GO's sample events with its own `data.code` (and id); its stored id."""
        event = json.loads((EVENTS / f"{name}.json").read_text())
        event["data"] = {**event["data"], "code": code, "id": code, **data}
        answer = self.gateway.post(f"/hooks/go?token={GO_TOKEN}", json.dumps(event))
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def event(self, event_id: str, **params: Any) -> dict[str, Any]:
        answer = self.api.get(f"/admin/api/events/{event_id}", params=params)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def settled(self, event_id: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
        """The event once every delivery has the status (bounded wait)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.event(event_id)
            if found["deliveries"] and all(d["status"] == status for d in found["deliveries"]):
                return found
            time.sleep(0.1)
        raise AssertionError(f"event {event_id} did not reach {status}: {found['deliveries']}")


def start_admin_gateway(root: Path, env: dict[str, str] | None = None) -> tuple[GatewayProcess, Sink, Flaky]:
    flaky = Flaky()
    sink = Sink(behaviour=flaky)
    project = Project(root)
    project.routes(routes(sink))
    gateway = GatewayProcess(root, {"GO_WEBHOOK_TOKEN": GO_TOKEN, "CRM_TOKEN": CRM_SECRET, "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})})
    return gateway.start(), sink, flaky


@pytest.fixture(scope="module")
def admin_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminGateway]:
    gateway, sink, flaky = start_admin_gateway(tmp_path_factory.mktemp("admin"))
    running = AdminGateway(gateway, sink, flaky)
    try:
        yield running
    finally:
        running.api.close()
        gateway.terminate()
        sink.close()


# --------------------------------------------------------------------------- the browser

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    found = os.environ.get("GATEWAY_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "these tests need Debian's chromium: apt-get install chromium (.ci/run installs it)"
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = _launch(playwright)
        yield launched
        launched.close()


def _launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)


class Watched:
    """A page, with every request it made and every console message it logged."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []
        self.problems: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("console", lambda message: self.problems.append(message.text) if message.type in ("error", "warning") else None)
        page.on("pageerror", lambda error: self.problems.append(str(error)))
