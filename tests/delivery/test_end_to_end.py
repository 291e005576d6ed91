"""Delivery through a running `gateway serve` and a real sink: the wiring of retries, replay,
signatures, the egress guard, `gateway worker` and reloads. The engine's behaviour in detail
(schedules, Retry-After, 410, ordering, the breaker, timeouts) is tests/delivery/test_engine.py,
on the in-memory store with a controlled clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Sink

TOKEN = "token-de-teste-123"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def config(sink: Sink, destination_extra: str = "", settings: str = "settings: {egress_allow: [127.0.0.0/8]}") -> str:
    return f"""
    version: 1
    {settings}
    sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
    destinations:
      sink:
        type: http
        url: "{sink.url('/in')}"
        retry: {{attempts: 4, first: 100ms, max: 1s}}
        timeout: 2s
        {destination_extra}
    routes:
      - name: tudo
        when: {{event_id: {{exists: true}}}}
        send: {{to: sink, body: '{{"id": "{{{{ data.id }}}}", "event": "{{{{ event_id }}}}"}}'}}
    """


def start(project: Project, text: str) -> GatewayProcess:
    project.routes(text)
    return GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()


def send(gateway: GatewayProcess, order_id: str = "100", event: str = "order_created.json") -> str:
    body = json.loads((EVENTS / event).read_text())
    body["data"]["id"] = order_id
    response = gateway.post(f"/hooks/go?token={TOKEN}", json.dumps(body))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def attempts(gateway: GatewayProcess, event_id: str) -> list[dict]:
    shown = gateway.cli("events", "show", event_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["deliveries"][0]


def test_503_twice_then_200_is_delivered_on_the_third_attempt(project: Project, sink: Sink) -> None:
    """Transient failures are retried with the same Idempotency-Key until the receiver takes it."""
    sink.behaviour = lambda request, count: (503 if count <= 2 else 200, {}, b"", 0)
    gateway = start(project, config(sink))
    try:
        event_id = send(gateway)
        received = sink.wait_for(3)
        assert len({r.headers["idempotency-key"] for r in received}) == 1
        delivery = _wait_status(gateway, event_id, "delivered")
        assert [a["outcome"] for a in delivery["attempts_log"]] == ["retry", "retry", "delivered"]
        assert [a["status_code"] for a in delivery["attempts_log"]] == [503, 503, 200]
    finally:
        gateway.kill()


def test_400_is_dead_at_once_and_replay_delivers_after_the_fix(project: Project, sink: Sink) -> None:
    """A permanent failure is dead after one attempt; `gateway replay` sends it again."""
    sink.behaviour = lambda request, count: (400, {}, b"campo invalido", 0)
    gateway = start(project, config(sink))
    try:
        event_id = send(gateway)
        delivery = _wait_status(gateway, event_id, "dead")
        assert delivery["attempts"] == 1 and delivery["last_error"] == "HTTP 400: the receiver refused the request"
        assert delivery["attempts_log"][0]["response"] == "campo invalido"
        sink.behaviour = lambda request, count: (200, {}, b"ok", 0)
        replayed = gateway.cli("replay")
        assert replayed.returncode == 0 and "1 delivery queued again" in replayed.stdout
        received = sink.wait_for(2)
        assert received[0].headers["idempotency-key"] == received[1].headers["idempotency-key"]
        assert _wait_status(gateway, event_id, "delivered")["attempts_log"][-1]["outcome"] == "delivered"
    finally:
        gateway.kill()


def test_standard_webhooks_signature(project: Project, sink: Sink) -> None:
    """Signed deliveries carry webhook-id/timestamp/signature that verify with the secret."""
    gateway = start(project, config(sink, f'sign: "{SECRET}"'))
    try:
        send(gateway)
        request = sink.wait_for(1)[0]
        message_id, timestamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + request.body, hashlib.sha256).digest()).decode()
        assert request.headers["webhook-signature"] == f"v1,{expected}"
        assert message_id == request.headers["idempotency-key"]
    finally:
        gateway.kill()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1", "2130706433", "[::ffff:127.0.0.1]"])
def test_private_addresses_are_refused_unless_allowed(project: Project, sink: Sink, host: str) -> None:
    """Without egress_allow, a delivery to loopback is dead with the reason, and never sent,
    however the address is written: names and odd numeric forms are checked once resolved.
    The address comes from a variable, as a run-time value (a literal one is a `check` error)."""
    project.routes(config(sink, settings="").replace(f'"{sink.url("/in")}"', '"${SINK_URL}"'))
    url = sink.url("/in").replace("127.0.0.1", host)
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN, "SINK_URL": url}).start()
    try:
        event_id = send(gateway)
        delivery = _wait_status(gateway, event_id, "dead")
        assert "address not allowed" in delivery["last_error"] and "127.0.0.0/8" in delivery["last_error"], delivery["last_error"]
        assert sink.received == []
    finally:
        gateway.kill()


def _wait_status(gateway: GatewayProcess, event_id: str, status: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery = attempts(gateway, event_id)
        if delivery["status"] == status:
            return delivery
        time.sleep(0.1)
    raise AssertionError(f"delivery still {delivery['status']} after {timeout} s: {delivery}")


def test_separate_worker_delivers_what_serve_no_deliver_stores(project: Project, sink: Sink) -> None:
    """`serve --no-deliver` only stores; `gateway worker` on the same database delivers, and
    follows an edit of routes.yaml (here the destination's URL) as serve does."""
    import subprocess
    import sys

    from tests.conftest import gateway_env

    project.routes(config(sink))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN})
    gateway.start_args = ["--no-deliver"]
    worker = None
    worker_log = project.root / "worker.log"
    try:
        gateway.start()
        event_id = send(gateway)
        assert _wait_status(gateway, event_id, "pending")["attempts"] == 0
        with worker_log.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "gateway", "worker", "--db", gateway.database],
                cwd=project.root, env=gateway_env(), stdout=log, stderr=log,
            )
        received = sink.wait_for(1)
        assert received[0].json() == {"id": "100", "event": "ORDER_CREATED"}
        _wait_status(gateway, event_id, "delivered")

        project.routes(config(sink).replace(sink.url("/in"), sink.url("/novo")))
        deadline = time.monotonic() + 15
        while "routes reloaded" not in worker_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "routes reloaded" in worker_log.read_text(), worker_log.read_text()
        send(gateway, "101")
        assert sink.wait_for(1, path="/novo")[0].json() == {"id": "101", "event": "ORDER_CREATED"}
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        gateway.kill()


def test_a_stored_body_the_changed_destination_cannot_send_is_dead_with_the_fix(project: Project, sink: Sink) -> None:
    """Bodies rendered for `action: create`, then the destination becomes `action: update`
    (hot reload): the delivery is dead at once with the reason and the command that fixes it,
    instead of failing in a loop."""
    routes = """
    version: 1
    settings: {{egress_allow: [127.0.0.0/8]}}
    sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}"}}}}
    destinations:
      negocios: {{type: pipedrive, token: tok, company: acme, object: deals, base_url: "{url}"{extra}}}
    routes:
      - name: crm
        when: {{event_id: ORDER_CREATED}}
        send: {{to: negocios, template: {template}}}
    """
    project.routes(routes.format(url=sink.url("/api/v2"), extra="", template="pipedrive/deal.json.j2"))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN})
    gateway.start_args = ["--no-deliver"]
    gateway.start()
    try:
        event_id = send(gateway)
    finally:
        gateway.terminate()
    project.routes(routes.format(url=sink.url("/api/v2"), extra=", action: update", template="pipedrive/deal_lost.json.j2"))
    gateway.start_args = []
    gateway.start()
    try:
        delivery = _wait_status(gateway, event_id, "dead")
        assert delivery["last_error"].startswith('cannot build the request: an update needs "find"')
        assert "gateway replay --rerender" in delivery["last_error"]
        assert sink.received == []
    finally:
        gateway.kill()


def test_a_receivers_cookies_are_never_sent_back(project: Project, sink: Sink) -> None:
    """A session cookie set by one answer must not ride along on later deliveries (they may be
    for another account on the same host)."""
    sink.behaviour = lambda request, count: (200, {"Set-Cookie": "sessao=abc123; Path=/"}, b"", 0)
    by_name = config(sink).replace("http://127.0.0.1:", "http://localhost:")  # cookie jars refuse cookies of bare addresses
    gateway = start(project, by_name)
    try:
        send(gateway, "1")
        sink.wait_for(1)
        send(gateway, "2")
        received = sink.wait_for(2)
    finally:
        gateway.kill()
    assert [json.loads(r.body)["id"] for r in received] == ["1", "2"]
    assert "cookie" not in received[1].headers
