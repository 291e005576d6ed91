"""Each destination type builds the request its vendor expects."""

from __future__ import annotations

import json

import msgspec
import pytest

from gateway.destinations import TYPES, build_request
from gateway.units import Duration, Rate


def spec(raw: dict):
    decode = lambda kind, value: kind.parse(value)  # noqa: E731
    return msgspec.convert(raw, TYPES[raw["type"]].Spec, dec_hook=decode)


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
    ("raw", "message"),
    [
        ({"type": "slack"}, "needs 'url'"),
        ({"type": "slack", "url": "https://x", "token": "t"}, "not both"),
        ({"type": "slack", "token": "t"}, "needs 'channel'"),
        ({"type": "http", "url": "ftp://x"}, "not an http"),
        ({"type": "pipedrive", "token": "t", "company": "acme.pipedrive.com"}, "only the company part"),
    ],
)
def test_invalid_combinations(raw: dict, message: str) -> None:
    problems = spec(raw).problems()
    assert problems and message in problems[0][1]


def test_http_headers_and_method() -> None:
    request = build_request(spec({"type": "http", "url": "https://erp/x", "method": "PUT", "headers": {"X-A": "1"}}), "{}", "k")
    assert (request.method, request.headers["X-A"], request.headers["Content-Type"]) == ("PUT", "1", "application/json")


def test_http_timeout_and_retry_parse() -> None:
    parsed = spec({"type": "http", "url": "https://erp/x", "timeout": "30s", "retry": {"attempts": 3, "first": "1m", "max": "1h30m"}})
    assert parsed.timeout == Duration(30, "30s")
    assert (parsed.retry.attempts, parsed.retry.first.seconds, parsed.retry.max.seconds) == (3, 60, 5400)


def test_hubspot() -> None:
    request = build_request(spec({"type": "hubspot", "token": "pat-1", "object": "deals"}), "{}", "k")
    assert request.url == "https://api.hubapi.com/crm/v3/objects/deals"
    assert request.headers["Authorization"] == "Bearer pat-1"


def test_pipedrive() -> None:
    request = build_request(spec({"type": "pipedrive", "token": "tok", "company": "acme", "object": "deals"}), "{}", "k")
    assert request.url == "https://acme.pipedrive.com/api/v2/deals"
    assert request.headers["x-api-token"] == "tok"


def test_rdstation_token_in_query() -> None:
    request = build_request(spec({"type": "rdstation", "token": "a b&c", "object": "deals"}), "{}", "k")
    assert request.url == "https://crm.rdstation.com/api/v1/deals?token=a%20b%26c"


# ------------------------------------------------------------------ classification

from gateway.destinations import classify  # noqa: E402
from gateway.destinations.base import parse_retry_after  # noqa: E402

NOW = 1_700_000_000.0
HTTP = spec({"type": "http", "url": "https://erp/x"})
SLACK = spec({"type": "slack", "url": "https://hooks.slack.com/services/T/B/x"})
SLACK_BOT = spec({"type": "slack", "token": "xoxb", "channel": "#c"})


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, "delivered"), (201, "delivered"), (204, "delivered"), (301, "dead"), (302, "dead"), (400, "dead"), (401, "dead"), (404, "dead"),
     (408, "retry"), (410, "dead"), (422, "dead"), (425, "retry"), (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry")],
)
def test_http_status_classes(status: int, kind: str) -> None:
    assert classify(HTTP, status, {}, "", NOW).kind == kind


def test_redirect_is_never_followed_and_says_where() -> None:
    outcome = classify(HTTP, 301, {"location": "https://elsewhere/"}, "", NOW)
    assert "redirects are not followed (to https://elsewhere/)" in outcome.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0", 0.0), ("86400", 86400.0), ("Wed, 15 Nov 2023 00:13:20 GMT", 0.0), ("Wed, 15 Nov 2023 00:13:30 GMT", 10.0), ("soon", None), ("", None), (None, None), ("-5", None)],
)
def test_retry_after_forms(value: str | None, expected: float | None) -> None:
    """Seconds and HTTP dates are read; garbage gives None (the schedule decides)."""
    assert parse_retry_after(value, 1_700_007_200.0) == expected


def test_429_carries_retry_after() -> None:
    assert classify(HTTP, 429, {"retry-after": "7"}, "", NOW).retry_after == 7.0


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


# ------------------------------------------------------------------ vendors' own answers

from datetime import datetime  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from gateway.destinations.slack import check_body as slack_check  # noqa: E402

HUBSPOT = spec({"type": "hubspot", "token": "pat"})
PIPEDRIVE = spec({"type": "pipedrive", "token": "t", "company": "acme"})
RDSTATION = spec({"type": "rdstation", "token": "t"})


def test_hubspot_conflict_means_already_there() -> None:
    body = json.dumps({"status": "error", "category": "CONFLICT", "message": "Contact already exists. Existing ID: 501"})
    outcome = classify(HUBSPOT, 409, {}, body, NOW)
    assert outcome.kind == "delivered" and "Existing ID: 501" in outcome.reason


def test_hubspot_daily_limit_waits_for_midnight_in_brazil() -> None:
    now = datetime(2026, 11, 27, 15, 0, tzinfo=ZoneInfo("America/Sao_Paulo")).timestamp()
    body = json.dumps({"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY"})
    outcome = classify(HUBSPOT, 429, {"retry-after": "1"}, body, now)
    assert outcome.kind == "retry" and outcome.retry_after == 9 * 3600 + 60


def test_hubspot_ten_second_limit_retries_soon() -> None:
    body = json.dumps({"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"})
    assert classify(HUBSPOT, 429, {}, body, NOW).retry_after == 10.0
    assert classify(HUBSPOT, 429, {"retry-after": "3"}, body, NOW).retry_after == 3.0


@pytest.mark.parametrize(("status", "kind"), [(400, "dead"), (401, "dead"), (403, "dead"), (404, "dead"), (500, "retry"), (502, "retry")])
def test_hubspot_errors_keep_the_vendor_message(status: int, kind: str) -> None:
    body = json.dumps({"category": "VALIDATION_ERROR", "message": "Property values were not valid"})
    outcome = classify(HUBSPOT, status, {}, body, NOW)
    assert outcome.kind == kind and "HubSpot says Property values were not valid" in outcome.reason


def test_pipedrive_rate_limit_reset_header() -> None:
    outcome = classify(PIPEDRIVE, 429, {"x-ratelimit-reset": "2", "x-ratelimit-remaining": "0"}, '{"success": false}', NOW)
    assert outcome.kind == "retry" and outcome.retry_after == 2.0


@pytest.mark.parametrize(("status", "kind"), [(400, "dead"), (402, "dead"), (410, "dead"), (415, "dead"), (422, "dead"), (500, "retry"), (503, "retry")])
def test_pipedrive_errors(status: int, kind: str) -> None:
    outcome = classify(PIPEDRIVE, status, {}, json.dumps({"success": False, "error": "Deal title is required"}), NOW)
    assert outcome.kind == kind and "Pipedrive says Deal title is required" in outcome.reason


@pytest.mark.parametrize(("status", "kind", "words"), [(406, "dead", "contact limit"), (401, "dead", "token is invalid"), (429, "retry", "HTTP 429"), (200, "delivered", "")])
def test_rdstation_answers(status: int, kind: str, words: str) -> None:
    outcome = classify(RDSTATION, status, {}, "", NOW)
    assert outcome.kind == kind and words in outcome.reason


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
    assert problem in (slack_check(json.dumps(message)) or "")


def test_slack_message_within_limits_passes() -> None:
    assert slack_check(json.dumps({"text": "oi", "blocks": [{"type": "divider"}] * 50})) is None
