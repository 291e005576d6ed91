"""The console in a real headless Chromium (Debian's, driven by Playwright) against a real
`gateway serve` on SQLite: log in, watch events arrive, open one, replay a dead delivery and see
it reach the sink, use the playground, read the routes. Every page is checked to load nothing
from outside 127.0.0.1 and to break no rule of its Content-Security-Policy.

Set GATEWAY_SCREENSHOTS=docs/console to write each page's picture for the README."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.admin.conftest import ADMIN_TOKEN, AdminGateway, Watched
from tests.conftest import EVENTS


@pytest.fixture
def console(browser: Browser, admin_gateway: AdminGateway) -> Iterator[Page]:
    """A logged-in console page; afterwards, nothing it loaded came from outside 127.0.0.1 and
    no script error or CSP violation was logged."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR")
    watched = Watched(context.new_page())
    page = watched.page
    page.set_default_timeout(15_000)
    page.goto(admin_gateway.url("/console/events"))
    expect(page).to_have_url(re.compile(r"/console/login\?next=/console/events$"))
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console/events$"))
    yield page
    context.close()
    outside = [url for url in watched.requests if urlsplit(url).hostname != "127.0.0.1" and not url.startswith("data:")]
    assert outside == [], outside
    assert watched.problems == [], watched.problems


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("GATEWAY_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_a_wrong_token_is_refused_on_the_login_page(browser: Browser, admin_gateway: AdminGateway) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(admin_gateway.url("/console"))
    page.fill("#token", "nao-e-este-token")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("Token inválido")
    assert "gateway_session" not in {c["name"] for c in context.cookies()}
    screenshot(page, "login")
    context.close()


def test_new_events_appear_on_the_events_page_without_a_reload(console: Page, admin_gateway: AdminGateway) -> None:
    row = console.locator("#event-rows tr", has_text="AO-VIVO-1")
    expect(row).to_have_count(0)
    event_id = admin_gateway.post_event(code="AO-VIVO-1")
    expect(row).to_have_count(1, timeout=10_000)  # the list polls every 3 s
    expect(row).to_contain_text("ORDER_CREATED")
    console.fill("input[name=code]", "AO-VIVO-1")
    console.get_by_role("button", name="Filtrar").click()
    expect(console.locator("#event-rows tr")).to_have_count(1)
    expect(console).to_have_url(re.compile(r"code=AO-VIVO-1"))
    console.fill("input[name=since]", "2099-01-01T00:00")
    console.get_by_role("button", name="Filtrar").click()
    expect(console.locator("#event-rows")).to_contain_text("Nenhum evento encontrado")
    console.fill("input[name=since]", "")
    console.get_by_role("button", name="Filtrar").click()
    expect(console.locator("#event-rows tr")).to_have_count(1)
    screenshot(console, "eventos")
    row.locator("a").click()
    expect(console).to_have_url(re.compile(f"/console/events/{event_id}$"))


def test_an_event_shows_its_deliveries_and_reveals_personal_data_only_when_asked(console: Page, admin_gateway: AdminGateway) -> None:
    event_id = admin_gateway.post_event(code="DETALHE-1")
    admin_gateway.settled(event_id, "delivered")
    console.goto(admin_gateway.url(f"/console/events/{event_id}"))
    payload = console.locator("#payload pre")
    expect(payload).to_contain_text('"email": "***"')
    expect(payload).not_to_contain_text("teste@teste.com")
    delivery = console.locator("article.delivery")
    expect(delivery).to_contain_text("crm")
    expect(delivery.locator(".timeline li")).to_contain_text("HTTP 200")
    screenshot(console, "evento")
    console.get_by_role("button", name="Mostrar dados pessoais").click()
    expect(payload).to_contain_text("teste@teste.com")
    expect(console.locator("#payload")).to_contain_text("registrada no log")
    assert f"personal data of event {event_id} shown unmasked" in admin_gateway.gateway.log()


def test_a_dead_delivery_is_replayed_from_the_failures_page_and_arrives(console: Page, admin_gateway: AdminGateway) -> None:
    event_id = admin_gateway.post_event("order_cancel", code="FALHA-1")
    admin_gateway.settled(event_id, "dead")
    console.goto(admin_gateway.url("/console/deliveries?status=dead"))
    group = console.locator("#dead-groups tr[data-destination=instavel]")
    expect(group).to_contain_text("HTTP 400")
    screenshot(console, "falhas")
    admin_gateway.flaky.refusing.clear()
    try:
        before = len(admin_gateway.sink.received)
        group.locator("button", has_text="Reenviar").first.click()
        expect(console.locator("#replay-progress")).to_contain_text("Pronto", timeout=15_000)
        admin_gateway.settled(event_id, "delivered")
        assert any(r.path == "/instavel" and b"FALHA-1" in r.body for r in admin_gateway.sink.received[before:])
        console.reload()
        expect(console.locator("#dead-groups tr[data-destination=instavel]")).to_have_count(0)
    finally:
        admin_gateway.flaky.refusing.set()


def test_a_delivery_is_replayed_from_its_events_page_with_the_current_template(console: Page, admin_gateway: AdminGateway) -> None:
    event_id = admin_gateway.post_event("order_cancel", code="EVENTO-REENVIO")
    admin_gateway.settled(event_id, "dead")
    console.goto(admin_gateway.url(f"/console/events/{event_id}"))
    expect(console.locator("article.delivery .badge").first).to_contain_text("falhou")
    admin_gateway.flaky.refusing.clear()
    try:
        console.get_by_role("button", name="Reenviar com template atual").click()
        expect(console.locator("#replay-progress")).to_contain_text("com o template atual", timeout=15_000)
        expect(console.locator("article.delivery .badge").first).to_contain_text("entregue", timeout=15_000)  # the page follows the delivery
    finally:
        admin_gateway.flaky.refusing.set()


def test_the_playground_explains_each_route_and_sends_the_event(console: Page, admin_gateway: AdminGateway) -> None:
    console.goto(admin_gateway.url("/console/playground"))
    console.select_option("select[name=sample]", "order_created.json")
    expect(console.locator("textarea[name=event]")).to_contain_text('"ORDER_CREATED"')
    console.get_by_role("button", name="Testar regras").click()
    matched = console.locator("article.verdict[data-route=pedido-no-crm]")
    expect(matched).to_contain_text("dispara")
    expect(matched.locator("pre.request")).to_contain_text("Authorization: Bearer ***")
    expect(console.locator("article.verdict[data-route=pedido-pago]")).to_contain_text("data.status")
    screenshot(console, "testar-regras")
    event = json.loads((EVENTS / "order_created.json").read_text())
    event["data"].update(status=2, code="PLAYGROUND-1", id="PLAYGROUND-1")
    console.fill("textarea[name=event]", json.dumps(event, indent=2))
    console.get_by_role("button", name="Testar regras").click()
    expect(console.locator("article.verdict[data-route=pedido-pago] header")).to_contain_text("dispara")
    expect(console.locator("article.verdict[data-route=pedido-pago] header")).not_to_contain_text("não dispara")
    console.fill("textarea[name=event]", "{ isto não é json")
    console.get_by_role("button", name="Testar regras").click()
    expect(console.get_by_role("alert")).to_contain_text("não é JSON válido")
    console.fill("textarea[name=event]", json.dumps(event))
    console.get_by_role("button", name="Enviar ao gateway").click()
    expect(console.locator("#sent")).to_contain_text("2 entregas")
    console.locator("#sent a").click()
    expect(console.locator("h1")).to_contain_text("PLAYGROUND-1")
    expect(console.locator("article.delivery")).to_have_count(2)


def test_overview_and_routes_show_the_config_in_force_and_a_refused_edit(console: Page, admin_gateway: AdminGateway) -> None:
    admin_gateway.settled(admin_gateway.post_event(code="VISAO-GERAL"), "delivered")
    admin_gateway.settled(admin_gateway.post_event("order_delivery_change_status", code="SUMIU-2"), "dead")  # /sumiu answers 410
    console.goto(admin_gateway.url("/console"))
    expect(console.locator("#destinations")).to_contain_text("crm")
    expect(console.locator("#destinations tr.state-stopped")).to_contain_text("parado (410 Gone)", timeout=10_000)
    console.wait_for_function("() => window.Chart && Chart.getChart('activity-chart') !== undefined")
    screenshot(console, "visao-geral")
    console.goto(admin_gateway.url("/console/routes"))
    row = console.locator("#routes tr[data-route=pedido-no-crm]")
    expect(row).to_contain_text("ORDER_CREATED")
    assert int(row.locator(".count").inner_text()) >= 1
    expect(console.locator("#destination-settings")).to_contain_text('"Authorization": "***"')
    screenshot(console, "rotas")
    routes_file = admin_gateway.gateway.root / "routes.yaml"
    good = routes_file.read_text()
    routes_file.write_text(good.replace("to: crm,", "to: crn,", 1))
    try:
        console.goto(admin_gateway.url("/console"))
        expect(console.locator("#refused-edit")).to_contain_text("crn", timeout=15_000)  # the page refreshes every 5 s
        console.wait_for_function("() => Chart.getChart('activity-chart') !== undefined")  # drawn again on the fresh numbers
        screenshot(console, "visao-geral-edicao-recusada")
    finally:
        routes_file.write_text(good)
    expect(console.locator("#refused-edit")).to_have_count(0, timeout=15_000)


def test_the_api_schema_page_renders_offline(console: Page, admin_gateway: AdminGateway) -> None:
    """Swagger UI from the gateway's own files: the page draws the admin API with no network."""
    console.goto(admin_gateway.url("/schema"))
    expect(console.locator("#swagger-container")).to_contain_text("/admin/api/events", timeout=15_000)
    expect(console.locator("#swagger-container")).to_contain_text("Gateway GO")


def test_logging_out_ends_the_session(console: Page, admin_gateway: AdminGateway) -> None:
    console.goto(admin_gateway.url("/console"))
    console.get_by_role("button", name="Sair").click()
    expect(console).to_have_url(re.compile(r"/console/login$"))
    console.goto(admin_gateway.url("/console/events"))
    expect(console).to_have_url(re.compile(r"/console/login"))



def test_the_sessions_page_shows_this_login_and_ending_it_logs_out(console: Page, admin_gateway: AdminGateway) -> None:
    console.get_by_role("link", name="Sessões").click()
    expect(console).to_have_url(re.compile(r"/console/sessions$"))
    mine = console.locator("#sessions tr", has_text="esta sessão")
    expect(mine).to_have_count(1)
    expect(mine).to_contain_text("127.0.0.1")
    screenshot(console, "sessoes")
    mine.get_by_role("button", name="Encerrar").click()
    expect(console).to_have_url(re.compile(r"/console/login$"))
    console.goto(admin_gateway.url("/console/events"))
    expect(console).to_have_url(re.compile(r"/console/login"))  # the cookie the browser still holds is refused
