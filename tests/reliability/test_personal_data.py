"""Personal data planted in events (CPF, CNPJ, e-mail, phone) never reaches the log, the metric
labels or an error message, even when a template fails on it or a receiver echoes it back."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.masking import mask_personal_data
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Received, Sink

TOKEN = "token-de-teste-123"
PLANTED = {
    "email": "maria.silva+go@exemplo.com.br",
    "document": "123.456.789-09",
    "cellphone": "+5511912345678",
    "phone": "(11) 3333-4444",
}
CNPJ = "12.345.678/0001-95"


def echo_email_back(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
    """A receiver refusing the request and quoting the personal data it refused, as vendors do."""
    body = request.json()
    return 400, {}, f"invalid e-mail {body['email']} for customer {body['document']}".encode(), 0


def test_personal_data_stays_out_of_logs_metrics_and_errors(project: Project) -> None:
    sink = Sink(echo_email_back)
    project.without_samples()  # the broken templates below must reach ingest
    project.routes(
        f"""
        version: 1
        settings: {{egress_allow: [127.0.0.0/8]}}
        sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}"}}}}
        destinations:
          crm: {{type: http, url: "{sink.url('/in')}"}}
        routes:
          - name: recusado
            when: {{event_id: ORDER_CREATED}}
            send: {{to: crm, body: '{{"email": "{{{{ data.user.email }}}}", "document": "{{{{ data.user.document }}}}"}}'}}
          - name: template-quebrado
            when: {{event_id: ORDER_CREATED}}
            send: {{to: crm, body: '{{"valor": "{{{{ data.user.email | brl }}}}"}}'}}
          - name: empresa
            when: {{event_id: ORDER_CREATED}}
            send: {{to: crm, body: '{{"valor": "{{{{ data.empresa | go_date }}}}"}}'}}
        """
    )
    event = json.loads((EVENTS / "order_created.json").read_text())
    event["data"]["user"].update(PLANTED)
    event["data"]["empresa"] = CNPJ
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        response = gateway.post(f"/hooks/go?token={TOKEN}", json.dumps(event))
        assert response.status_code == 202
        shown = None
        for _ in range(100):  # bounded wait until the refused delivery is dead
            shown = json.loads(gateway.cli("events", "show", response.json()["id"], "--json").stdout)
            if all(d["status"] in ("dead", "failed") for d in shown["deliveries"]):
                break
            httpx.get(gateway.url("/healthz"))
        assert shown is not None
        errors = [d["last_error"] for d in shown["deliveries"]] + [a["error"] for d in shown["deliveries"] for a in d.get("attempts_log", []) if a["error"]]
        assert len(errors) >= 3 and all(errors), errors
        assert any("brl needs an amount" in e for e in errors) and any("HTTP 400" in e for e in errors)
        exposed = "\n".join([gateway.log(), httpx.get(gateway.url("/metrics")).text, *errors])
        for value in [*PLANTED.values(), CNPJ, "12345678909", "maria.silva"]:
            assert value not in exposed, value
    finally:
        gateway.kill()
        sink.close()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("brl needs an amount, got 'ana@example.com'", "brl needs an amount, got '***'"),
        ("CPF 123.456.789-09 and 12345678909", "CPF *** and ***"),
        ("CNPJ 12.345.678/0001-95, new form AB.CDE.FGH/0001-95", "CNPJ ***, new form ***"),
        ("call (11) 91234-5678 or +5511912345678", "call *** or ***"),
        ("order 0000593098 at 2021-03-02 21:02:53, HTTP 400", "order 0000593098 at 2021-03-02 21:02:53, HTTP 400"),
    ],
)
def test_personal_data_in_messages_is_masked(text: str, shown: str) -> None:
    assert mask_personal_data(text) == shown
