"""Changing routes.yaml under a running gateway: hot reload, refused broken edits, shadow routes."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Sink

TOKEN = "token-de-teste-123"


def routes(sink: Sink, path: str, shadow: bool = False, destination: str = "sink") -> str:
    return f"""
    version: 1
    settings: {{egress_allow: [127.0.0.0/8]}}
    sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
    destinations:
      sink: {{type: http, url: "{sink.url(path)}"}}
    routes:
      - name: pedidos
        shadow: {str(shadow).lower()}
        when: {{event_id: ORDER_CREATED}}
        send: {{to: {destination}, body: '{{"id": "{{{{ data.id }}}}"}}'}}
    """


def version(gateway: GatewayProcess) -> str:
    return httpx.get(gateway.url("/readyz")).json()["config_version"]


def wait_for_version_change(gateway: GatewayProcess, old: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = version(gateway)
        if current != old:
            return current
        time.sleep(0.1)
    raise AssertionError(f"the config version stayed {old} for {timeout} s:\n{gateway.log()[-2000:]}")


def post(gateway: GatewayProcess, order: str) -> str:
    body = json.loads((EVENTS / "order_created.json").read_text())
    body["data"]["id"] = order
    response = gateway.post(f"/hooks/go?token={TOKEN}", json.dumps(body))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_edit_is_applied_without_restart_and_broken_edit_is_refused(project: Project, sink: Sink) -> None:
    project.routes(routes(sink, "/antes"))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        post(gateway, "1")
        sink.wait_for(1, path="/antes")
        first = version(gateway)

        project.routes(routes(sink, "/depois"))
        second = wait_for_version_change(gateway, first)
        event_id = post(gateway, "2")
        assert sink.wait_for(1, path="/depois")[0].json() == {"id": "2"}
        shown = json.loads(gateway.cli("events", "show", event_id, "--json").stdout)
        assert shown["config_version"] == second and shown["deliveries"][0]["config_version"] == second

        project.routes(routes(sink, "/depois", destination="snk"))  # a typo: must not replace the running routes
        os.kill(gateway.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while "reload refused" not in gateway.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "reload refused, routes version" in gateway.log()
        assert "routes.yaml:10:16: route 'pedidos' sends to unknown destination 'snk' (did you mean 'sink'?)" in gateway.log()
        assert version(gateway) == second
        post(gateway, "3")
        assert [r.json()["id"] for r in sink.wait_for(2, path="/depois")] == ["2", "3"]
        metrics = httpx.get(gateway.url("/metrics")).text
        assert 'gateway_config_reloads_total{outcome="applied"} 1.0' in metrics
        assert 'gateway_config_reloads_total{outcome="refused"}' in metrics
    finally:
        gateway.kill()


def test_a_reload_refuses_what_check_refuses_a_template_failing_on_a_sample(project: Project, sink: Sink) -> None:
    """An edit that loads but whose template fails on the sample event it matches is what
    `check` exits 1 on: the reload refuses it in check's words and the running routes stay."""
    project.routes(routes(sink, "/in"))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        first = version(gateway)
        project.routes(routes(sink, "/in").replace("data.id }}", "data.user.nome }}"))
        checked = project.gateway("check")
        assert checked.returncode == 1
        expected = "routes.yaml:10:50: the field 'nome' is not in this object (did you mean 'name'?)"
        assert expected in checked.stdout
        deadline = time.monotonic() + 15
        while "reload refused" not in gateway.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"reload refused, routes version {first} stays in force: {expected}" in gateway.log()
        assert version(gateway) == first
        post(gateway, "7")
        assert sink.wait_for(1)[0].json() == {"id": "7"}
    finally:
        gateway.kill()


def test_serve_refuses_to_start_on_what_check_refuses(project: Project, sink: Sink) -> None:
    """A restart must not put live what a reload refused: serve exits 1 with check's errors."""
    project.routes(routes(sink, "/in").replace("data.id }}", "data.user.nome }}"))
    started = project.gateway("serve", "--port", "1", env={"GO_WEBHOOK_TOKEN": TOKEN})
    assert started.returncode == 1
    assert "routes.yaml:10:50: the field 'nome' is not in this object (did you mean 'name'?)" in started.stderr
    assert "was not loaded" in started.stderr and "Traceback" not in started.stderr


def test_template_edit_is_picked_up(project: Project, sink: Sink) -> None:
    project.write("templates/meu.json.j2", '{"versao": 1, "id": "{{ data.id }}"}')
    project.routes(routes(sink, "/in").replace("""body: '{"id": "{{ data.id }}"}'""", "template: meu.json.j2"))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        first = version(gateway)
        project.write("templates/meu.json.j2", '{"versao": 2, "id": "{{ data.id }}"}')
        wait_for_version_change(gateway, first)
        post(gateway, "9")
        assert sink.wait_for(1)[0].json() == {"versao": 2, "id": "9"}
    finally:
        gateway.kill()


def test_an_edited_include_is_picked_up(project: Project, sink: Sink) -> None:
    """A partial that the route's template includes is part of the version too."""
    project.write("templates/_rodape.j2", '"rodape": 1')
    project.write("templates/meu.json.j2", '{"id": "{{ data.id }}", {% include "_rodape.j2" %}}')
    project.routes(routes(sink, "/in").replace("""body: '{"id": "{{ data.id }}"}'""", "template: meu.json.j2"))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        first = version(gateway)
        post(gateway, "1")  # the include is rendered (and cached) once
        assert sink.wait_for(1)[0].json() == {"id": "1", "rodape": 1}
        project.write("templates/_rodape.j2", '"rodape": 2')
        wait_for_version_change(gateway, first)
        post(gateway, "2")
        assert sink.wait_for(2)[1].json() == {"id": "2", "rodape": 2}
    finally:
        gateway.kill()


def test_events_after_a_reload_use_the_reloaded_routes_even_once_the_file_is_broken(project: Project, sink: Sink) -> None:
    """Good edit, reloaded; then a broken save before the next event comes. The writer and the
    deliverer run the routes the HTTP process checked, not what the disk holds by then."""
    project.routes(routes(sink, "/antes"))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        first = version(gateway)
        project.routes(routes(sink, "/depois"))
        second = wait_for_version_change(gateway, first)
        project.routes("version: 1\nroutes: [")  # saved half-written
        deadline = time.monotonic() + 15
        while "reload refused" not in gateway.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        event_id = post(gateway, "7")
        assert sink.wait_for(1, path="/depois")[0].json() == {"id": "7"}
        assert sink.bodies("/antes") == []
        shown = json.loads(gateway.cli("events", "show", event_id, "--json").stdout)
        assert shown["config_version"] == second and shown["deliveries"][0]["config_version"] == second
    finally:
        gateway.kill()


def test_a_restarted_writer_runs_the_routes_in_force_not_the_broken_file(project: Project, sink: Sink) -> None:
    project.routes(routes(sink, "/in"))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        running = version(gateway)
        project.routes("version: 1\nroutes: [")
        writer = gateway.child("gateway.service.ingest_child")
        os.kill(writer, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (gateway.child("gateway.service.ingest_child") == writer or httpx.get(gateway.url("/readyz")).status_code != 200):
            time.sleep(0.1)
        ready = httpx.get(gateway.url("/readyz")).json()
        assert (ready["status"], ready["config_version"]) == ("ready", running)
        post(gateway, "8")
        assert sink.wait_for(1)[0].json() == {"id": "8"}
    finally:
        gateway.kill()


def test_shadow_route_records_without_sending_until_flipped(project: Project, sink: Sink) -> None:
    project.routes(routes(sink, "/in", shadow=True))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        event_id = post(gateway, "sombra")
        shown = json.loads(gateway.cli("events", "show", event_id, "--json").stdout)
        assert shown["deliveries"][0]["status"] == "shadow"
        assert json.loads(shown["deliveries"][0]["body"]) == {"id": "sombra"}
        assert 'gateway_deliveries_total{destination="sink",outcome="shadow",tenant=""} 1.0' in httpx.get(gateway.url("/metrics")).text
        time.sleep(1.5)
        assert sink.received == []

        old = version(gateway)
        project.routes(routes(sink, "/in", shadow=False))
        wait_for_version_change(gateway, old)
        post(gateway, "ao-vivo")
        assert [r.json()["id"] for r in sink.wait_for(1)] == ["ao-vivo"]
    finally:
        gateway.kill()


def test_rerender_after_a_template_fix_delivers_the_corrected_body(project: Project, sink: Sink) -> None:
    """A delivery dead because of a template bug arrives fixed after `replay --rerender`;
    the old body stays in the history. A delivery whose template failed is re-rendered too."""
    import sqlite3

    sink.behaviour = lambda request, count: (200, {}, b"ok", 0) if "pedido" in request.json() else (400, {}, b"falta o pedido", 0)
    project.without_samples()
    project.write("templates/erp.json.j2", '{"pedio": "{{ data.code }}"}')  # the bug: a misspelt field
    project.write("templates/outro.json.j2", '{"nome": "{{ data.user.nome }}"}')  # fails to render
    project.routes(
        f"""
        version: 1
        settings: {{egress_allow: [127.0.0.0/8]}}
        sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}"}}}}
        destinations:
          sink: {{type: http, url: "{sink.url('/in')}"}}
        routes:
          - name: pedidos
            when: {{event_id: ORDER_CREATED}}
            send: {{to: sink, template: erp.json.j2}}
          - name: outro
            when: {{event_id: ORDER_CREATED}}
            send: {{to: sink, template: outro.json.j2}}
        """
    )
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        event_id = post(gateway, "42")
        sink.wait_for(1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            statuses = {d["route"]: d["status"] for d in json.loads(gateway.cli("events", "show", event_id, "--json").stdout)["deliveries"]}
            if statuses.get("pedidos") == "dead":
                break
            time.sleep(0.1)
        assert statuses == {"pedidos": "dead", "outro": "failed"}

        project.write("templates/erp.json.j2", '{"pedido": "{{ data.code }}"}')
        project.write("templates/outro.json.j2", '{"pedido": "outro", "nome": "{{ data.user.name }}"}')
        replayed = gateway.cli("replay", "--rerender")
        assert replayed.returncode == 0, replayed.stderr
        assert "2 deliveries re-rendered" in replayed.stdout
        bodies = [r.json() for r in sink.wait_for(3)[1:]]
        assert sorted(bodies, key=str) == sorted([{"pedido": "0000593098"}, {"pedido": "outro", "nome": "teste"}], key=str)
        shown = {d["route"]: d for d in json.loads(gateway.cli("events", "show", event_id, "--json").stdout)["deliveries"]}
        assert shown["pedidos"]["replaced_bodies"][0]["body"] == '{"pedio": "0000593098"}'
        assert '{"pedio": "0000593098"}' in gateway.cli("events", "show", event_id).stdout
    finally:
        gateway.kill()
    with sqlite3.connect(project.root / "data" / "gateway.db") as db:
        history = dict(db.execute("SELECT d.route, r.body FROM replaced_bodies r JOIN deliveries d ON d.id = r.delivery_id").fetchall())
    assert history == {"pedidos": '{"pedio": "0000593098"}', "outro": None}


def test_reload_during_deliveries_loses_and_duplicates_nothing(project: Project, sink: Sink) -> None:
    """Deliveries in flight when the routes change arrive exactly once."""
    from tests.harness import always

    sink.behaviour = always(200, delay=0.3)
    project.routes(routes(sink, "/in"))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        for number in range(20):
            post(gateway, f"voo-{number}")
        old = version(gateway)
        project.routes(routes(sink, "/in").replace("name: pedidos", "name: pedidos-renomeada"))
        wait_for_version_change(gateway, old)
        post(gateway, "depois")
        received = sink.wait_for(21, timeout=60)
        time.sleep(1.0)  # anything sent twice would have arrived by now
        ids = [r.json()["id"] for r in sink.received]
        assert sorted(ids) == sorted([f"voo-{n}" for n in range(20)] + ["depois"]), ids
        assert len(received) == len(ids) == 21
    finally:
        gateway.kill()


def shop_routes(sink: Sink, shop: str, path: str) -> str:
    return f"""
    version: 1
    sources: {{go-{shop}: {{token: "token-da-{shop}-123", dedupe: false}}}}
    destinations:
      crm: {{type: http, url: "{sink.url(path)}"}}
    routes:
      - name: pedidos
        when: {{event_id: ORDER_CREATED}}
        send: {{to: crm, body: '{{"loja": "{shop}", "id": "{{{{ data.id }}}}"}}'}}
    """


def post_to_shop(gateway: GatewayProcess, shop: str, order: str) -> None:
    body = json.loads((EVENTS / "order_created.json").read_text())
    body["data"]["id"] = order
    response = gateway.post(f"/hooks/go-{shop}?token=token-da-{shop}-123", json.dumps(body))
    assert response.status_code == 202, response.text


def test_a_broken_shop_file_keeps_that_shop_running_while_another_shops_edit_applies(project: Project, sink: Sink, store_url: str) -> None:
    """Through `gateway serve` (on SQLite with its ingest and delivery children, and on
    PostgreSQL): loja-a's file breaks and loja-b's changes in one edit; loja-b's new route is in
    force, loja-a still delivers with its old one, and /readyz and the console say that loja-a's
    edit was refused, at its file:line."""
    project.routes("version: 1\nsettings: {egress_allow: [127.0.0.0/8]}\nsources: {}\n")
    project.write("routes.d/loja-a.yaml", shop_routes(sink, "loja-a", "/a"))
    project.write("routes.d/loja-b.yaml", shop_routes(sink, "loja-b", "/b"))
    admin = "token-admin-de-teste-0123456789"
    gateway = GatewayProcess(project.root, {"GATEWAY_ADMIN_TOKEN": admin})
    gateway.database = store_url
    gateway.start()
    try:
        before = version(gateway)
        assert set(httpx.get(gateway.url("/readyz")).json()["tenants"]) == {"loja-a", "loja-b"}
        project.write("routes.d/loja-a.yaml", shop_routes(sink, "loja-a", "/a").replace("to: crm", "to: cmr"))
        project.write("routes.d/loja-b.yaml", shop_routes(sink, "loja-b", "/b-novo"))
        wait_for_version_change(gateway, before)
        ready = httpx.get(gateway.url("/readyz")).json()
        assert ready["status"] == "ready" and ready["refused_edit"]["tenants"] == ["loja-a"]
        assert any("routes.d/loja-a.yaml:8:" in p and "unknown destination 'cmr'" in p for p in ready["refused_edit"]["problems"])
        post_to_shop(gateway, "loja-a", "1")
        post_to_shop(gateway, "loja-b", "2")
        assert [r.json() for r in sink.wait_for(1, path="/a")] == [{"loja": "loja-a", "id": "1"}]  # its last good version
        assert [r.json() for r in sink.wait_for(1, path="/b-novo")] == [{"loja": "loja-b", "id": "2"}]  # the edit applied
        with httpx.Client(base_url=gateway.url(""), timeout=10) as browser:
            assert browser.post("/console/login", data={"token": admin}).status_code == 303
            overview = browser.get("/console").text
        assert "A edição da loja loja-a foi recusada" in overview and "as outras lojas seguem normalmente" in overview
        assert "reload of shop loja-a refused, its version" in gateway.log()
    finally:
        gateway.terminate()
