"""RD Station CRM v1: the token in the query string (masked), contacts, deals, updates."""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.destinations import build_request, classify, find_request, found_record
from tests.conftest import Project
from tests.destinations import NOW, deliveries_when, post_event, spec, start_gateway
from tests.harness import Received, Sink

RDSTATION = spec({"type": "rdstation", "token": "t"})
CLOSE_DEAL = spec({"type": "rdstation", "token": "tok", "object": "deals", "action": "update"})
WON = json.dumps({"find": "Pedido 0000593098", "set": {"deal": {"win": True}}})


def test_rdstation_token_in_query() -> None:
    request = build_request(spec({"type": "rdstation", "token": "a b&c", "object": "deals"}), "{}", "k")
    assert request.url == "https://crm.rdstation.com/api/v1/deals?token=a%20b%26c"


@pytest.mark.parametrize(("status", "kind", "words"), [(406, "dead", "contact limit"), (401, "dead", "token is invalid"), (429, "retry", "HTTP 429"), (200, "delivered", "")])
def test_rdstation_answers(status: int, kind: str, words: str) -> None:
    outcome = classify(RDSTATION, status, {}, "", NOW)
    assert outcome.kind == kind and words in outcome.reason


def test_update_lists_deals_by_name_then_puts_the_one_found() -> None:
    search = find_request(CLOSE_DEAL, WON)
    url = urlsplit(search.url)
    assert (search.method, url.path, parse_qs(url.query)) == ("GET", "/api/v1/deals", {"name": ["Pedido 0000593098"], "token": ["tok"]})
    update = build_request(CLOSE_DEAL, WON, "k", "5f1a")
    assert (update.method, update.url, json.loads(update.body)) == ("PUT", "https://crm.rdstation.com/api/v1/deals/5f1a?token=tok", {"deal": {"win": True}})


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"total": 1, "has_more": False, "deals": [{"id": "5f1a", "name": "Pedido 0000593098 - teste"}]}, "5f1a"),
        ({"deals": [{"_id": "5f1a", "name": "Pedido 0000593098 - teste"}, {"_id": "5f1b", "name": "Pedido 00005930980 - outro"}]}, "5f1a"),
        ({"total": 0, "deals": []}, "retry:no RD Station deal matching 'Pedido 0000593098' yet"),
        ({"deals": [{"id": "a", "name": "Pedido 0000593098"}, {"id": "b", "name": "Pedido 0000593098 (2)"}]}, "dead:2 deals match"),
        ({"error": "x"}, "retry:no RD Station deal"),
    ],
)
def test_the_listed_deals_give_exactly_one_id(answer: dict, expected: str) -> None:
    found = found_record(CLOSE_DEAL, WON, json.dumps(answer))
    if isinstance(found, str):
        assert found == expected
    else:
        kind, words = expected.split(":", 1)
        assert found.kind == kind and words in found.reason


def test_contacts_are_found_by_exact_email() -> None:
    contacts = spec({"type": "rdstation", "token": "tok", "object": "contacts", "action": "update"})
    body = json.dumps({"find": "ana@example.com", "set": {"contact": {"title": "Cliente"}}})
    assert parse_qs(urlsplit(find_request(contacts, body).url).query)["email"] == ["ana@example.com"]
    answer = {"contacts": [{"id": "c1", "emails": [{"email": "ana@example.com.br"}]}, {"id": "c2", "emails": [{"email": "Ana@Example.com"}]}]}
    assert found_record(contacts, body, json.dumps(answer)) == "c2"


# ------------------------------------------------------------------ through a running gateway


# POST /deals as RD Station CRM v1 documents it (../shared/destinations.md): no official SDK or
# OpenAPI document exists, so the fake refuses any other field.
DEALS_POST_KEYS = {"deal", "organization", "deal_source", "contacts", "deal_products", "campaign", "distribution_settings"}
CONTACT_KEYS = {"name", "title", "emails", "phones", "birthday", "facebook", "linkedin", "skype", "contact_custom_fields", "legal_bases"}


class FakeRDStation:
    """Answers as RD Station CRM v1 does: the token in the query, 401 for a wrong one, 406
    once the plan's contacts are used up, deals listed by name and updated with PUT."""

    def __init__(self, contact_limit: int = 100) -> None:
        self.deals: dict[str, dict] = {}
        self.contacts = 0
        self.contact_limit = contact_limit
        self.lock = threading.Lock()

    def __call__(self, request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if query.get("token") != [SECRET]:
            return 401, {}, b'{"errors": "Unauthorized"}', 0
        with self.lock:
            return self._answer(request, url.path, query)

    def _answer(self, request: Received, path: str, query: dict) -> tuple[int, dict[str, str], bytes, float]:
        if request.method == "POST" and path == "/api/v1/contacts":
            if self.contacts >= self.contact_limit:
                return 406, {}, b'{"errors": "Limite de contatos excedido"}', 0
            self.contacts += 1
            return 200, {}, json.dumps({"_id": f"c{self.contacts}", **request.json()["contact"]}).encode(), 0
        if request.method == "POST" and path == "/api/v1/deals":
            body = request.json()
            unknown = sorted(set(body) - DEALS_POST_KEYS) + sorted(f"contacts[].{k}" for c in body.get("contacts", []) for k in set(c) - CONTACT_KEYS)
            if unknown:
                return 400, {}, json.dumps({"errors": f"unknown fields {unknown}"}).encode(), 0
            self.contacts += len(body.get("contacts", []))
            if self.contacts > self.contact_limit:
                return 406, {}, b'{"errors": "Limite de contatos excedido"}', 0
            deal = {"_id": f"d{len(self.deals) + 1}", "win": None, **body["deal"], "contacts": body.get("contacts", [])}
            deal["id"] = deal["_id"]
            self.deals[deal["_id"]] = deal
            return 200, {}, json.dumps(deal).encode(), 0
        if request.method == "GET" and path == "/api/v1/deals":
            name = query.get("name", [""])[0].lower()
            found = [d for d in self.deals.values() if name in d["name"].lower()]
            return 200, {}, json.dumps({"total": len(found), "has_more": False, "deals": found}).encode(), 0
        if request.method == "PUT" and path.startswith("/api/v1/deals/"):
            deal = self.deals.get(path.rsplit("/", 1)[1])
            if deal is None:
                return 404, {}, b'{"errors": "Not found"}', 0
            deal.update(request.json()["deal"])
            return 200, {}, json.dumps(deal).encode(), 0
        return 404, {}, b'{"errors": "Not found"}', 0


ROUTES = """
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
destinations:
  contatos: {{type: rdstation, token: "${{RDSTATION_CRM_TOKEN}}", object: contacts, base_url: "{url}"}}
  negociacoes: {{type: rdstation, token: "${{RDSTATION_CRM_TOKEN}}", object: deals, base_url: "{url}"}}
  fechar: {{type: rdstation, token: "${{RDSTATION_CRM_TOKEN}}", object: deals, action: update, base_url: "{url}"}}
routes:
  - name: criado
    when: {{event_id: ORDER_CREATED}}
    send:
      - {{to: contatos, template: rdstation/contact.json.j2}}
      - {{to: negociacoes, template: rdstation/deal.json.j2}}
  - name: cancelado
    when: {{event_id: ORDER_CANCEL}}
    send: {{to: fechar, template: rdstation/deal_lost.json.j2}}
  - name: pago
    when: {{event_id: FINANCIAL_PAYMENT_DISCHARGE}}
    send: {{to: fechar, template: rdstation/deal_won.json.j2}}
"""
SECRET = "rd-segredo-123"


def settled(deliveries: list[dict]) -> bool:
    return all(d["status"] in ("delivered", "dead") for d in deliveries)


def test_contact_and_deal_created_then_won(project: Project, sink: Sink) -> None:
    rd = FakeRDStation()
    sink.behaviour = rd
    gateway = start_gateway(project, ROUTES.format(url=sink.url("/api/v1")), {"RDSTATION_CRM_TOKEN": SECRET})
    try:
        created = post_event(gateway, "order_created.json", code="0000000801")
        assert {d["status"] for d in deliveries_when(gateway, created, settled)} == {"delivered"}
        contact = next(r for r in sink.received if r.path.startswith("/api/v1/contacts")).json()
        assert contact == {"contact": {"name": "teste", "emails": [{"email": "teste@teste.com"}], "phones": [{"phone": "123423434", "type": "cellphone"}]}}
        paid = post_event(gateway, "financial_payment_discharge.json", code="0000000801")
        assert {d["status"] for d in deliveries_when(gateway, paid, settled)} == {"delivered"}
        assert [(d["name"], d["win"]) for d in rd.deals.values()] == [("Pedido 0000000801 - teste", True)]
        log = gateway.log() + gateway.cli("events", "show", paid).stdout
        assert SECRET not in log
    finally:
        gateway.kill()


def test_contact_limit_and_wrong_token_are_dead_with_a_reason(project: Project, sink: Sink) -> None:
    sink.behaviour = FakeRDStation(contact_limit=0)
    gateway = start_gateway(project, ROUTES.format(url=sink.url("/api/v1")), {"RDSTATION_CRM_TOKEN": SECRET})
    try:
        created = post_event(gateway, "order_created.json")
        by_destination = {d["destination"]: d for d in deliveries_when(gateway, created, settled)}
        assert by_destination["contatos"]["status"] == "dead" and "contact limit is exceeded" in by_destination["contatos"]["last_error"]
        assert by_destination["negociacoes"]["status"] == "delivered"
    finally:
        gateway.kill()
    sink.received.clear()
    gateway = start_gateway(project, ROUTES.format(url=sink.url("/api/v1")), {"RDSTATION_CRM_TOKEN": "errado"})
    try:
        cancelled = post_event(gateway, "order_cancel.json")
        (closing,) = deliveries_when(gateway, cancelled, settled)
        assert closing["status"] == "dead" and "searching for the record: RD Station: the token is invalid" in closing["last_error"]
        assert "errado" not in gateway.log()
    finally:
        gateway.kill()


def test_the_example_creates_the_deal_with_its_contact_inside(project: Project, sink: Sink) -> None:
    """examples/routes/rdstation.yaml on ORDER_CREATED: one POST /deals carrying the customer in
    "contacts", so the deal is created already linked to its contact."""
    from tests.conftest import REPO

    fake = FakeRDStation()
    sink.behaviour = fake
    routes = (REPO / "examples" / "routes" / "rdstation.yaml").read_text().replace("templates: ../../templates", "templates: templates").replace("samples: ../events", "samples: examples/events")
    routes = routes.replace("settings:\n", "settings:\n  egress_allow: [127.0.0.0/8]\n").replace("    object: deals\n", f'    object: deals\n    base_url: "{sink.url("/api/v1")}"\n')
    gateway = start_gateway(project, routes, {"RDSTATION_CRM_TOKEN": SECRET})
    try:
        event_id = post_event(gateway, "order_created.json", code="0000000801")
        (delivery,) = deliveries_when(gateway, event_id, settled)
        assert delivery["status"] == "delivered", delivery
    finally:
        gateway.kill()
    (deal,) = fake.deals.values()
    assert deal["name"] == "Pedido 0000000801 - teste"
    assert [(c["name"], c["emails"]) for c in deal["contacts"]] == [("teste", [{"email": "teste@teste.com"}])]
    assert [r.path.split("?")[0] for r in sink.received] == ["/api/v1/deals"]
