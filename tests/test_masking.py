"""Secrets are hidden in URLs, headers and bodies shown to people."""

from __future__ import annotations

from gateway.destinations import OutgoingRequest
from gateway.masking import mask_request, mask_text


def test_env_secrets_are_masked_longest_first() -> None:
    assert mask_text("a=abcdef123 b=abcdef", {"abcdef", "abcdef123"}) == "a=*** b=***"


def test_secret_urls_keep_their_host() -> None:
    assert mask_text("POST https://hooks.slack.com/services/T/B/x", {"https://hooks.slack.com/services/T/B/x"}) == "POST https://hooks.slack.com/***"


def test_request_masking_by_header_name_and_query_parameter() -> None:
    request = OutgoingRequest(
        "POST",
        "https://crm/x?token=lit&page=2",
        {"Authorization": "Bearer lit2", "x-api-token": "lit3", "Idempotency-Key": "k-1", "X-Other": "visible"},
        '{"a": "env-secret-1"}',
    )
    masked = mask_request(request, {"env-secret-1"})
    assert masked.url == "https://crm/x?token=***&page=2"
    assert masked.headers == {"Authorization": "Bearer ***", "x-api-token": "***", "Idempotency-Key": "k-1", "X-Other": "visible"}
    assert masked.body == '{"a": "***"}'
