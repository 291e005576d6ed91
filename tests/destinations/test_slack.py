"""Slack: incoming webhooks and bot tokens, their answers and limits."""

from __future__ import annotations

import json

import pytest

from gateway.destinations import build_request, classify
from gateway.destinations import check_body as slack_check
from gateway.units import Rate
from tests.conftest import Project
from tests.destinations import NOW, deliveries_when, post_event, spec, start_gateway
from tests.harness import Received, Sink

SLACK = spec({"type": "slack", "url": "https://hooks.slack.com/services/T/B/x"})
SLACK_BOT = spec({"type": "slack", "token": "xoxb", "channel": "#c"})


def test_slack_webhook() -> None:
    request = build_request(spec({"type": "slack", "url": "https://hooks.slack.com/services/T/B/x"}), '{"text": "oi"}', "k1")
    assert (request.method, request.url, request.body) == ("POST", "https://hooks.slack.com/services/T/B/x", '{"text": "oi"}')
    assert request.headers["Idempotency-Key"] == "k1"


def test_slack_bot_adds_channel_and_bearer() -> None:
    request = build_request(spec({"type": "slack", "token": "xoxb-1", "channel": "#vendas"}), '{"text": "oi"}', "k1")
    assert request.url == "https://slack.com/api/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-1"
    assert json.loads(request.body) == {"text": "oi", "channel": "#vendas"}


def test_slack_default_rate_is_one_per_second() -> None:
    assert spec({"type": "slack", "url": "https://x"}).rate == Rate(1, 1.0, "1/s")


@pytest.mark.parametrize(
    ("status", "body", "kind", "reason"),
    [
        (200, "ok", "delivered", ""),
        (400, "invalid_payload", "dead", "invalid_payload"),
        (404, "no_service", "dead", "no_service"),
        (410, "channel_is_archived", "dead", "channel_is_archived"),
        (500, "rollup_error", "retry", "rollup_error"),
    ],
)
def test_slack_webhook_answers(status: int, body: str, kind: str, reason: str) -> None:
    outcome = classify(SLACK, status, {}, body, NOW)
    assert outcome.kind == kind and reason in outcome.reason


@pytest.mark.parametrize(
    ("error", "kind"),
    [("ratelimited", "retry"), ("internal_error", "retry"), ("invalid_auth", "dead"), ("channel_not_found", "dead"), ("is_archived", "dead")],
)
def test_slack_bot_errors_arrive_as_200(error: str, kind: str) -> None:
    outcome = classify(SLACK_BOT, 200, {}, json.dumps({"ok": False, "error": error}), NOW)
    assert outcome.kind == kind and error in outcome.reason


def test_slack_bot_success() -> None:
    assert classify(SLACK_BOT, 200, {}, '{"ok": true, "ts": "1"}', NOW).kind == "delivered"


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"text": "ok", "blocks": [{"type": "divider"}] * 51}, "at most 50 blocks in a message; this one has 51"),
        ({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}, "block 1: a section's text may have 3,000 characters"),
        ({"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "a"}] * 11}]}, "a section may have 10 fields"),
        ({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}, "a header's text may have 150 characters"),
        ({"text": "x" * 40001}, "Slack cuts 'text' at 40,000 characters"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_slack_limits_are_caught_before_sending(message: object, problem: str) -> None:
    assert problem in (slack_check(SLACK, json.dumps(message)) or "")


def test_slack_message_within_limits_passes() -> None:
    assert slack_check(SLACK, json.dumps({"text": "oi", "blocks": [{"type": "divider"}] * 50})) is None


# ------------------------------------------------------------------ through a running gateway

BOT_TOKEN = "xoxb-123-segredo"


def fake_slack(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
    """Answers as Slack does: webhooks with plain-text bodies, chat.postMessage with JSON and
    HTTP 200 even for errors; the first webhook post is rate limited."""
    if request.path == "/services/T1/B1/revogado":
        return 404, {}, b"no_service", 0
    if request.path.startswith("/services/"):
        return (429, {"Retry-After": "1"}, b"", 0) if count == 1 else (200, {"content-type": "text/html"}, b"ok", 0)
    if request.path == "/api/chat.postMessage":
        if request.headers.get("authorization") != f"Bearer {BOT_TOKEN}":
            return 200, {}, b'{"ok": false, "error": "invalid_auth"}', 0
        channel = request.json().get("channel")
        if channel == "#arquivado":
            return 200, {}, b'{"ok": false, "error": "is_archived"}', 0
        return 200, {}, json.dumps({"ok": True, "channel": "C1", "ts": "1.2"}).encode(), 0
    return 404, {}, b"", 0


SLACK_ROUTES = """
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
destinations:
  webhook: {{type: slack, url: "{url}/services/T1/B1/x", rate: 100/s}}
  revogado: {{type: slack, url: "{url}/services/T1/B1/revogado"}}
  vendas: {{type: slack, token: "${{SLACK_BOT_TOKEN}}", channel: "#vendas", base_url: "{url}/api"}}
  arquivado: {{type: slack, token: "${{SLACK_BOT_TOKEN}}", channel: "#arquivado", base_url: "{url}/api"}}
routes:
  - name: tudo
    when: {{event_id: ORDER_CREATED}}
    send:
      - {{to: webhook, template: slack/order_created.json.j2}}
      - {{to: revogado, template: slack/order_created.json.j2}}
      - {{to: vendas, template: slack/order_created.json.j2}}
      - {{to: arquivado, template: slack/order_created.json.j2}}
"""


def test_slack_answers_through_the_engine(project: Project, sink: Sink) -> None:
    sink.behaviour = fake_slack
    gateway = start_gateway(project, SLACK_ROUTES.format(url=sink.url("")), {"SLACK_BOT_TOKEN": BOT_TOKEN})
    try:
        event_id = post_event(gateway, "order_created.json")
        shown = deliveries_when(gateway, event_id, lambda ds: all(d["status"] in ("delivered", "dead") for d in ds))
        by_destination = {d["destination"]: d for d in shown}
        webhook = [r for r in sink.received if r.path == "/services/T1/B1/x"]
        assert by_destination["webhook"]["status"] == "delivered" and len(webhook) == 2
        assert webhook[1].at - webhook[0].at >= 1.0  # Retry-After: 1
        assert webhook[0].body == webhook[1].body and webhook[0].json()["blocks"]
        assert (by_destination["revogado"]["status"], by_destination["revogado"]["attempts"]) == ("dead", 1)
        assert "no_service" in by_destination["revogado"]["last_error"]
        bot = next(r for r in sink.received if r.path == "/api/chat.postMessage" and r.json()["channel"] == "#vendas")
        assert bot.headers["content-type"].startswith("application/json") and bot.json()["text"]
        assert by_destination["vendas"]["status"] == "delivered"
        assert (by_destination["arquivado"]["status"], by_destination["arquivado"]["last_error"]) == ("dead", "Slack: is_archived")
        assert BOT_TOKEN not in gateway.log()
    finally:
        gateway.kill()
