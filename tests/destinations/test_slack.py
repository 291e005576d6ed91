"""Slack: incoming webhooks and bot tokens, their answers and limits."""

from __future__ import annotations

import json

import pytest

from gateway.destinations import build_request, classify
from gateway.destinations.slack import check_body as slack_check
from gateway.units import Rate
from tests.destinations import NOW, spec

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
