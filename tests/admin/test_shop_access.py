"""Shops' admin tokens against a real `gateway serve`, on SQLite and on PostgreSQL: a shop's token
sees and acts on its own shop only, at every endpoint of the admin API and every page of the
console (in Chromium); another shop's event, delivery, replay or session is answered 404, as one
that never was, and no answer to one shop names the other. The gateway's token sees every shop.

Two shops, `loja-a` and `padaria`, each with a CRM that answers 200 and a receiver that refuses
(400, so dead deliveries to group and replay); padaria's file then gets a broken edit, refused
while its last good version goes on, which only padaria and the gateway may read about."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from gateway.admin.api import admin_api
from gateway.admin.console import console as console_router
from tests.admin.conftest import Watched
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Received, Sink

GATEWAY_TOKEN = "token-do-gateway-0123456789abc"
SHOP_TOKENS = {"loja-a": "token-da-loja-a-0123456789", "padaria": "token-da-padaria-012345678"}
SOURCE_TOKEN = "token-de-origem-123"
SHOPS = tuple(SHOP_TOKENS)

MAIN = """
version: 1
settings: {egress_allow: [127.0.0.0/8]}
sources: {}
"""
# The gateway's alerts: each shop's refusing receiver fails (an incident about a shop's
# destination), and the dead deliveries pass 0 (an incident about the gateway as a whole).
ALERTS = """destinations:
  avisos: {{type: http, url: "{receiver}/avisos"}}
alerts: {{to: avisos, failing_for: 1s, dead_over: 0, check_every: 300ms}}
"""


def shop_file(shop: str, receiver: str) -> str:
    """A shop's file; its destinations at `receiver` (http://127.0.0.1:port)."""
    return f"""
    version: 1
    sources:
      go-{shop}: {{token: "{SOURCE_TOKEN}", dedupe: false}}
    destinations:
      crm: {{type: http, url: "{receiver}/{shop}/crm"}}
      recusa: {{type: http, url: "{receiver}/{shop}/recusa"}}
    routes:
      - name: pedido-criado
        when: {{event_id: ORDER_CREATED}}
        send: {{to: crm, body: '{{"pedido": "{{{{ data.code }}}}"}}'}}
      - name: cancelamento
        when: {{event_id: ORDER_CANCEL}}
        send: {{to: recusa, body: '{{"cancelado": "{{{{ data.code }}}}"}}'}}
    """


def refuse_cancellations(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
    return (400, {}, b'{"erro": "recusado"}', 0.0) if request.path.endswith("/recusa") else (200, {}, b"{}", 0.0)


@dataclass
class ShopData:
    """What one shop has in the gateway: ids a test of the other shop must never see."""

    events: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    replay: str = ""  # a replay this shop's token started
    session: str = ""  # a console login of this shop's token
    cookie: str = ""

    def ids(self) -> list[str]:
        return [*self.events, *self.deliveries, self.replay, self.session]


@dataclass
class Shops:
    gateway: GatewayProcess
    sink: Sink
    data: dict[str, ShopData]

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.gateway.url(""), headers={"Authorization": f"Bearer {token}"}, timeout=30)


def other(shop: str) -> str:
    return next(s for s in SHOPS if s != shop)


def leaks(text: str, shops: Shops, viewer: str, asked: str = "") -> list[str]:
    """What of the other shop an answer to `viewer` names: its name (in its source, destinations,
    routes, file, codes) or any of its ids; what the request itself said (`asked`: an id in the
    path, a source in the body), an error may repeat."""
    for echoed in sorted(re.findall(r"[\w-]{3,}", asked), key=len, reverse=True):
        text = text.replace(echoed, "")
    hidden = other(viewer)
    found = [hidden] if hidden in text.lower() else []
    return found + [i for i in shops.data[hidden].ids() if i and i in text]


# --------------------------------------------------------------------------- the gateway


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shops(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shops]:
    with ExitStack() as stack:
        root = tmp_path_factory.mktemp(f"shops-{request.param}")
        sink = Sink(behaviour=refuse_cancellations)
        stack.callback(sink.close)
        project = Project(root)
        project.routes(MAIN + ALERTS.format(receiver=sink.url("")))
        for shop in SHOPS:
            project.write(f"routes.d/{shop}.yaml", shop_file(shop, sink.url("")))
        env = {"GATEWAY_ADMIN_TOKEN": GATEWAY_TOKEN, "GATEWAY_ADMIN_TOKENS": ",".join(f"{s}:{t}" for s, t in SHOP_TOKENS.items())}
        gateway = GatewayProcess(root, env)
        if request.param == "postgresql":
            from tests.postgres import fresh_schema

            gateway.database = stack.enter_context(fresh_schema())
        gateway.start()
        stack.callback(gateway.terminate)
        running = Shops(gateway, sink, {shop: _fill(gateway, shop) for shop in SHOPS})
        _settle(running)
        _alerted(running)
        for shop in SHOPS:
            _act_as(running, shop)
        _refuse_an_edit_of(project, running, "padaria")
        yield running


def _fill(gateway: GatewayProcess, shop: str) -> ShopData:
    """Two orders and a cancellation through the shop's own source."""
    data = ShopData()
    for number, name in enumerate(["order_created", "order_created", "order_cancel"]):
        event = json.loads((EVENTS / f"{name}.json").read_text())
        code = f"{shop.upper()}-{number:04d}"
        event["data"] = {**event["data"], "code": code, "id": code}
        answer = gateway.post(f"/hooks/go-{shop}?token={SOURCE_TOKEN}", json.dumps(event))
        assert answer.status_code == 202, answer.text
        data.events.append(answer.json()["id"])
    return data


def _settle(shops: Shops) -> None:
    """Every delivery at its end (the CRM's delivered, the refusing receiver's dead); their ids."""
    with shops.client(GATEWAY_TOKEN) as api:
        deadline = time.monotonic() + 30
        for shop, data in shops.data.items():
            while True:
                details = [api.get(f"/admin/api/events/{e}").json() for e in data.events]
                deliveries = [d for detail in details for d in detail["deliveries"]]
                if all(d["status"] in ("delivered", "dead") for d in deliveries) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert sorted(d["status"] for d in deliveries) == ["dead", "delivered", "delivered"], deliveries
            assert all(d["destination"].startswith(f"{shop}/") for d in deliveries)
            data.deliveries = [d["id"] for d in deliveries]
            data.dead = [d["id"] for d in deliveries if d["status"] == "dead"]


def _alerted(shops: Shops) -> None:
    """The alerts about each shop's refusing receiver and the dead deliveries are open."""
    expected = {"failing:loja-a/recusa", "failing:padaria/recusa", "dead_over"}
    with shops.client(GATEWAY_TOKEN) as api:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = {f"{a['kind']}:{a['subject']}" if a["subject"] else a["kind"] for a in api.get("/admin/api/alerts").json()}
            if found >= expected:
                return
            time.sleep(0.1)
    raise AssertionError(f"alerts open: {found}")


def _act_as(shops: Shops, shop: str) -> None:
    """A console login and a replay (of its own dead delivery) by the shop's token."""
    data = shops.data[shop]
    login = httpx.post(shops.gateway.url("/console/login"), data={"token": SHOP_TOKENS[shop]}, timeout=30)
    assert login.status_code == 303
    data.cookie = login.cookies["gateway_session"]
    with shops.client(SHOP_TOKENS[shop]) as api:
        sessions = api.get("/admin/api/sessions").json()
        assert len(sessions) == 1 and sessions[0]["shop"] == shop
        data.session = sessions[0]["id"]
        started = api.post("/admin/api/replays", json={"ids": data.dead})
        assert started.status_code == 202, started.text
        data.replay = started.json()["id"]
        _finished(api, data.replay)


def _finished(api: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = api.get(f"/admin/api/replays/{job_id}").json()
        if job["state"] != "running":
            return dict(job)
        time.sleep(0.05)
    raise AssertionError(f"replay {job_id} did not finish")


def _refuse_an_edit_of(project: Project, shops: Shops, shop: str) -> None:
    """A broken edit of the shop's file: refused, its last good version goes on."""
    project.write(f"routes.d/{shop}.yaml", (project.root / "routes.d" / f"{shop}.yaml").read_text().replace("to: crm", "to: cmr"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready = httpx.get(shops.gateway.url("/readyz"), timeout=10).json()
        if "refused_edit" in ready:
            assert ready["refused_edit"]["tenants"] == [shop]
            return
        time.sleep(0.1)
    raise AssertionError("the broken edit was not refused")


# --------------------------------------------------------------------------- the admin API


def _api_calls(shops: Shops, viewer: str) -> list[tuple[str, str, Any, int]]:
    """(method, path, JSON body, expected status): every endpoint, asked by `viewer`'s token
    for the other shop's things wherever an endpoint takes an id, a name or a filter."""
    hidden, theirs = other(viewer), shops.data[other(viewer)]
    event = json.loads((EVENTS / "order_created.json").read_text())
    return [
        ("GET", "/admin/api/events", None, 200),
        ("GET", f"/admin/api/events?source=go-{hidden}", None, 200),
        ("GET", f"/admin/api/events?destination={hidden}/crm", None, 200),
        ("GET", f"/admin/api/events?code={hidden.upper()}-0000", None, 200),
        ("GET", f"/admin/api/events?q={hidden.upper()}", None, 200),
        ("GET", f"/admin/api/events/{theirs.events[0]}", None, 404),
        ("GET", "/admin/api/deliveries?status=delivered", None, 200),
        ("GET", f"/admin/api/deliveries?status=dead&destination={hidden}/recusa", None, 200),
        ("GET", "/admin/api/deliveries/dead-groups", None, 200),
        ("GET", "/admin/api/routes", None, 200),
        ("GET", "/admin/api/overview", None, 200),
        ("GET", f"/admin/api/overview?shop={hidden}", None, 200),
        ("GET", "/admin/api/alerts", None, 200),
        ("GET", "/admin/api/metrics", None, 200),
        ("POST", "/admin/api/replays", {"ids": theirs.dead}, 202),
        ("POST", "/admin/api/replays", {"statuses": ["dead"], "destination": f"{hidden}/recusa"}, 202),
        ("GET", f"/admin/api/replays/{theirs.replay}", None, 404),
        ("POST", "/admin/api/dry-run", {"event": event, "source": f"go-{hidden}"}, 400),
        ("POST", "/admin/api/events", {"event": event, "source": f"go-{hidden}"}, 400),
        ("GET", "/admin/api/sessions", None, 200),
        ("POST", f"/admin/api/sessions/{theirs.session}/end", None, 404),
    ]


def test_the_leak_tests_cover_every_endpoint_of_the_admin_api(shops: Shops) -> None:
    """A new endpoint without a leak test fails here."""
    served = {(method, re.sub(r":\w+\}", "}", route.path)) for route in admin_api.routes for method in route.methods if method != "OPTIONS"}
    asked = {(method, re.sub(r"/admin/api/(events|replays|sessions)/[^/?]+", r"/admin/api/\1/{x}", path.split("?")[0])) for method, path, _, _ in _api_calls(shops, "loja-a")}
    named = {(m, re.sub(r"\{\w+\}", "{x}", p)) for m, p in served}
    assert named == asked


@pytest.mark.parametrize("viewer", SHOPS)
def test_a_shops_token_gets_nothing_of_another_shop_from_any_endpoint(shops: Shops, viewer: str) -> None:
    """Every endpoint, asked for the other shop's event, deliveries, replay, session, source and
    names: 404 or its own part only; no answer names the other shop or holds one of its ids."""
    with shops.client(SHOP_TOKENS[viewer]) as api:
        for method, path, body, status in _api_calls(shops, viewer):
            answer = api.request(method, path, json=body)
            assert answer.status_code == status, (path, answer.text)
            assert leaks(answer.text, shops, viewer, path + " " + json.dumps(body)) == [], (path, answer.text[:500])
            if answer.status_code == 202 and path == "/admin/api/replays":  # a replay of another shop's deliveries takes none of them
                assert _finished(api, answer.json()["id"])["queued"] == 0


@pytest.mark.parametrize("viewer", SHOPS)
def test_a_shops_token_sees_its_own_part_whole(shops: Shops, viewer: str) -> None:
    """Scoped, not empty: its own events, deliveries, routes, metrics and overview are all there."""
    mine = shops.data[viewer]
    with shops.client(SHOP_TOKENS[viewer]) as api:
        assert {e["id"] for e in api.get("/admin/api/events").json()["events"]} == set(mine.events)
        assert api.get(f"/admin/api/events/{mine.events[0]}").json()["source"] == f"go-{viewer}"
        assert {d["id"] for d in api.get("/admin/api/deliveries?status=delivered").json()["deliveries"]} | set(mine.dead) == set(mine.deliveries)
        assert [g["destination"] for g in api.get("/admin/api/deliveries/dead-groups").json()] == [f"{viewer}/recusa"]
        routes = api.get("/admin/api/routes").json()
        assert {r["name"] for r in routes["routes"]} == {f"{viewer}/pedido-criado", f"{viewer}/cancelamento"}
        assert routes["file"].endswith(f"routes.d/{viewer}.yaml")
        assert (routes["refused"] is not None) == (viewer == "padaria")  # its own refused edit, and only its own
        overview = api.get("/admin/api/overview").json()
        assert overview["shop"] == viewer and overview["shops"] == [viewer]
        assert [(a["kind"], a["subject"]) for a in overview["alerts"]] == [("failing", f"{viewer}/recusa")]  # not the gateway's own
        alerts = api.get("/admin/api/alerts").json()
        assert [a["subject"] for a in alerts] == [f"{viewer}/recusa"], alerts
        assert overview["by_status"] == {"delivered": 2, "dead": 1}
        assert {d["destination"] for d in overview["destinations"]} == {f"{viewer}/crm", f"{viewer}/recusa"}
        metrics = api.get("/admin/api/metrics").text
        assert f'gateway_events_received_total{{outcome="accepted",source="go-{viewer}",tenant="{viewer}"}} 3.0' in metrics
        assert f'gateway_deliveries_total{{destination="{viewer}/crm",outcome="delivered",tenant="{viewer}"}} 2.0' in metrics
        assert 'gateway_queue_depth{status="dead"} 1.0' in metrics
        assert "process_resident_memory_bytes" not in metrics  # nothing gateway-wide


def test_the_gateways_token_sees_every_shop_and_filters_the_overview(shops: Shops) -> None:
    """The gateway's token: both shops' events and sessions, and the overview of one shop asked."""
    with shops.client(GATEWAY_TOKEN) as api:
        listed = {e["id"] for e in api.get("/admin/api/events").json()["events"]}
        assert listed == set(shops.data["loja-a"].events) | set(shops.data["padaria"].events)
        assert {s["shop"] for s in api.get("/admin/api/sessions").json()} >= {"loja-a", "padaria"}
        whole = api.get("/admin/api/overview").json()
        assert whole["shop"] is None and whole["shops"] == ["loja-a", "padaria"]
        assert whole["by_status"] == {"delivered": 4, "dead": 2}
        one = api.get("/admin/api/overview?shop=padaria").json()
        assert one["shop"] == "padaria" and one["by_status"] == {"delivered": 2, "dead": 1}
        assert {d["destination"] for d in one["destinations"]} == {"padaria/crm", "padaria/recusa"}
        assert one["refused"]["tenants"] == ["padaria"]
        assert api.get("/admin/api/overview?shop=loja-a").json()["refused"] is None
        metrics = api.get("/admin/api/metrics").text
        assert 'tenant="loja-a"' in metrics and 'tenant="padaria"' in metrics


def test_another_shops_replay_leaves_its_deliveries_alone(shops: Shops) -> None:
    """After loja-a's token asked to replay padaria's dead delivery, it has still the attempts
    padaria's own replay gave it, no more."""
    with shops.client(GATEWAY_TOKEN) as api:
        dead = shops.data["padaria"].dead[0]
        before = api.get(f"/admin/api/events/{shops.data['padaria'].events[2]}").json()["deliveries"][0]
    with shops.client(SHOP_TOKENS["loja-a"]) as api:
        assert _finished(api, api.post("/admin/api/replays", json={"ids": [dead]}).json()["id"])["queued"] == 0
    time.sleep(0.5)  # a delivery wrongly queued would have had its attempt by now
    with shops.client(GATEWAY_TOKEN) as api:
        after = api.get(f"/admin/api/events/{shops.data['padaria'].events[2]}").json()["deliveries"][0]
    assert after["id"] == dead and after["attempts"] == before["attempts"] and after["status"] == "dead"


# --------------------------------------------------------------------------- the console, in Chromium


CONSOLE_PAGES = ["", "?shop={hidden}", "/events", "/events?source=go-{hidden}", "/events?q={HIDDEN}", "/deliveries?status=dead", "/deliveries?status=delivered", "/playground", "/routes", "/sessions"]


def _console_as(browser: Browser, shops: Shops, viewer: str) -> tuple[Page, Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR")
    watched = Watched(context.new_page())
    page = watched.page
    page.set_default_timeout(15_000)
    page.goto(shops.gateway.url("/console/login"))
    page.fill("#token", SHOP_TOKENS[viewer])
    page.click("button[type=submit]")
    expect(page.locator("#logged-shop")).to_have_text(f"Loja {viewer}")
    return page, watched


def test_the_console_leak_tests_cover_every_page(shops: Shops) -> None:
    """Every console route is visited by the Chromium test below (or is the login and logout)."""
    paths = {re.sub(r"\{\w+:\w+\}", "{x}", route.path) for route in console_router.routes}
    visited = {"/console" + p.split("?")[0] for p in CONSOLE_PAGES} | {"/console/events/{x}", "/console/replays/{x}", "/console/events/{x}/reveal"}
    posted = {"/console/replays", "/console/playground/dry-run", "/console/playground/send", "/console/sessions/{x}/end"}
    assert paths == visited | posted | {"/console/login", "/console/logout"}


@pytest.mark.parametrize("viewer", SHOPS)
def test_a_shops_console_shows_nothing_of_another_shop(browser: Browser, shops: Shops, viewer: str) -> None:
    """Logged in with a shop's token, in Chromium: every page shows its own shop only; the other
    shop's event, replay and session answer 404, and its source is refused by the playground."""
    page, watched = _console_as(browser, shops, viewer)
    hidden, theirs = other(viewer), shops.data[other(viewer)]
    for path in CONSOLE_PAGES:
        asked = "/console" + path.format(hidden=hidden, HIDDEN=hidden.upper())
        answer = page.goto(shops.gateway.url(asked))
        assert answer is not None and answer.status == 200, path
        page.wait_for_load_state("networkidle")
        assert leaks(page.content(), shops, viewer, asked.replace("?", " ").replace("=", " ")) == [], path
    page.goto(shops.gateway.url("/console/events"))
    expect(page.locator("tbody tr[data-event-id]")).to_have_count(3)
    for path in (f"/console/events/{theirs.events[0]}", f"/console/replays/{theirs.replay}"):
        answer = page.goto(shops.gateway.url(path))
        assert answer is not None and answer.status == 404 and leaks(page.content(), shops, viewer, path) == [], path
    page.goto(shops.gateway.url("/console"))
    csrf = json.loads(page.locator("body").get_attribute("hx-headers") or "{}")["X-CSRF-Token"]
    event = (EVENTS / "order_created.json").read_text()
    posts = [
        (f"/console/events/{theirs.events[0]}/reveal", {}, 404),
        (f"/console/sessions/{theirs.session}/end", {}, 404),
        ("/console/playground/dry-run", {"event": event, "source": f"go-{hidden}"}, 200),
        ("/console/playground/send", {"event": event, "source": f"go-{hidden}"}, 200),
        ("/console/replays", {"ids": ",".join(theirs.dead)}, 200),
    ]
    for path, form, status in posts:
        answer = page.request.post(shops.gateway.url(path), form=form, headers={"X-CSRF-Token": csrf})
        assert answer.status == status, (path, answer.text())
        assert leaks(answer.text(), shops, viewer, path + " " + json.dumps(form)) == [], (path, answer.text()[:500])
    assert [p for p in watched.problems if "status of 404" not in p] == [], watched.problems  # the 404s asked for above: no script error, no CSP violation
    page.context.close()
    assert httpx.get(shops.gateway.url("/console/sessions"), cookies={"gateway_session": theirs.cookie}, timeout=30).status_code == 200  # its session goes on


def test_the_gateways_console_filters_the_overview_by_shop(browser: Browser, shops: Shops) -> None:
    """The gateway's login sees every shop, and a shop picked in the overview shows its part only."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(shops.gateway.url("/console/login"))
    page.fill("#token", GATEWAY_TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#shop-filter a")).to_have_text(["Todas as lojas", "loja-a", "padaria"])
    expect(page.locator("#destinations tbody tr")).to_have_count(5)  # both shops' and the alerts' receiver
    expect(page.locator("#alerts li.open")).to_have_count(4)  # each shop's failing receiver, the dead deliveries, padaria's refused edit
    page.click("#shop-filter >> text=padaria")
    expect(page.locator("#overview-shop")).to_have_text("padaria")
    expect(page.locator("#destinations tbody tr")).to_have_count(2)
    expect(page.locator("#destinations")).not_to_contain_text("loja-a")
    expect(page.locator("#refused-edit")).to_contain_text("routes.d/padaria.yaml")
    context.close()


def test_an_unknown_shop_in_the_tokens_stops_the_start(tmp_path: Path) -> None:
    """A token for a shop that has no routes.d file: serve refuses to start, saying which (before
    it opens any database)."""
    project = Project(tmp_path)
    project.routes(MAIN)
    project.write("routes.d/loja-a.yaml", shop_file("loja-a", "http://127.0.0.1:9"))
    result = project.gateway("serve", "--port", "0", env={"GATEWAY_ADMIN_TOKENS": f"loja-b:{SHOP_TOKENS['loja-a']}"})
    assert result.returncode == 1
    assert "GATEWAY_ADMIN_TOKENS: 'loja-b' is not a shop of this gateway (a routes.d/loja-b.yaml); shops: loja-a" in result.stderr
    assert SHOP_TOKENS["loja-a"] not in result.stderr + result.stdout
