"""The admin API against a real `gateway serve` on SQLite: who may call it, what it shows (and
masks), replay, dry-run, the routes in force, the overview, and its place in /schema."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from tests.admin.conftest import ADMIN_TOKEN, BEARER, CRM_SECRET, AdminGateway, start_admin_gateway
from tests.conftest import EVENTS
from tests.harness import GatewayProcess


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer errado-errado-errado"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}])
def test_a_missing_or_wrong_token_is_refused_with_401(admin_gateway: AdminGateway, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/admin/api/events"), ("POST", "/admin/api/replays"), ("GET", "/admin/api/routes")]:
        answer = httpx.request(method, admin_gateway.url(path), headers=headers, json={}, timeout=30)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json()["error"] == "unauthorized" and answer.json()["detail"]


def test_wrong_tokens_are_answered_more_and_more_slowly(admin_gateway: AdminGateway) -> None:
    durations = []
    for _ in range(3):
        started = time.monotonic()
        answer = httpx.get(admin_gateway.url("/admin/api/events"), headers={"Authorization": "Bearer chute-chute-chute"}, timeout=30)
        durations.append(time.monotonic() - started)
        assert answer.status_code == 401
    # each failure from this address adds half a second to the next answer (earlier tests' too)
    assert durations[1] - durations[0] >= 0.4 and durations[2] - durations[1] >= 0.4, durations


def test_a_session_cookie_without_the_csrf_token_cannot_change_anything(admin_gateway: AdminGateway) -> None:
    with httpx.Client(base_url=admin_gateway.url(""), timeout=30) as browser:
        login = browser.post("/console/login", data={"token": ADMIN_TOKEN, "next": "/console"})
        assert login.status_code == 303 and "gateway_session" in browser.cookies
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert browser.get("/admin/api/events").status_code == 200  # reading needs no CSRF token
        refused = browser.post("/admin/api/replays", json={"statuses": ["dead"]})
        assert refused.status_code == 403 and refused.json()["error"] == "csrf_missing"
        forged = browser.post("/admin/api/replays", json={"statuses": ["dead"]}, headers={"X-CSRF-Token": "adivinhado"})
        assert forged.status_code == 403
        page = browser.get("/console").text
        csrf = page.split('"X-CSRF-Token": "', 1)[1].split('"', 1)[0]
        assert browser.post("/admin/api/replays", json={"statuses": ["dead"]}, headers={"X-CSRF-Token": csrf}).status_code == 202


def test_behind_https_the_session_cookie_is_secure(admin_gateway: AdminGateway) -> None:
    login = httpx.post(admin_gateway.url("/console/login"), data={"token": ADMIN_TOKEN}, headers={"X-Forwarded-Proto": "https"}, timeout=30)
    assert login.status_code == 303 and "secure" in login.headers["set-cookie"].lower()
    plain = httpx.post(admin_gateway.url("/console/login"), data={"token": ADMIN_TOKEN}, timeout=30)
    assert "secure" not in plain.headers["set-cookie"].lower()
    assert login.headers["location"] == "/console"
    elsewhere = httpx.post(admin_gateway.url("/console/login"), data={"token": ADMIN_TOKEN, "next": "//evil.example.com/console"}, timeout=30)
    assert elsewhere.headers["location"] == "/console"  # a login link never sends anyone away


def test_console_pages_carry_a_content_security_policy_without_inline_script(admin_gateway: AdminGateway) -> None:
    page = httpx.get(admin_gateway.url("/console/login"), timeout=30)
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None  # every script is a file of the gateway's


def test_events_are_listed_newest_first_with_filters(admin_gateway: AdminGateway) -> None:
    first = admin_gateway.post_event(code="FILTRO-1")
    second = admin_gateway.post_event("order_cancel", code="FILTRO-2")
    api = admin_gateway.api
    newest = api.get("/admin/api/events", params={"limit": 2}).json()
    assert [e["id"] for e in newest["events"]] == [second, first] and newest["next"] == first
    assert [e["id"] for e in api.get("/admin/api/events", params={"code": "FILTRO-1"}).json()["events"]] == [first]
    cancelled = api.get("/admin/api/events", params={"type": "ORDER_CANCEL", "code": "FILTRO-2"}).json()["events"]
    assert [e["id"] for e in cancelled] == [second] and cancelled[0]["code"] == "FILTRO-2"
    assert api.get("/admin/api/events", params={"source": "nenhuma", "code": "FILTRO-1"}).json()["events"] == []
    assert api.get("/admin/api/events", params={"destination": "instavel", "code": "FILTRO-1"}).json()["events"] == []
    assert api.get("/admin/api/events", params={"since": time.time() + 60}).json()["events"] == []
    older = api.get("/admin/api/events", params={"before": second, "limit": 1}).json()["events"]
    assert [e["id"] for e in older] == [first]
    assert api.get("/admin/api/events", params={"q": "FILTRO-2"}).json()["events"][0]["id"] == second
    bad = api.get("/admin/api/events", params={"status": "perdido"})
    assert bad.status_code == 400 and "perdido" in bad.json()["detail"]
    assert api.get("/admin/api/events", params={"limit": 0}).status_code == 400


def test_one_event_shows_deliveries_attempts_and_masks_personal_data(admin_gateway: AdminGateway) -> None:
    event_id = admin_gateway.post_event(code="MASCARA-1")
    shown = admin_gateway.settled(event_id, "delivered")
    user = shown["payload"]["data"]["user"]
    assert shown["masked"] and user["email"] == "***" and user["document"] == "***" and user["cellphone"] == "***"
    assert user["name"] == "teste"  # not a document, an e-mail or a phone
    [delivery] = shown["deliveries"]
    assert delivery["destination"] == "crm" and delivery["route"] == "pedido-no-crm"
    assert "teste@teste.com" not in delivery["body"] and "MASCARA-1" in delivery["body"]
    [attempt] = delivery["attempt_log"]
    assert attempt["status_code"] == 200 and attempt["outcome"] == "delivered" and attempt["response"] == '{"ok": true}' and attempt["duration_ms"] > 0
    unmasked = admin_gateway.event(event_id, unmasked="true")
    assert not unmasked["masked"] and unmasked["payload"]["data"]["user"]["email"] == "teste@teste.com"
    assert "teste@teste.com" in unmasked["deliveries"][0]["body"]
    log = admin_gateway.gateway.log()
    assert f"personal data of event {event_id} shown unmasked" in log and "teste@teste.com" not in log
    assert admin_gateway.api.get("/admin/api/events/nao-existe").status_code == 404


def test_a_dead_delivery_is_replayed_and_arrives(admin_gateway: AdminGateway) -> None:
    event_id = admin_gateway.post_event("order_cancel", code="REENVIO-1")
    dead = admin_gateway.settled(event_id, "dead")
    assert dead["deliveries"][0]["attempt_log"][0]["status_code"] == 400
    listed = admin_gateway.api.get("/admin/api/deliveries", params={"status": "dead", "destination": "instavel"}).json()
    assert dead["deliveries"][0]["id"] in [d["id"] for d in listed["deliveries"]] and listed["total"] >= 1
    groups = admin_gateway.api.get("/admin/api/deliveries/dead-groups").json()
    assert any(g["destination"] == "instavel" and g["reason"] == "HTTP 400" and dead["deliveries"][0]["id"] in g["delivery_ids"] for g in groups), groups
    admin_gateway.flaky.refusing.clear()
    try:
        before = len(admin_gateway.sink.received)
        job = admin_gateway.api.post("/admin/api/replays", json={"ids": [dead["deliveries"][0]["id"]]})
        assert job.status_code == 202, job.text
        progress = _finished(admin_gateway, job.json()["id"])
        assert progress["state"] == "done" and progress["queued"] == 1 and progress["total"] == 1
        delivered = admin_gateway.settled(event_id, "delivered")
        assert [a["outcome"] for a in delivered["deliveries"][0]["attempt_log"]] == ["dead", "delivered"]
        assert any(r.path == "/instavel" and b"REENVIO-1" in r.body for r in admin_gateway.sink.received[before:])
    finally:
        admin_gateway.flaky.refusing.set()


def test_a_replay_with_rerender_renders_with_the_routes_in_force(admin_gateway: AdminGateway) -> None:
    event_id = admin_gateway.post_event("order_cancel", code="RERENDER-1")
    dead = admin_gateway.settled(event_id, "dead")
    job = admin_gateway.api.post("/admin/api/replays", json={"ids": [event_id], "rerender": True}).json()
    assert job["rerender"]
    progress = _finished(admin_gateway, job["id"])
    assert progress["queued"] == 1, progress
    again = admin_gateway.settled(event_id, "dead")  # still refused, but sent again
    assert len(again["deliveries"][0]["attempt_log"]) == len(dead["deliveries"][0]["attempt_log"]) + 1
    assert admin_gateway.api.post("/admin/api/replays", json={"statuses": ["perdido"]}).status_code == 400
    on_its_way = admin_gateway.api.post("/admin/api/replays", json={"statuses": ["sending"]})
    assert on_its_way.status_code == 400 and on_its_way.json()["error"] == "not_resendable"
    assert admin_gateway.api.post("/admin/api/replays", json={"campo": 1}).status_code == 400
    assert admin_gateway.api.get("/admin/api/replays/nenhum").status_code == 404


def _finished(admin_gateway: AdminGateway, job_id: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        progress = admin_gateway.api.get(f"/admin/api/replays/{job_id}").json()
        if progress["state"] != "running":
            return progress
        time.sleep(0.05)
    raise AssertionError(f"replay {job_id} did not finish: {progress}")


def test_dry_run_gives_each_routes_verdict_and_the_exact_request_with_secrets_masked(admin_gateway: AdminGateway) -> None:
    event = (EVENTS / "order_created.json").read_text()
    import json

    answer = admin_gateway.api.post("/admin/api/dry-run", json={"event": json.loads(event)})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    by_name = {r["name"]: r for r in result["routes"]}
    assert by_name["pedido-no-crm"]["matched"] and not by_name["pedido-pago"]["matched"]
    assert "data.status" in by_name["pedido-pago"]["reasons"][0]["text"] and by_name["pedido-pago"]["reasons"][0]["location"].startswith("routes.yaml:")
    [planned] = by_name["pedido-no-crm"]["deliveries"]
    [request] = planned["requests"]
    assert request["method"] == "POST" and request["url"].endswith("/crm") and request["headers"]["Authorization"] == "Bearer ***"
    assert CRM_SECRET not in answer.text
    refused = admin_gateway.api.post("/admin/api/dry-run", json={"event": {"data": {}}})
    assert refused.status_code == 400 and "event_id" in refused.json()["detail"]
    unknown = admin_gateway.api.post("/admin/api/dry-run", json={"event": {"event_id": "X"}, "source": "loja"})
    assert unknown.status_code == 400 and "loja" in unknown.json()["detail"]


def test_an_event_posted_to_the_admin_api_is_stored_and_delivered(admin_gateway: AdminGateway) -> None:
    import json

    event = json.loads((EVENTS / "order_created.json").read_text())
    event["data"]["code"] = event["data"]["id"] = "ENVIADO-1"
    answer = admin_gateway.api.post("/admin/api/events", json={"event": event})
    assert answer.status_code == 202, answer.text
    assert answer.json()["deliveries"] == 1 and not answer.json()["duplicate"]
    admin_gateway.settled(answer.json()["id"], "delivered")


def test_routes_in_force_with_secrets_masked_and_how_often_they_matched(admin_gateway: AdminGateway) -> None:
    admin_gateway.post_event(code="ROTAS-1")
    answer = admin_gateway.api.get("/admin/api/routes")
    assert answer.status_code == 200 and CRM_SECRET not in answer.text
    found = answer.json()
    assert found["refused"] is None and len(found["version"]) == 12
    routes = {r["name"]: r for r in found["routes"]}
    assert routes["pedido-no-crm"]["event_ids"] == ["ORDER_CREATED"] and routes["pedido-no-crm"]["destinations"] == ["crm"]
    assert routes["pedido-no-crm"]["matched_last_24h"] >= 1 and routes["pedido-pago"]["matched_last_24h"] == 0
    assert "data.status" in routes["pedido-pago"]["condition"]
    crm = next(d for d in found["destinations"] if d["name"] == "crm")
    assert crm["type"] == "http" and crm["settings"]["headers"]["Authorization"] == "***"


def test_overview_counts_the_last_hour_and_the_destinations(admin_gateway: AdminGateway) -> None:
    event_id = admin_gateway.post_event(code="VISAO-1")
    admin_gateway.settled(event_id, "delivered")
    found = admin_gateway.api.get("/admin/api/overview").json()
    assert len(found["minutes"]) == 60 and sum(m["events"] for m in found["minutes"]) >= 1 and sum(m["delivered"] for m in found["minutes"]) >= 1
    assert found["by_status"]["delivered"] >= 1
    health = {d["destination"]: d for d in found["destinations"]}
    assert health["crm"]["state"] == "ok" and health["crm"]["delivered"] >= 1


def test_a_destination_that_answered_410_is_shown_stopped(admin_gateway: AdminGateway) -> None:
    admin_gateway.settled(admin_gateway.post_event("order_delivery_change_status", code="SUMIU-1"), "dead")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = {d["destination"]: d for d in admin_gateway.api.get("/admin/api/overview").json()["destinations"]}
        if health["sumiu"]["state"] == "stopped":
            break
        time.sleep(0.1)
    assert health["sumiu"]["state"] == "stopped" and health["crm"]["state"] == "ok", health


def test_the_admin_api_is_in_the_openapi_schema_and_schema_works_offline(admin_gateway: AdminGateway) -> None:
    document = httpx.get(admin_gateway.url("/schema/openapi.json"), timeout=30).json()
    paths = document["paths"]
    for path in ["/admin/api/events", "/admin/api/events/{event_id}", "/admin/api/deliveries", "/admin/api/replays", "/admin/api/dry-run", "/admin/api/routes", "/admin/api/overview"]:
        assert path in paths, sorted(paths)
    assert "EventDetail" in document["components"]["schemas"]
    assert not any(p.startswith("/console") for p in paths)
    page = httpx.get(admin_gateway.url("/schema"), timeout=30).text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)""", page)
    assert len(assets) == 4 and all(a.startswith("/static/") for a in assets), assets  # CSS, two scripts, the icon
    for asset in assets:
        assert httpx.get(admin_gateway.url(asset), timeout=30).status_code == 200, asset


def test_without_an_admin_token_the_admin_api_and_console_are_off(tmp_path: Path) -> None:
    gateway, sink, _ = start_admin_gateway(tmp_path, {"GATEWAY_ADMIN_TOKEN": ""})
    try:
        assert "off" in httpx.get(gateway.url("/readyz"), timeout=30).json()["admin"]
        for path in ["/admin/api/events", "/console", "/console/login"]:
            answer = httpx.get(gateway.url(path), headers=BEARER, timeout=30, follow_redirects=False)
            assert answer.status_code == 404 and answer.json()["error"] == "admin_off", (path, answer.text)
    finally:
        gateway.terminate()
        sink.close()


def test_a_short_admin_token_is_refused_at_start(tmp_path: Path) -> None:
    gateway, sink, _ = start_admin_gateway(tmp_path / "ok")
    gateway.terminate()
    sink.close()
    short = GatewayProcess(tmp_path / "ok", {"GATEWAY_ADMIN_TOKEN": "curto"})
    with pytest.raises(AssertionError, match="too short"):
        short.start()
