"""The generic `http` destination."""

from __future__ import annotations

from gateway.destinations import build_request
from gateway.units import Duration
from tests.destinations import spec


def test_http_headers_and_method() -> None:
    request = build_request(spec({"type": "http", "url": "https://erp/x", "method": "PUT", "headers": {"X-A": "1"}}), "{}", "k")
    assert (request.method, request.headers["X-A"], request.headers["Content-Type"]) == ("PUT", "1", "application/json")


def test_http_timeout_and_retry_parse() -> None:
    parsed = spec({"type": "http", "url": "https://erp/x", "timeout": "30s", "retry": {"attempts": 3, "first": "1m", "max": "1h30m"}})
    assert parsed.timeout == Duration(30, "30s")
    assert (parsed.retry.attempts, parsed.retry.first.seconds, parsed.retry.max.seconds) == (3, 60, 5400)
