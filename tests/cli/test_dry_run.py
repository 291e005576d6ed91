"""`gateway dry-run`: matched routes, reasons, exact requests with secrets masked, --send."""

from __future__ import annotations

import json

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import EVENTS, REPO, Project, run_gateway

SECRET_ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0SECRET/B0SECRET/xyzSECRET", "MIRROR_URL": "https://erp.example.com/hooks"}


def test_dry_run_shows_matches_requests_and_reasons() -> None:
    """The shipped config on order_created: two matches with requests, the rest with reasons."""
    result = run_gateway("dry-run", "examples/events/order_created.json", cwd=REPO, env=SECRET_ENV)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ORDER_CREATED: 2 of 7 routes match" in out
    assert "✔ pedido-criado-no-slack matched" in out
    assert "POST https://hooks.slack.com/***" in out
    assert '"text": "Novo pedido 0000593098"' in out
    assert "POST https://erp.example.com/***" in out
    assert '✘ pedido-cancelado-no-slack\n    event_id is "ORDER_CREATED", the rule wants "ORDER_CANCEL" (routes.yaml:' in out
    assert "SECRET" not in out + result.stderr


def test_dry_run_json_is_machine_readable_and_masked() -> None:
    result = run_gateway("dry-run", "--json", "examples/events/order_created.json", cwd=REPO, env=SECRET_ENV)
    data = json.loads(result.stdout)
    matched = {r["name"]: r for r in data["routes"] if r["matched"]}
    assert set(matched) == {"pedido-criado-no-slack", "espelho-de-todos-os-eventos"}
    slack = matched["pedido-criado-no-slack"]["deliveries"][0]
    assert slack["status"] == "pending"
    assert slack["request"]["method"] == "POST"
    assert json.loads(slack["request"]["body"])["text"] == "Novo pedido 0000593098"
    unmatched = next(r for r in data["routes"] if r["name"] == "entrega-no-slack")
    assert unmatched["reasons"][0]["location"].startswith("routes.yaml:")
    assert "SECRET" not in result.stdout


def test_dry_run_reads_standard_input_and_narrows_to_a_route() -> None:
    event = (EVENTS / "order_cancel.json").read_text()
    result = run_gateway("dry-run", "-", "--route", "pedido-cancelado-no-slack", "--json", cwd=REPO, stdin=event)
    data = json.loads(result.stdout)
    assert [r["name"] for r in data["routes"]] == ["pedido-cancelado-no-slack"]
    assert data["routes"][0]["deliveries"][0]["status"] == "skipped"  # SLACK_WEBHOOK_URL is unset


def test_dry_run_explains_type_mismatch(project: Project) -> None:
    """A route comparing data.status with "1" explains why it does not match, and the fix."""
    project.routes(
        """
        version: 1
        settings: {egress_allow: [127.0.0.0/8]}
        sources: {go: {token: abcdefgh}}
        destinations: {sink: {type: http, url: "http://127.0.0.1:9/x"}}
        routes:
          - name: status-texto
            when:
              event_id: ORDER_CREATED
              data.status: "1"
            send: {to: sink, body: "{{ event | tojson }}"}
        """
    )
    result = project.gateway("dry-run", "examples/events/order_created.json")
    assert result.returncode == 0, result.stderr
    assert 'data.status is 1, the rule wants "1"; GO sends a number here: write 1 without quotes (routes.yaml:9:7)' in result.stdout


def test_dry_run_masks_headers_query_tokens_and_env_secrets(project: Project) -> None:
    project.routes(
        """
        version: 1
        sources: {go: {token: "${GO_WEBHOOK_TOKEN}"}}
        destinations:
          erp:
            type: http
            url: "https://erp.example.com/in?token=${ERP_QUERY_TOKEN}&x=1"
            headers: {Authorization: "Bearer ${ERP_TOKEN}", X-Api-Key: "${ERP_KEY}"}
          rd:
            type: rdstation
            token: "${RD_TOKEN}"
        routes:
          - name: tudo
            when: {event_id: ORDER_CREATED}
            send:
              - {to: erp, body: '{"pedido": "{{ data.code }}"}'}
              - {to: rd, template: rdstation/contact.json.j2}
        """
    )
    env = {"GO_WEBHOOK_TOKEN": "go-secret-1", "ERP_QUERY_TOKEN": "query-secret-2", "ERP_TOKEN": "bearer-secret-3", "ERP_KEY": "key-secret-4", "RD_TOKEN": "rd-secret-5"}
    result = project.gateway("dry-run", "examples/events/order_created.json", env=env)
    assert result.returncode == 0, result.stderr
    for secret in env.values():
        assert secret not in result.stdout + result.stderr
    assert "Authorization: Bearer ***" in result.stdout
    assert "X-Api-Key: ***" in result.stdout
    assert "https://crm.rdstation.com/api/v1/contacts?token=***" in result.stdout


def test_dry_run_send_delivers_for_real(project: Project, httpserver: HTTPServer) -> None:
    """--send makes the request shown, to a real server, and prints the answer."""
    httpserver.expect_request("/erp", method="POST", headers={"Authorization": "Bearer abcdef123"}).respond_with_data("recebido", status=200)
    project.routes(
        f"""
        version: 1
        settings: {{egress_allow: [127.0.0.0/8]}}
        sources: {{go: {{token: abcdefgh}}}}
        destinations:
          erp:
            type: http
            url: "{httpserver.url_for('/erp')}"
            headers: {{Authorization: "Bearer ${{ERP_TOKEN}}"}}
        routes:
          - name: pedido
            when: {{event_id: ORDER_CREATED}}
            send: {{to: erp, body: '{{"pedido": "{{{{ data.code }}}}"}}'}}
        """
    )
    result = project.gateway("dry-run", "--send", "--json", "examples/events/order_created.json", env={"ERP_TOKEN": "abcdef123"})
    assert result.returncode == 0, result.stderr
    delivery = json.loads(result.stdout)["routes"][0]["deliveries"][0]
    assert delivery["sent"] == {"status": 200, "body": "recebido", "outcome": "delivered"}
    request, _ = httpserver.log[0]
    assert json.loads(request.data) == {"pedido": "0000593098"}
    assert request.headers["Idempotency-Key"]


def test_dry_run_bad_event_file_is_a_clear_error(project: Project) -> None:
    project.write("bad.json", '{"event_id": "ORDER_CREATED",}')
    project.write("array.json", "[1, 2]")
    project.write("noid.json", '{"data": {}}')
    project.routes((REPO / "routes.yaml").read_text())
    for name, message in [("bad.json", "bad.json:1:30: not valid JSON"), ("array.json", "must be a JSON object"), ("noid.json", "no 'event_id' text field"), ("missing.json", "cannot read the event")]:
        result = project.gateway("dry-run", name)
        assert result.returncode == 1
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_dry_run_unknown_route_name_suggests(project: Project) -> None:
    project.routes((REPO / "routes.yaml").read_text())
    result = project.gateway("dry-run", "examples/events/order_created.json", "--route", "pedido-criado-no-slak")
    assert result.returncode == 1
    assert "no route named 'pedido-criado-no-slak' (did you mean 'pedido-criado-no-slack'?)" in result.stderr


def test_dry_run_shows_render_failure_without_rejecting(project: Project) -> None:
    """A template failure is shown as that delivery's error; other deliveries still render."""
    project.routes(
        """
        version: 1
        settings: {egress_allow: [127.0.0.0/8]}
        sources: {go: {token: abcdefgh}}
        destinations: {sink: {type: http, url: "http://127.0.0.1:9/x"}}
        routes:
          - name: quebrada
            when: {event_id: ORDER_CREATED}
            send:
              - {to: sink, body: '{"x": "{{ data.nada }}"}'}
              - {to: sink, body: '{"ok": true}'}
        """
    )
    data = json.loads(project.gateway("dry-run", "--json", "examples/events/order_created.json").stdout)
    first, second = data["routes"][0]["deliveries"]
    assert first["status"] == "failed" and "the field 'nada' is not in this object" in first["error"]
    assert second["status"] == "pending"


def test_dry_run_send_obeys_the_egress_guard(project: Project, httpserver: HTTPServer) -> None:
    """Without egress_allow, --send refuses a loopback receiver, like real deliveries do (the
    address from a variable: a literal loopback address is already a `check` error)."""
    project.routes(
        """
        version: 1
        sources: {go: {token: abcdefgh}}
        destinations: {erp: {type: http, url: "${ERP_URL}"}}
        routes:
          - name: pedido
            when: {event_id: ORDER_CREATED}
            send: {to: erp, body: '{"ok": true}'}
        """
    )
    result = project.gateway("dry-run", "--send", "--json", "examples/events/order_created.json", env={"ERP_URL": httpserver.url_for("/erp")})
    delivery = json.loads(result.stdout)["routes"][0]["deliveries"][0]
    assert delivery["sent"]["status"] is None and "address not allowed" in delivery["sent"]["error"]
    assert httpserver.log == []


VENDOR_SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-111-SEGREDO",
    "ERP_URL": "https://erp.example.com/webhooks/go",
    "ERP_TOKEN": "erp-SEGREDO",
    "HUBSPOT_TOKEN": "pat-na1-SEGREDO",
    "PIPEDRIVE_TOKEN": "pd-SEGREDO",
    "PIPEDRIVE_COMPANY": "minhaempresa",
    "RDSTATION_CRM_TOKEN": "rd-SEGREDO",
}

# (example, event, destination, method, url, header with the secret or None, search url or None)
VENDOR_REQUESTS = [
    ("slack", "financial_payment_discharge.json", "slack-financeiro", "POST", "https://slack.com/api/chat.postMessage", "Authorization", None),
    ("http", "financial_payment_discharge.json", "erp", "POST", "https://erp.example.com/***", "Authorization", None),  # a URL from the environment may hold a key, as Slack's do
    ("hubspot", "order_created.json", "hubspot-negocios", "POST", "https://api.hubapi.com/crm/v3/objects/deals/batch/upsert", "Authorization", None),
    ("hubspot", "order_cancel.json", "hubspot-negocios", "POST", "https://api.hubapi.com/crm/v3/objects/deals/batch/upsert", "Authorization", None),
    ("pipedrive", "order_created.json", "pipedrive-negocios", "POST", "https://minhaempresa.pipedrive.com/api/v2/deals", "x-api-token", None),
    (
        "pipedrive",
        "financial_payment_discharge.json",
        "pipedrive-negocios-fechar",
        "PATCH",
        "https://minhaempresa.pipedrive.com/api/v2/deals/{id found by the search}",
        "x-api-token",
        "https://minhaempresa.pipedrive.com/api/v2/deals/search?term=Pedido+0000593098&fields=title&limit=10",
    ),
    ("rdstation", "order_created.json", "rd-negociacoes", "POST", "https://crm.rdstation.com/api/v1/deals?token=***", None, None),
    (
        "rdstation",
        "order_cancel.json",
        "rd-negociacoes-fechar",
        "PUT",
        "https://crm.rdstation.com/api/v1/deals/{id found by the search}?token=***",
        None,
        "https://crm.rdstation.com/api/v1/deals?name=Pedido%200000593098&token=***",
    ),
]


@pytest.mark.parametrize(("example", "event", "destination", "method", "url", "secret_header", "search_url"), VENDOR_REQUESTS, ids=lambda v: v if "/" not in str(v) else None)
def test_dry_run_shows_each_vendors_exact_request_with_the_secret_masked(
    example: str, event: str, destination: str, method: str, url: str, secret_header: str | None, search_url: str | None
) -> None:
    """Every shipped example, through `gateway dry-run --json` as a user runs it: the vendor's
    method, URL and auth, the secret replaced by *** (in headers and in the query string)."""
    result = run_gateway("dry-run", "--json", "--config", f"examples/routes/{example}.yaml", f"examples/events/{event}", cwd=REPO, env=VENDOR_SECRETS)
    assert result.returncode == 0, result.stderr
    assert "SEGREDO" not in result.stdout + result.stderr
    deliveries = [d for r in json.loads(result.stdout)["routes"] if r["matched"] for d in r["deliveries"] if d["destination"] == destination]
    assert len(deliveries) == 1 and deliveries[0]["status"] == "pending"
    request = deliveries[0]["request"]
    assert (request["method"], request["url"]) == (method, url)
    if secret_header:
        assert request["headers"][secret_header] in ("***", "Bearer ***")
    assert json.loads(request["body"])
    assert (deliveries[0].get("search") or {}).get("url") == search_url
