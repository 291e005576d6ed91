"""HubSpot CRM v3: the requests (create, upsert) and what HubSpot's answers mean."""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.destinations import build_request, check_body, classify
from tests.conftest import REPO, Project, run_gateway
from tests.destinations import NOW, deliveries_when, post_event, spec, start_gateway
from tests.harness import Received, Sink

HUBSPOT = spec({"type": "hubspot", "token": "pat"})
DEALS = spec({"type": "hubspot", "token": "pat", "object": "deals", "upsert_by": "go_order_code"})


def test_hubspot() -> None:
    request = build_request(spec({"type": "hubspot", "token": "pat-1", "object": "deals"}), "{}", "k")
    assert request.url == "https://api.hubapi.com/crm/v3/objects/deals"
    assert request.headers["Authorization"] == "Bearer pat-1"


def test_hubspot_conflict_means_already_there() -> None:
    body = json.dumps({"status": "error", "category": "CONFLICT", "message": "Contact already exists. Existing ID: 501"})
    outcome = classify(HUBSPOT, 409, {}, body, NOW)
    assert outcome.kind == "delivered" and "Existing ID: 501" in outcome.reason


def test_hubspot_daily_limit_waits_for_midnight_in_brazil() -> None:
    now = datetime(2026, 11, 27, 15, 0, tzinfo=ZoneInfo("America/Sao_Paulo")).timestamp()
    body = json.dumps({"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY"})
    outcome = classify(HUBSPOT, 429, {"retry-after": "1"}, body, now)
    assert outcome.kind == "retry" and outcome.retry_after == 9 * 3600 + 60 and outcome.known_reset


def test_hubspot_ten_second_limit_retries_soon() -> None:
    body = json.dumps({"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"})
    assert classify(HUBSPOT, 429, {}, body, NOW).retry_after == 10.0
    assert classify(HUBSPOT, 429, {"retry-after": "3"}, body, NOW).retry_after == 3.0


@pytest.mark.parametrize(("status", "kind"), [(400, "dead"), (401, "dead"), (403, "dead"), (404, "dead"), (500, "retry"), (502, "retry")])
def test_hubspot_errors_keep_the_vendor_message(status: int, kind: str) -> None:
    body = json.dumps({"category": "VALIDATION_ERROR", "message": "Property values were not valid"})
    outcome = classify(HUBSPOT, status, {}, body, NOW)
    assert outcome.kind == kind and "HubSpot says Property values were not valid" in outcome.reason


def test_upsert_goes_to_batch_upsert_keyed_by_the_unique_property() -> None:
    body = json.dumps({"properties": {"go_order_code": "0001", "dealstage": "closedwon"}})
    request = build_request(DEALS, body, "k")
    assert (request.method, request.url) == ("POST", "https://api.hubapi.com/crm/v3/objects/deals/batch/upsert")
    assert json.loads(request.body) == {"inputs": [{"idProperty": "go_order_code", "id": "0001", "properties": {"go_order_code": "0001", "dealstage": "closedwon"}}]}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"dealname": "x"}, 'a HubSpot body is {"properties": {...}}'),
        ({"properties": {"go_order_code": "1", "amount": 10}}, "put quotes around the value of amount"),
        ({"properties": {"dealname": "x"}}, "must give properties.go_order_code a value"),
        ({"properties": {"go_order_code": "", "dealname": "x"}}, "must give properties.go_order_code a value"),
        ({"properties": {"go_order_code": "1"}, "associations": []}, 'upsert takes only "properties" (and "contact", its customer); remove associations'),
        ({"properties": {"go_order_code": "1"}, "contact": {"properties": {"firstname": "Ana"}}}, "must give contact.properties.email a value"),
        ({"properties": {"go_order_code": "1"}, "contact": {"properties": {"email": "a@b.c", "idade": 3}}}, "put quotes around the value of contact.idade"),
    ],
)
def test_bodies_hubspot_would_refuse_are_caught_at_render(body: dict, problem: str) -> None:
    assert problem in (check_body(DEALS, json.dumps(body)) or "")


def test_a_failed_batch_input_is_dead_with_hubspots_reason() -> None:
    answer = {"status": "COMPLETE", "results": [], "numErrors": 1, "errors": [{"status": "error", "category": "VALIDATION_ERROR", "message": "Property go_order_code is not unique"}]}
    outcome = classify(DEALS, 207, {}, json.dumps(answer), NOW)
    assert outcome.kind == "dead" and "Property go_order_code is not unique" in outcome.reason


def test_notes_cannot_be_upserted() -> None:
    assert spec({"type": "hubspot", "token": "t", "object": "notes", "upsert_by": "x"}).problems()


# ------------------------------------------------------------------ through a running gateway


ROUTES = """
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
destinations:
  contatos: {{type: hubspot, token: "${{HUBSPOT_TOKEN}}", object: contacts, base_url: "{url}"{contact_extra}}}
  negocios: {{type: hubspot, token: "${{HUBSPOT_TOKEN}}", object: deals, base_url: "{url}"{deal_extra}}}
routes:
  - name: crm
    when: {{event_id: ORDER_CREATED}}
    send:
      - {{to: contatos, template: hubspot/contact.json.j2}}
      - {{to: negocios, template: hubspot/deal.json.j2}}
  - name: perdido
    when: {{event_id: ORDER_CANCEL}}
    send: {{to: negocios, template: hubspot/deal_lost.json.j2}}
  - name: ganho
    when: {{event_id: FINANCIAL_PAYMENT_DISCHARGE}}
    send: {{to: negocios, template: hubspot/deal_won.json.j2}}
"""
SECRET = "pat-na1-segredo"


def test_conflict_is_done_and_daily_limit_waits_for_midnight(project: Project, sink: Sink) -> None:
    """Against a server answering as HubSpot: the request is HubSpot's, 409 counts as done,
    and a DAILY 429 parks the delivery until after midnight instead of hammering."""
    conflict = json.dumps({"status": "error", "category": "CONFLICT", "message": "Contact already exists. Existing ID: 7"}).encode()
    daily = json.dumps({"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY"}).encode()
    sink.behaviour = lambda request, count: (409, {}, conflict, 0) if request.path.endswith("/contacts") else (429, {}, daily, 0)
    gateway = start_gateway(project, ROUTES.format(url=sink.url(""), contact_extra="", deal_extra=""), {"HUBSPOT_TOKEN": SECRET})
    try:
        event_id = post_event(gateway, "order_created.json")
        received = {r.path: r for r in sink.wait_for(2)}
        contact = received["/crm/v3/objects/contacts"]
        assert contact.headers["authorization"] == f"Bearer {SECRET}"
        assert all(isinstance(v, str) for v in contact.json()["properties"].values())
        assert received["/crm/v3/objects/deals"].json()["properties"]["dealname"] == "Pedido 0000593098 - teste"
        shown = deliveries_when(gateway, event_id, lambda ds: all(d["attempts"] == 1 for d in ds))
        by_destination = {d["destination"]: d for d in shown}
        assert by_destination["contatos"]["status"] == "delivered"
        deal = by_destination["negocios"]
        assert deal["status"] == "pending" and deal["next_attempt_at"] - time.time() > 60
        assert "daily API limit" in deal["last_error"]
        assert SECRET not in gateway.log()
    finally:
        gateway.kill()


def test_one_order_is_one_deal_created_lost_and_won_by_upsert(project: Project, sink: Sink) -> None:
    """The shipped deal templates upsert by go_order_code: creation, cancellation and payment of
    one order all address the same deal, and the stages are HubSpot's closedlost/closedwon."""
    upserted = json.dumps({"status": "COMPLETE", "results": [{"id": "9001", "new": False, "properties": {}}]}).encode()
    sink.behaviour = lambda request, count: (200, {"content-type": "application/json"}, upserted, 0)
    routes = ROUTES.format(url=sink.url(""), contact_extra=", upsert_by: email", deal_extra=", upsert_by: go_order_code")
    gateway = start_gateway(project, routes, {"HUBSPOT_TOKEN": SECRET})
    try:
        for sample in ("order_created.json", "order_cancel.json", "financial_payment_discharge.json"):
            event_id = post_event(gateway, sample, code="0000000777")
            assert all(d["status"] == "delivered" for d in deliveries_when(gateway, event_id, lambda ds: all(d["status"] == "delivered" for d in ds)))
        deals = [r.json()["inputs"] for r in sink.received if r.path == "/crm/v3/objects/deals/batch/upsert"]
        assert [len(inputs) for inputs in deals] == [1, 1, 1]
        assert {(i[0]["idProperty"], i[0]["id"]) for i in deals} == {("go_order_code", "0000000777")}
        assert [i[0]["properties"]["dealstage"] for i in deals] == ["appointmentscheduled", "closedlost", "closedwon"]
        contact = next(r for r in sink.received if r.path == "/crm/v3/objects/contacts/batch/upsert").json()["inputs"][0]
        assert (contact["idProperty"], contact["id"]) == ("email", "teste@teste.com")
    finally:
        gateway.kill()


# Contact properties every HubSpot portal has (a custom one answers 400 "Property does not exist").
DEFAULT_CONTACT_PROPERTIES = {"email", "firstname", "lastname", "phone", "mobilephone", "company", "website", "city", "state", "zip", "address"}


def test_the_shipped_contact_uses_only_properties_a_new_portal_has_and_splits_the_name() -> None:
    from gateway.config import load_config
    from gateway.routing import route_event
    from tests.conftest import EVENTS, REPO

    config = load_config(REPO / "examples" / "routes" / "hubspot.yaml", {"HUBSPOT_TOKEN": "pat-na1-teste", "GO_WEBHOOK_TOKEN": "t0ken-de-teste"})
    event = json.loads((EVENTS / "order_created.json").read_text())
    event["data"]["user"]["name"] = "Maria da Silva Santos"
    routed = route_event(config, event, source="go")
    deal = next(d for d in routed.deliveries if d.destination == "hubspot-negocios")
    properties = json.loads(deal.body)["contact"]["properties"]
    assert set(properties) <= DEFAULT_CONTACT_PROPERTIES, set(properties) - DEFAULT_CONTACT_PROPERTIES
    assert (properties["firstname"], properties["lastname"]) == ("Maria", "da Silva Santos")


def test_the_example_links_the_deal_to_its_contact_in_bodies_hubspots_models_accept(project: Project, sink: Sink) -> None:
    """examples/routes/hubspot.yaml on ORDER_CREATED: the contact upserted by e-mail, the deal
    by go_order_code, then the default deal-to-contact association with both ids, every body
    checked against hubspot-api-client's models. The same three requests are what dry-run shows."""
    from hubspot.crm.contacts import models as contact_models
    from hubspot.crm.deals import models as deal_models

    from tests.destinations.official_models import model_errors

    errors: list[str] = []
    ids = {"contacts": "501", "deals": "901"}

    def hubspot(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        kind = request.path.split("/")[4] if request.path.startswith("/crm/v3/objects/") else None
        if kind in ids and request.path.endswith("/batch/upsert"):
            models = contact_models if kind == "contacts" else deal_models
            errors.extend(model_errors(models, "BatchInputSimplePublicObjectBatchInputUpsert", request.json(), f"{kind} upsert"))
            answer = {"status": "COMPLETE", "results": [{"id": ids[kind], "properties": {}, "createdAt": "2026-12-01T00:00:00Z", "updatedAt": "2026-12-01T00:00:00Z", "archived": False}]}
            return 200, {"content-type": "application/json"}, json.dumps(answer).encode(), 0
        if request.method == "PUT" and request.path.startswith("/crm/v4/objects/deals/"):
            answer = {"fromObjectTypeId": "0-3", "fromObjectId": int(ids["deals"]), "toObjectTypeId": "0-1", "toObjectId": int(ids["contacts"]), "labels": []}
            return 200, {"content-type": "application/json"}, json.dumps(answer).encode(), 0
        errors.append(f"unexpected {request.method} {request.path}")
        return 404, {}, b"{}", 0

    sink.behaviour = hubspot
    routes = (REPO / "examples" / "routes" / "hubspot.yaml").read_text().replace("templates: ../../templates", "templates: templates").replace("samples: ../events", "samples: examples/events")
    routes = routes.replace("    upsert_by: go_order_code", f'    upsert_by: go_order_code\n    base_url: "{sink.url("")}"').replace("settings:\n", "settings:\n  egress_allow: [127.0.0.0/8]\n")
    gateway = start_gateway(project, routes, {"HUBSPOT_TOKEN": SECRET})
    try:
        event_id = post_event(gateway, "order_created.json", code="0000000777")
        (delivery,) = deliveries_when(gateway, event_id, lambda ds: all(d["status"] != "pending" for d in ds))
        assert delivery["status"] == "delivered", delivery
        assert [(r.method, r.path) for r in sink.received] == [
            ("POST", "/crm/v3/objects/contacts/batch/upsert"),
            ("POST", "/crm/v3/objects/deals/batch/upsert"),
            ("PUT", "/crm/v4/objects/deals/901/associations/default/contacts/501"),
        ]
        assert errors == []
        contact = sink.received[0].json()["inputs"][0]
        assert (contact["idProperty"], contact["id"], contact["properties"]["firstname"]) == ("email", "teste@teste.com", "teste")
        assert sink.received[1].json()["inputs"][0]["id"] == "0000000777"
        assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in sink.received)
        shown = run_gateway("dry-run", "--json", "examples/events/order_created.json", cwd=project.root, env={"HUBSPOT_TOKEN": SECRET, "GO_WEBHOOK_TOKEN": "t0ken-de-teste"})
        (planned,) = [d for r in json.loads(shown.stdout)["routes"] if r["matched"] for d in r["deliveries"]]
        assert [(s["method"], s["url"].replace(sink.url(""), "")) for s in planned["requests"]] == [
            ("POST", "/crm/v3/objects/contacts/batch/upsert"),
            ("POST", "/crm/v3/objects/deals/batch/upsert"),
            ("PUT", "/crm/v4/objects/deals/{deal id from the upsert}/associations/default/contacts/{contact id from the upsert}"),
        ]
    finally:
        gateway.kill()


def test_a_failed_contact_step_is_retried_from_the_start_and_says_which_step() -> None:
    """Each step's failure names the step; a transient one is retried (from the contact again)."""
    from gateway.destinations.base import Answer

    deals = spec({"type": "hubspot", "token": "pat", "object": "deals", "upsert_by": "go_order_code"})
    body = json.dumps({"properties": {"go_order_code": "1"}, "contact": {"properties": {"email": "a@b.com"}}})
    steps = deals.exchange(body, "k", NOW)
    assert next(steps).url.endswith("/crm/v3/objects/contacts/batch/upsert")
    with pytest.raises(StopIteration) as finished:
        steps.send(Answer(503, {}, ""))
    assert (finished.value.value.kind, finished.value.value.reason) == ("retry", "upserting the contact: HTTP 503")
