"""Pipedrive API v2: creating persons and deals, and updating a deal found by a search."""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.destinations import build_request, classify, find_request, found_record
from gateway.destinations.base import FOUND_ID
from tests.conftest import Project
from tests.destinations import GO_TOKEN, NOW, deliveries_when, post_event, spec, start_gateway
from tests.harness import GatewayProcess, Received, Sink

PIPEDRIVE = spec({"type": "pipedrive", "token": "t", "company": "acme"})
CLOSE_DEAL = spec({"type": "pipedrive", "token": "t", "company": "acme", "object": "deals", "action": "update"})
LOST = json.dumps({"find": "Pedido 0000593098", "set": {"status": "lost"}})


def test_pipedrive() -> None:
    request = build_request(spec({"type": "pipedrive", "token": "tok", "company": "acme", "object": "deals"}), "{}", "k")
    assert request.url == "https://acme.pipedrive.com/api/v2/deals"
    assert request.headers["x-api-token"] == "tok"


def test_pipedrive_rate_limit_reset_header() -> None:
    outcome = classify(PIPEDRIVE, 429, {"x-ratelimit-reset": "2", "x-ratelimit-remaining": "0"}, '{"success": false}', NOW)
    assert outcome.kind == "retry" and outcome.retry_after == 2.0


@pytest.mark.parametrize(("status", "kind"), [(400, "dead"), (402, "dead"), (410, "dead"), (415, "dead"), (422, "dead"), (500, "retry"), (503, "retry")])
def test_pipedrive_errors(status: int, kind: str) -> None:
    outcome = classify(PIPEDRIVE, status, {}, json.dumps({"success": False, "error": "Deal title is required"}), NOW)
    assert outcome.kind == kind and "Pipedrive says Deal title is required" in outcome.reason


def test_update_searches_titles_then_patches_the_deal() -> None:
    search = find_request(CLOSE_DEAL, LOST)
    assert search is not None and search.method == "GET"
    url = urlsplit(search.url)
    assert url.path == "/api/v2/deals/search" and url.netloc == "acme.pipedrive.com"
    assert parse_qs(url.query) == {"term": ["Pedido 0000593098"], "fields": ["title"], "limit": ["10"]}
    assert search.headers["x-api-token"] == "t" and "t" not in url.query.split("&")
    update = build_request(CLOSE_DEAL, LOST, "k", "42")
    assert (update.method, update.url, json.loads(update.body)) == ("PATCH", "https://acme.pipedrive.com/api/v2/deals/42", {"status": "lost"})
    assert FOUND_ID in build_request(CLOSE_DEAL, LOST).url  # what dry-run shows before the search ran


def test_a_custom_field_search_is_exact() -> None:
    by_field = spec({"type": "pipedrive", "token": "t", "company": "acme", "object": "deals", "action": "update", "find_in": "custom_fields"})
    query = parse_qs(urlsplit(find_request(by_field, LOST).url).query)
    assert query["fields"] == ["custom_fields"] and query["exact_match"] == ["true"]


def test_creating_needs_no_search() -> None:
    assert find_request(PIPEDRIVE, "{}") is None


def _answer(*items: dict) -> str:
    return json.dumps({"success": True, "data": {"items": [{"result_score": 1.0, "item": item} for item in items]}, "additional_data": {"next_cursor": None}})


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_answer({"id": 42, "title": "Pedido 0000593098 - teste"}), "42"),
        (_answer({"id": 42, "title": "Pedido 0000593098 - teste"}, {"id": 43, "title": "Pedido 00005930981 - outro"}), "42"),
        (_answer(), "retry:no Pipedrive deal matching 'Pedido 0000593098' yet"),
        (_answer({"id": 43, "title": "Pedido 00005930981 - outro"}), "retry:no Pipedrive deal matching"),
        (_answer({"id": 42, "title": "Pedido 0000593098 - a"}, {"id": 44, "title": "Pedido 0000593098 - b"}), "dead:2 deals match 'Pedido 0000593098' (ids 42, 44)"),
        ('{"success": true, "data": null}', "retry:no Pipedrive deal"),
    ],
)
def test_the_search_answer_picks_exactly_one_deal(answer: str, expected: str) -> None:
    found = found_record(CLOSE_DEAL, LOST, answer)
    if isinstance(found, str):
        assert found == expected
    else:
        kind, words = expected.split(":", 1)
        assert found.kind == kind and words in found.reason


@pytest.mark.parametrize(("raw", "problem"), [({"find_in": "address"}, "by title, custom_fields, notes"), ({"object": "persons", "find_in": "title"}, "by email, name")])
def test_unsearchable_fields_are_refused(raw: dict, problem: str) -> None:
    problems = spec({"type": "pipedrive", "token": "t", "company": "acme", "object": "deals", **raw}).problems()
    assert problems and problem in problems[0][1]


# ------------------------------------------------------------------ through a running gateway


class FakePipedrive:
    """Answers as Pipedrive's API v2 does: creates deals and persons, finds deals by title,
    patches them; `limited` requests first get a 429 with the rate-limit headers."""

    def __init__(self, limited: int = 0) -> None:
        self.deals: dict[int, dict] = {}
        self.limited = limited
        self.lock = threading.Lock()

    def __call__(self, request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        with self.lock:
            if self.limited > 0:
                self.limited -= 1
                headers = {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"}
                return 429, headers, b'{"success": false, "error": "Request over limit"}', 0
            if request.headers.get("x-api-token") != "pd-segredo":
                return 401, {}, b'{"success": false, "error": "unauthorized access", "errorCode": 401}', 0
            return self._answer(request)

    def _answer(self, request: Received) -> tuple[int, dict[str, str], bytes, float]:
        url = urlsplit(request.path)
        if request.method == "POST" and url.path == "/api/v2/deals":
            deal = {"id": 100 + len(self.deals), "status": "open", **request.json()}
            self.deals[deal["id"]] = deal
            return 201, {}, json.dumps({"success": True, "data": deal}).encode(), 0
        if request.method == "POST" and url.path == "/api/v2/persons":
            return 201, {}, json.dumps({"success": True, "data": {"id": 7, **request.json()}}).encode(), 0
        if request.method == "GET" and url.path == "/api/v2/deals/search":
            term = parse_qs(url.query)["term"][0].lower()
            items = [{"result_score": 1, "item": {"id": d["id"], "title": d["title"]}} for d in self.deals.values() if term in d["title"].lower()]
            return 200, {}, json.dumps({"success": True, "data": {"items": items}}).encode(), 0
        if request.method == "PATCH" and url.path.startswith("/api/v2/deals/"):
            deal = self.deals.get(int(url.path.rsplit("/", 1)[1]))
            if deal is None:
                return 404, {}, b'{"success": false, "error": "Deal not found"}', 0
            deal.update(request.json())
            return 200, {}, json.dumps({"success": True, "data": deal}).encode(), 0
        return 404, {}, b'{"success": false, "error": "Unknown method ."}', 0


ROUTES = """
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
destinations:
  pessoas: {{type: pipedrive, token: "${{PIPEDRIVE_TOKEN}}", company: minhaempresa, object: persons, base_url: "{url}"}}
  negocios: {{type: pipedrive, token: "${{PIPEDRIVE_TOKEN}}", company: minhaempresa, object: deals, base_url: "{url}"}}
  fechar:
    type: pipedrive
    token: "${{PIPEDRIVE_TOKEN}}"
    company: minhaempresa
    object: deals
    action: update
    base_url: "{url}"
    retry: {{attempts: 5, first: 200ms, max: 1s}}
routes:
  - name: criado
    when: {{event_id: ORDER_CREATED}}
    send:
      - {{to: pessoas, template: pipedrive/person.json.j2}}
      - {{to: negocios, template: pipedrive/deal.json.j2}}
  - name: cancelado
    when: {{event_id: ORDER_CANCEL}}
    send: {{to: fechar, template: pipedrive/deal_lost.json.j2}}
  - name: pago
    when: {{event_id: FINANCIAL_PAYMENT_DISCHARGE}}
    send: {{to: fechar, template: pipedrive/deal_won.json.j2}}
"""
SECRET = "pd-segredo"


def delivered(deliveries: list[dict]) -> bool:
    return all(d["status"] == "delivered" for d in deliveries)


def test_deals_are_created_then_lost_through_pipedrives_api(project: Project, sink: Sink) -> None:
    pipedrive = FakePipedrive()
    sink.behaviour = pipedrive
    gateway = start_gateway(project, ROUTES.format(url=sink.url("/api/v2")), {"PIPEDRIVE_TOKEN": SECRET})
    try:
        created = post_event(gateway, "order_created.json", code="0000000501")
        post_event(gateway, "order_created.json", code="0000000502")
        assert delivered(deliveries_when(gateway, created, delivered))
        sink.wait_for(4)
        person = next(r for r in sink.received if r.path == "/api/v2/persons").json()
        assert person["name"] == "teste" and person["emails"][0] == {"value": "teste@teste.com", "primary": True, "label": "work"}
        cancelled = post_event(gateway, "order_cancel.json", code="0000000501")
        assert delivered(deliveries_when(gateway, cancelled, delivered))
        by_title = {d["title"]: d for d in pipedrive.deals.values()}
        assert by_title["Pedido 0000000501 - teste"]["status"] == "lost"
        assert by_title["Pedido 0000000501 - teste"]["currency"] == "BRL"
        assert by_title["Pedido 0000000502 - teste"]["status"] == "open"  # the other order is untouched
        patch = next(r for r in sink.received if r.method == "PATCH")
        assert patch.path == f"/api/v2/deals/{by_title['Pedido 0000000501 - teste']['id']}"
        assert patch.json() == {"status": "lost", "lost_reason": "Pedido cancelado no Gestão Online"}
        assert SECRET not in gateway.log()
    finally:
        gateway.kill()


def test_an_update_waits_for_the_deal_it_changes(project: Project, sink: Sink) -> None:
    """Payment before the deal exists: the search finds nothing, the update retries on its
    schedule, and succeeds once the deal is there."""
    pipedrive = FakePipedrive()
    sink.behaviour = pipedrive
    gateway = start_gateway(project, ROUTES.format(url=sink.url("/api/v2")), {"PIPEDRIVE_TOKEN": SECRET})
    try:
        paid = post_event(gateway, "financial_payment_discharge.json", code="0000000601")
        waiting = deliveries_when(gateway, paid, lambda ds: ds[0]["attempts"] >= 1)[0]
        # waiting for its next attempt, or already in it (the retry schedule is short here)
        assert waiting["status"] in ("pending", "sending") and "no Pipedrive deal matching 'Pedido 0000000601' yet" in waiting["last_error"]
        post_event(gateway, "order_created.json", code="0000000601")
        assert delivered(deliveries_when(gateway, paid, delivered))
        assert [d["status"] for d in pipedrive.deals.values()] == ["won"]
    finally:
        gateway.kill()


def test_rate_limit_headers_set_the_next_attempt(project: Project, sink: Sink) -> None:
    pipedrive = FakePipedrive(limited=1)
    sink.behaviour = pipedrive
    gateway = start_gateway(project, ROUTES.format(url=sink.url("/api/v2")), {"PIPEDRIVE_TOKEN": SECRET})
    try:
        created = post_event(gateway, "order_created.json", code="0000000701")
        assert delivered(deliveries_when(gateway, created, delivered))
        limited, *_ = sink.received
        retried = [r for r in sink.received if r.path == limited.path]
        assert len(retried) == 2 and retried[1].at - limited.at >= 2.0  # x-ratelimit-reset: 2
    finally:
        gateway.kill()


def test_a_wrong_token_is_dead_with_pipedrives_words(project: Project, sink: Sink) -> None:
    sink.behaviour = FakePipedrive()
    gateway = start_gateway(project, ROUTES.format(url=sink.url("/api/v2")), {"PIPEDRIVE_TOKEN": "errado"})
    try:
        created = post_event(gateway, "order_created.json")
        shown = deliveries_when(gateway, created, lambda ds: all(d["status"] == "dead" for d in ds))
        assert all(d["status"] == "dead" and "HTTP 401: the receiver refused the request: Pipedrive says unauthorized access" in d["last_error"] for d in shown)
        assert len(sink.received) == 2  # dead after one attempt each
    finally:
        gateway.kill()


def test_dry_run_send_finds_and_updates_the_deal(project: Project, sink: Sink) -> None:
    """`gateway dry-run --send` takes the engine's path: the search, then the PATCH."""
    pipedrive = FakePipedrive()
    pipedrive.deals[100] = {"id": 100, "title": "Pedido 0000593098 - teste", "status": "open"}
    sink.behaviour = pipedrive
    project.routes(ROUTES.format(url=sink.url("/api/v2")))
    result = project.gateway("dry-run", "--send", "--json", "examples/events/order_cancel.json", env={"PIPEDRIVE_TOKEN": SECRET})
    assert result.returncode == 0, result.stderr
    (delivery,) = [d for r in json.loads(result.stdout)["routes"] if r["matched"] for d in r["deliveries"]]
    assert delivery["sent"]["status"] == 200 and delivery["sent"]["outcome"] == "delivered"
    assert [r.method for r in sink.received] == ["GET", "PATCH"]
    assert pipedrive.deals[100]["status"] == "lost"
    assert SECRET not in result.stdout


def test_the_example_links_each_deal_to_its_person_in_bodies_pipedrives_types_accept(project: Project, sink: Sink) -> None:
    """examples/routes/pipedrive.yaml on ORDER_CREATED: a new customer's person is created and
    the deal gets its person_id; the same customer's next order finds the person by e-mail and
    creates none. Every body is checked against the official client's request types (tsc)."""
    from tests.conftest import REPO
    from tests.destinations.official_models import pipedrive_type_errors

    persons: dict[str, int] = {}
    created: list[tuple[str, dict]] = []

    def pipedrive(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        query = parse_qs(urlsplit(request.path).query)
        path = urlsplit(request.path).path
        if request.method == "GET" and path == "/api/v2/persons/search":
            found = [{"item": {"id": persons[query["term"][0]]}}] if query["term"][0] in persons else []
            return 200, {}, json.dumps({"success": True, "data": {"items": found}}).encode(), 0
        if request.method == "GET" and path == "/api/v2/deals/search":
            titles = [(n, b["title"]) for n, (kind, b) in enumerate(created) if kind == "AddDealRequest"]
            found = [{"item": {"id": 900 + n, "title": t}} for n, t in titles if t == query["term"][0]]
            return 200, {}, json.dumps({"success": True, "data": {"items": found}}).encode(), 0
        if request.method == "POST" and path in ("/api/v2/persons", "/api/v2/deals"):
            body = request.json()
            created.append(("AddPersonRequest" if path.endswith("persons") else "AddDealRequest", body))
            if path.endswith("persons"):
                persons[body["emails"][0]["value"]] = 70 + len(persons)
                return 201, {}, json.dumps({"success": True, "data": {"id": persons[body["emails"][0]["value"]]}}).encode(), 0
            return 201, {}, json.dumps({"success": True, "data": {"id": 900 + len(created)}}).encode(), 0
        return 404, {}, b'{"success": false, "error": "unexpected"}', 0

    sink.behaviour = pipedrive
    routes = (REPO / "examples" / "routes" / "pipedrive.yaml").read_text().replace("templates: ../../templates", "templates: templates").replace("samples: ../events", "samples: examples/events")
    routes = routes.replace("settings:\n", "settings:\n  egress_allow: [127.0.0.0/8]\n").replace("    object: deals\n", f'    object: deals\n    base_url: "{sink.url("/api/v2")}"\n')
    gateway = start_gateway(project, routes, {"PIPEDRIVE_TOKEN": SECRET, "PIPEDRIVE_COMPANY": "minhaempresa"})
    try:
        for code, status in (("0000000701", 1), ("0000000702", 1), ("0000000701", 2)):  # the last: the first order comes again
            event_id = post_event(gateway, "order_created.json", code=code, status=status)
            (delivery,) = deliveries_when(gateway, event_id, lambda ds: all(d["status"] != "pending" for d in ds))
            assert delivery["status"] == "delivered", delivery
    finally:
        gateway.kill()
    assert [kind for kind, _ in created] == ["AddPersonRequest", "AddDealRequest", "AddDealRequest"]  # one person, two deals, no duplicate
    deals = [body for kind, body in created if kind == "AddDealRequest"]
    assert [d["person_id"] for d in deals] == [70, 70] and all("person" not in d for d in deals)
    assert created[0][1]["emails"][0]["value"] == "teste@teste.com"
    assert pipedrive_type_errors(created) == []


def test_dry_run_plans_every_step_of_a_deal_with_its_person() -> None:
    deals = spec({"type": "pipedrive", "token": "t", "company": "acme", "object": "deals"})
    body = json.dumps({"title": "Pedido 7 - Ana", "currency": "BRL", "person": {"name": "Ana", "emails": [{"value": "ana@example.com", "primary": True}]}})
    steps = deals.planned_requests(body, "k")
    assert [(s.method, urlsplit(s.url).path, bool(s.note)) for s in steps] == [
        ("GET", "/api/v2/deals/search", False),
        ("GET", "/api/v2/persons/search", False),
        ("POST", "/api/v2/persons", True),
        ("POST", "/api/v2/deals", False),
    ]
    assert json.loads(steps[-1].body) == {"title": "Pedido 7 - Ana", "currency": "BRL", "person_id": "{person id found or created}"}
    assert parse_qs(urlsplit(steps[1].url).query)["term"] == ["ana@example.com"]


def test_a_deal_with_a_person_needs_the_persons_email() -> None:
    deals = spec({"type": "pipedrive", "token": "t", "company": "acme", "object": "deals"})
    problem = deals.check_body(json.dumps({"title": "x", "person": {"name": "Ana"}}))
    assert problem and "found by e-mail" in problem


LAGGING_ROUTES = """
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
destinations:
  negocios:
    type: pipedrive
    token: "${{PIPEDRIVE_TOKEN}}"
    company: minhaempresa
    object: deals
    base_url: "{url}"
    retry: {{attempts: 5, first: 200ms, max: 500ms}}
routes:
  - name: pedido-vira-negocio-da-pessoa
    when: {{event_id: ORDER_CREATED}}
    send: {{to: negocios, template: pipedrive/deal_and_person.json.j2}}
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_retried_deal_reuses_the_person_its_first_attempt_created(project: Project, sink: Sink, backend: str, request: pytest.FixtureRequest) -> None:
    """Pipedrive's search lags behind its creates (here it never finds a person) and the first
    deal creation fails with 503: the retry takes the person its first attempt created from the
    gateway's store, so Pipedrive gets one person, not two, and the deal is that person's."""
    requests: list[tuple[str, str]] = []
    failed_deal = threading.Event()

    def lagging(received: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
        path = urlsplit(received.path).path
        requests.append((received.method, path))
        if received.method == "GET":  # the search sees nothing yet, persons nor deals
            return 200, {}, b'{"success": true, "data": {"items": []}}', 0
        if path == "/api/v2/persons":
            return 201, {}, json.dumps({"success": True, "data": {"id": 70 + sum(1 for m, p in requests if (m, p) == ("POST", path))}}).encode(), 0
        if path == "/api/v2/deals" and not failed_deal.is_set():
            failed_deal.set()
            return 503, {}, b'{"success": false, "error": "Service unavailable"}', 0
        return 201, {}, json.dumps({"success": True, "data": {"id": 900, **received.json()}}).encode(), 0

    sink.behaviour = lagging
    project.routes(LAGGING_ROUTES.format(url=sink.url("/api/v2")))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": GO_TOKEN, "PIPEDRIVE_TOKEN": SECRET})
    if backend == "postgresql":
        gateway.database = request.getfixturevalue("postgres_url")
    gateway.start()
    try:
        event_id = post_event(gateway, "order_created.json")
        (delivery,) = deliveries_when(gateway, event_id, lambda ds: all(d["status"] not in ("pending", "sending") for d in ds))
    finally:
        gateway.terminate()
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2, delivery
    posts = [path for method, path in requests if method == "POST"]
    assert posts == ["/api/v2/persons", "/api/v2/deals", "/api/v2/deals"]  # one person; the deal twice (503, then created)
    deal = sink.bodies("/api/v2/deals")[-1]
    assert deal["person_id"] == 71
    assert ("GET", "/api/v2/persons/search") == requests[1] and requests.count(("GET", "/api/v2/persons/search")) == 1  # the retry did not search again
