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
