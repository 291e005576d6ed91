"""Ingest over real HTTP: a running `gateway serve`, a real sink, a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from litestar import Request

from gateway.service.app import GatewayHTTPError, _check_token
from gateway.config import Source
from gateway.errors import Location
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Sink

TOKEN = "token-de-teste-123"


def routes(sink: Sink, extra_source: str = "") -> str:
    return f"""
    version: 1
    settings: {{egress_allow: [127.0.0.0/8]}}
    sources:
      go:
        token: ${{GO_WEBHOOK_TOKEN}}
        {extra_source}
    destinations:
      espelho: {{type: http, url: "{sink.url('/espelho')}"}}
      slack: {{type: slack, url: "{sink.url('/slack')}"}}
    routes:
      - name: espelho
        when: {{event_id: {{exists: true}}}}
        send: {{to: espelho, body: "{{{{ event | tojson }}}}"}}
      - name: pedido-no-slack
        when: {{event_id: ORDER_CREATED}}
        send: {{to: slack, template: slack/order_created.json.j2}}
    """


@pytest.fixture
def gateway(project: Project, sink: Sink) -> Iterator[GatewayProcess]:
    project.routes(routes(sink))
    process = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    yield process
    process.kill()


def post_event(gateway: GatewayProcess, name: str, query: str = f"?token={TOKEN}", **kwargs) -> httpx.Response:
    return gateway.post(f"/hooks/go{query}", (EVENTS / name).read_bytes(), **kwargs)


def test_six_go_events_reach_the_sink_rendered(gateway: GatewayProcess, sink: Sink) -> None:
    """Each of GO's six events is accepted (202), stored, and delivered with its rendered body."""
    sent = []
    for path in sorted(EVENTS.glob("*.json")):
        response = post_event(gateway, path.name)
        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["event_id"] == json.loads(path.read_text())["event_id"] and answer["duplicate"] is False
        assert answer["deliveries"] == (2 if path.name == "order_created.json" else 1)
        sent.append(json.loads(path.read_text()))
    sink.wait_for(6, path="/espelho")
    assert sorted(b["event_id"] for b in sink.bodies("/espelho")) == sorted(e["event_id"] for e in sent)
    slack = sink.wait_for(1, path="/slack")[0]
    assert slack.json()["text"] == "Novo pedido 0000593098"
    assert slack.headers["idempotency-key"]


@pytest.mark.parametrize(
    ("query", "body", "headers", "status", "error"),
    [
        ("?token=errado", None, {}, 401, "unauthorized"),
        ("", None, {}, 401, "unauthorized"),
        (f"?token={TOKEN}&token={TOKEN}", None, {}, 401, "unauthorized"),
        (f"?token={TOKEN}", b'{"event_id": "ORDER_CREATED",', {}, 400, "invalid_json"),
        (f"?token={TOKEN}", b"", {}, 400, "invalid_json"),
        (f"?token={TOKEN}", b"[1, 2]", {}, 400, "not_an_object"),
        (f"?token={TOKEN}", b'{"data": {}}', {}, 400, "missing_event_id"),
        (f"?token={TOKEN}", b'{"event_id": 5}', {}, 400, "missing_event_id"),
        (f"?token={TOKEN}", b"\xff\xfe{}", {}, 400, "invalid_json"),
        (f"?token={TOKEN}", b'{"event_id": "X", "n": NaN}', {}, 400, "invalid_json"),
        (f"?token={TOKEN}", b'{"event_id": "X", "pad": "' + b"a" * (2 * 1024 * 1024) + b'"}', {}, 413, "body_too_large"),
    ],
)
def test_bad_requests_get_json_errors(gateway: GatewayProcess, query: str, body: bytes | None, headers: dict, status: int, error: str) -> None:
    """Wrong token, bad JSON, non-objects, missing event_id, oversized bodies: 4xx with a JSON reason."""
    content = body if body is not None else (EVENTS / "order_created.json").read_bytes()
    response = gateway.post(f"/hooks/go{query}", content, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json()["detail"]


def test_unknown_source_is_404(gateway: GatewayProcess) -> None:
    response = gateway.post(f"/hooks/erp?token={TOKEN}", "{}")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown_source", "detail": "no source named 'erp' in routes.yaml; events go to /hooks/go"}


def test_other_methods_and_paths_under_hooks_get_json_errors(gateway: GatewayProcess) -> None:
    """/hooks/* is one plain ASGI handler (app.py): it answers what Litestar's routing used to."""
    body = (EVENTS / "order_cancel.json").read_bytes()
    for method in ("GET", "PUT", "DELETE"):
        response = httpx.request(method, gateway.url(f"/hooks/go?token={TOKEN}"), content=body, timeout=10)
        assert response.status_code == 405, response.text
        assert response.json()["error"] == "method_not_allowed" and "POST" in response.json()["detail"]
        assert response.headers["allow"] == "POST"
    nested = gateway.post(f"/hooks/go/extra?token={TOKEN}", body)
    assert nested.status_code == 404 and nested.json()["error"] == "unknown_source"
    assert gateway.post(f"/hooks/?token={TOKEN}", body).json()["error"] == "unknown_source"
    slash = gateway.post(f"/hooks/go/?token={TOKEN}", body.replace(b'"id": "100"', b'"id": "slash"'))
    assert slash.status_code == 202 and slash.headers["content-type"] == "application/json"


def test_bearer_header_and_any_content_type_are_accepted(gateway: GatewayProcess) -> None:
    """GO (PHP) may send a wrong Content-Type; the body decides. A Bearer header works as the token."""
    body = (EVENTS / "order_cancel.json").read_bytes()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if content_type:
            headers["Content-Type"] = content_type
        changed = body.replace(b'"id": "100"', f'"id": "{content_type}"'.encode())
        assert gateway.post("/hooks/go", changed, headers=headers).status_code == 202


def test_duplicate_body_is_acknowledged_once(gateway: GatewayProcess, sink: Sink) -> None:
    first = post_event(gateway, "order_cancel.json")
    second = post_event(gateway, "order_cancel.json")
    assert first.status_code == 202 and second.status_code == 200
    assert second.json() == {"event_id": "ORDER_CANCEL", "id": first.json()["id"], "deliveries": 0, "duplicate": True}
    sink.wait_for(1, path="/espelho")


def test_health_readiness_and_metrics(gateway: GatewayProcess, sink: Sink) -> None:
    assert httpx.get(gateway.url("/healthz")).json() == {"status": "ok"}
    ready = httpx.get(gateway.url("/readyz")).json()
    assert ready["status"] == "ready" and len(ready["config_version"]) == 12
    post_event(gateway, "order_created.json")
    sink.wait_for(2)
    text = httpx.get(gateway.url("/metrics")).text
    assert 'gateway_events_received_total{outcome="accepted",source="go",tenant=""} 1.0' in text
    assert 'gateway_deliveries_total{destination="espelho",outcome="delivered",tenant=""} 1.0' in text
    assert f'gateway_config_info{{version="{ready["config_version"]}"}} 1.0' in text
    assert "gateway_queue_depth" in text and "gateway_attempt_duration_seconds_bucket" in text


def test_token_and_personal_data_never_logged(project: Project, sink: Sink) -> None:
    """The query-string token and the payload's personal data never reach the log, even at
    its most detailed level (a line per event and per delivery)."""
    project.routes(routes(sink))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN, "GATEWAY_LOG_LEVEL": "debug"}).start()
    try:
        post_event(gateway, "order_created.json")
        post_event(gateway, "order_created.json", query="?token=palpite-errado")
        sink.wait_for(2)
    finally:
        gateway.kill()
    log = gateway.log()
    assert "ORDER_CREATED from go: 2 deliveries" in log  # the log does say what happened
    for secret in (TOKEN, "palpite-errado", "teste@teste.com", "123421341234", "123423434"):
        assert secret not in log


def test_ip_allowlist_and_forwarded_for(project: Project, sink: Sink) -> None:
    """allow_ips refuses other peers (403); X-Forwarded-For is ignored unless the peer is a trusted proxy."""
    project.routes(routes(sink, "allow_ips: [203.0.113.0/24]"))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        spoofed = post_event(gateway, "order_created.json", headers={"X-Forwarded-For": "203.0.113.9"})
        assert spoofed.status_code == 403 and spoofed.json()["error"] == "forbidden"
    finally:
        gateway.kill()
    project.routes(routes(sink, "allow_ips: [203.0.113.0/24]\n        trusted_proxies: [127.0.0.1/32]"))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        via_proxy = post_event(gateway, "order_created.json", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
        assert via_proxy.status_code == 202
        outside = post_event(gateway, "order_cancel.json", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.1"})
        assert outside.status_code == 403
    finally:
        gateway.kill()


def test_source_without_token_refuses_events(project: Project, sink: Sink) -> None:
    """With GO_WEBHOOK_TOKEN unset the source is inactive: 503 with the reason, nothing open to all."""
    project.routes(routes(sink))
    gateway = GatewayProcess(project.root, {}).start()
    try:
        response = post_event(gateway, "order_created.json", query="")
        assert response.status_code == 503
        assert response.json() == {"error": "source_not_configured", "detail": "source 'go' is not configured on the gateway (GO_WEBHOOK_TOKEN not set)"}
    finally:
        gateway.kill()


def test_render_failure_is_stored_as_failed_delivery(project: Project, sink: Sink) -> None:
    """A template that fails creates a failed delivery saying why; the event is still accepted."""
    project.without_samples()
    project.routes(routes(sink).replace('body: "{{ event | tojson }}"', 'body: \'{"x": "{{ data.nada }}"}\''))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        response = post_event(gateway, "order_cancel.json")
        assert response.status_code == 202
        shown = gateway.cli("events", "show", response.json()["id"], "--json")
        delivery = json.loads(shown.stdout)["deliveries"][0]
        assert delivery["status"] == "failed"
        assert "the field 'nada' is not in this object" in delivery["last_error"]
    finally:
        gateway.kill()


@pytest.mark.parametrize(
    ("token", "query", "authorization", "accepted"),
    [
        ("a+b/c=d", "token=a%2Bb%2Fc%3Dd", None, True),  # as a URL encoder writes a token with + / =
        ("a+b/c=d", "token=a+b/c=d", None, False),  # '+' in a query means a space
        ("s3nhá", "token=s3nh%C3%A1", None, True),  # UTF-8, percent-encoded
        ("t0k", "token=t0k%FF", None, False),  # a byte that is no UTF-8: refused, not a crash
        ("t0k", "other=1&token=t0k", None, True),
        ("t0k", "", "bearer t0k", True),  # the scheme's case does not matter
        ("t0k", "", "Basic t0k", False),
        ("t0k", "token=wrong", "Bearer t0k", False),  # the query wins when both are there
    ],
)
def test_token_from_the_query_or_a_bearer_header(token: str, query: str, authorization: str | None, accepted: bool) -> None:
    """How the token is read off the request."""
    source = Source(name="go", token=token, allow_ips=(), trusted_proxies=(), dedupe_window=None, dedupe_key=None, inactive=None, location=Location("routes.yaml", 1, 1))
    scope = {"query_string": query.encode("utf-8"), "headers": [(b"authorization", authorization.encode())] if authorization else []}
    try:
        _check_token(Request({"type": "http", **scope}), source)  # type: ignore[arg-type]
        outcome = True
    except GatewayHTTPError as exc:
        assert exc.status_code == 401
        outcome = False
    assert outcome is accepted


NEW_TOKEN, OLD_TOKEN = "token-novo-0123456789abcd", "token-antigo-0123456789wxyz"


def test_a_source_rotating_its_token_takes_both_and_records_which_came(project: Project, sink: Sink, store_url: str) -> None:
    """`token: [new, old]` while GO's URL changes: both accepted, another refused; which one each
    event came with is kept masked (its last characters) and shown by `gateway events`, the
    admin API and the console (which then lists a token column). On SQLite and PostgreSQL."""
    project.routes(routes(sink).replace("token: ${GO_WEBHOOK_TOKEN}", 'token: ["${GO_WEBHOOK_TOKEN}", "${GO_WEBHOOK_TOKEN_OLD}"]'))
    admin = "token-admin-de-teste-0123456789"
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": NEW_TOKEN, "GO_WEBHOOK_TOKEN_OLD": OLD_TOKEN, "GATEWAY_ADMIN_TOKEN": admin})
    gateway.database = store_url
    gateway.start()
    body = (EVENTS / "order_created.json").read_text()
    try:
        new = gateway.post(f"/hooks/go?token={NEW_TOKEN}", body.replace("0000593098", "0000000001"))
        old = gateway.post(f"/hooks/go?token={OLD_TOKEN}", body.replace("0000593098", "0000000002"))
        wrong = gateway.post("/hooks/go?token=token-novo-0123456789abcX", body)
        assert (new.status_code, old.status_code, wrong.status_code) == (202, 202, 401)
        listed = gateway.cli("events").stdout
        api = httpx.Client(base_url=gateway.url(""), headers={"Authorization": f"Bearer {admin}"}, timeout=10)
        shown = {e["id"]: e["token"] for e in api.get("/admin/api/events").json()["events"]}
        detail = api.get(f"/admin/api/events/{old.json()['id']}").json()
        api.close()
        with httpx.Client(base_url=gateway.url(""), timeout=10) as browser:
            assert browser.post("/console/login", data={"token": admin}).status_code == 303
            page = browser.get(f"/console/events/{old.json()['id']}").text
            listing = browser.get("/console/events").text
    finally:
        gateway.terminate()
    assert shown == {new.json()["id"]: "…abcd", old.json()["id"]: "…wxyz"}
    assert detail["token"] == "…wxyz"
    assert f"{new.json()['id']}" in listed and "token …abcd" in listed and "token …wxyz" in listed
    assert NEW_TOKEN not in listed + page + listing and OLD_TOKEN not in listed + page + listing
    assert 'com o token <code class="token">…wxyz</code>' in page
    assert "<th>Token</th>" in listing and listing.count('<code class="token">') == 2


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ('["a-token-1", "a-token-2", "a-token-3"]', "give one token, or a list of two while you rotate it"),
        ('["a-token-1", "a-token-1"]', "the same token is listed twice"),
        ("[]", "it is empty; give the token GO sends"),
        ('""', "it is empty; give the token GO sends"),
    ],
)
def test_a_rotation_lists_two_different_tokens(project: Project, sink: Sink, token: str, message: str) -> None:
    project.routes(routes(sink).replace("token: ${GO_WEBHOOK_TOKEN}", f"token: {token}"))
    result = project.gateway("check")
    assert result.returncode == 1 and f"routes.yaml:5:12: token: {message}" in result.stdout, result.stdout
