"""What every destination shares: HTTP status classes, Retry-After, update bodies."""

from __future__ import annotations

import pytest

from gateway.destinations import classify
from gateway.destinations.base import contains_words, parse_retry_after, read_update
from tests.destinations import NOW, spec

HTTP = spec({"type": "http", "url": "https://erp/x"})


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
    ("raw", "message"),
    [
        ({"type": "slack"}, "needs 'url'"),
        ({"type": "slack", "url": "https://x", "token": "t"}, "not both"),
        ({"type": "slack", "token": "t"}, "needs 'channel'"),
        ({"type": "pipedrive", "token": "t", "company": "acme.pipedrive.com"}, "only the company part"),
    ],
)
def test_invalid_combinations(raw: dict, message: str) -> None:
    problems = spec(raw).problems()
    assert problems and message in problems[0][1]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"set": {"status": "won"}}', 'an update needs "find"'),
        ('{"find": "  ", "set": {"status": "won"}}', 'an update needs "find"'),
        ('{"find": "Pedido 1"}', 'an update needs "set"'),
        ('{"find": "Pedido 1", "set": {}}', 'an update needs "set"'),
        ('[1]', 'an update needs "find"'),
    ],
)
def test_update_bodies_must_say_what_to_find_and_what_to_set(body: str, problem: str) -> None:
    found = read_update(body)
    assert isinstance(found, str) and problem in found


def test_update_body_is_read() -> None:
    update = read_update('{"find": " Pedido 1 ", "set": {"status": "won"}}')
    assert not isinstance(update, str) and (update.find, update.changes) == ("Pedido 1", {"status": "won"})


@pytest.mark.parametrize(
    ("text", "term", "expected"),
    [("Pedido 12 - Ana", "Pedido 12", True), ("Pedido 123 - Ana", "Pedido 12", False), ("pedido 12", "Pedido 12", True), ("Novo Pedido 12", "Pedido 12", True), ("Pedido 12.5", "Pedido 12", True), ("XPedido 12", "Pedido 12", False)],
)
def test_search_terms_match_whole_words(text: str, term: str, expected: bool) -> None:
    assert contains_words(text, term) is expected
