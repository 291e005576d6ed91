"""Log lines through a real `gateway serve` (its HTTP process and children): in JSON, a line about
one shop's event or delivery carries the shop as `tenant`; routes.yaml's own lines carry none."""

from __future__ import annotations

import json
import time

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Sink, always

SHOP = """
version: 1
sources: {{go-loja-a: {{token: token-da-loja-a-123, dedupe: false}}}}
destinations:
  crm: {{type: http, url: "{url}"}}
routes:
  - name: pedido
    when: {{event_id: ORDER_CREATED}}
    send: {{to: crm, body: '{{"id": "{{{{ data.id }}}}"}}'}}
"""
MAIN = """
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: token-do-gateway-123, dedupe: false}}}}
destinations:
  espelho: {{type: http, url: "{url}"}}
routes:
  - name: espelho
    when: {{event_id: ORDER_CREATED}}
    send: {{to: espelho, body: '{{"id": "{{{{ data.id }}}}"}}'}}
"""


def test_json_log_lines_name_the_shop_of_their_event_and_delivery(project: Project) -> None:
    """A shop's event stored and its delivery refused: both lines have "tenant": "loja-a"; the
    same for routes.yaml's own source has no tenant field."""
    sink = Sink(behaviour=always(400, b"recusado"))  # a refused delivery is logged at info
    project.routes(MAIN.format(url=sink.url("/espelho")))
    project.write("routes.d/loja-a.yaml", SHOP.format(url=sink.url("/loja-a")))
    gateway = GatewayProcess(project.root, {"GATEWAY_LOG_FORMAT": "json", "GATEWAY_LOG_LEVEL": "debug"}).start()
    body = (EVENTS / "order_created.json").read_text()
    try:
        assert gateway.post("/hooks/go-loja-a?token=token-da-loja-a-123", body).status_code == 202
        assert gateway.post("/hooks/go?token=token-do-gateway-123", body).status_code == 202
        sink.wait_for(2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and gateway.log().count("dead") < 2:
            time.sleep(0.05)
    finally:
        gateway.terminate()
        sink.close()
    lines = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    stored = {line["message"].split(" from ")[1].split(":")[0]: line for line in lines if line["message"].startswith("event ") and " from " in line["message"]}
    dead = {line["message"].split(" to ")[1].split(":")[0]: line for line in lines if line["message"].startswith("delivery ") and "dead" in line["message"]}
    assert stored["go-loja-a (shop loja-a)"]["tenant"] == "loja-a" and "tenant" not in stored["go"]
    assert dead["loja-a/crm"]["tenant"] == "loja-a" and "tenant" not in dead["espelho"]
