"""`gateway send EVENT.json`: a sample event posted to the running gateway with the source's
token, the answer printed, and with --wait, what became of its deliveries."""

from __future__ import annotations

from tests.conftest import Project
from tests.harness import GatewayProcess, Sink

TOKEN = "token-de-teste-123"


def test_send_posts_with_the_token_and_waits_for_the_deliveries(project: Project, sink: Sink) -> None:
    project.routes(
        f"""
        version: 1
        settings: {{egress_allow: [127.0.0.0/8]}}
        sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}"}}}}
        destinations: {{erp: {{type: http, url: "{sink.url('/erp')}"}}}}
        routes:
          - name: pedido
            when: {{event_id: ORDER_CREATED}}
            send: {{to: erp, body: '{{"pedido": "{{{{ data.code }}}}"}}'}}
        """
    )
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        env = {"GO_WEBHOOK_TOKEN": TOKEN, "GATEWAY_DATABASE_URL": gateway.database}
        sent = project.gateway("send", "examples/events/order_created.json", "--url", gateway.url(""), "--wait", "20", env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert sent.stdout.startswith("202 ") and '"deliveries":1' in sent.stdout
        assert "→ pedido → erp: delivered after 1 attempt" in sent.stdout
        assert [r.json() for r in sink.received] == [{"pedido": "0000593098"}]
        again = project.gateway("send", "examples/events/order_created.json", "--url", gateway.url(""), env=env)
        assert again.returncode == 0 and again.stdout.startswith("200 ") and '"duplicate":true' in again.stdout
        wrong = project.gateway("send", "examples/events/order_created.json", "--url", gateway.url(""), env={**env, "GO_WEBHOOK_TOKEN": "outro-token"})
        assert wrong.returncode == 1 and wrong.stdout.startswith("401 ")
    finally:
        gateway.kill()


def test_send_says_when_no_gateway_answers(project: Project) -> None:
    project.routes('version: 1\nsources: {go: {token: "${GO_WEBHOOK_TOKEN}"}}\nroutes: []\n')
    result = project.gateway("send", "examples/events/order_created.json", "--url", "http://127.0.0.1:9", env={"GO_WEBHOOK_TOKEN": TOKEN})
    assert result.returncode == 1 and "no gateway answered at http://127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr
    unset = project.gateway("send", "examples/events/order_created.json", "--url", "http://127.0.0.1:9")
    assert unset.returncode == 1 and "source 'go' has no token here (GO_WEBHOOK_TOKEN not set)" in unset.stderr
