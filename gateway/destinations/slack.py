"""Slack: an incoming webhook (`url`) or a bot token posting with `chat.postMessage`."""

from __future__ import annotations

import json

import msgspec

from gateway.destinations.base import (
    FOUND_ID,
    DELIVERED,
    DestinationSpec,
    Outcome,
    OutgoingRequest,
    classify_response,
    json_headers,
    parse_retry_after,
)
from gateway.units import Rate


class Spec(DestinationSpec, tag="slack", kw_only=True):
    """`url:` for an incoming webhook, or `token:` + `channel:` for a bot."""

    url: str | None = None
    token: str | None = None
    channel: str | None = None
    base_url: str = "https://slack.com/api"
    rate: Rate | None = Rate(1, 1.0, "1/s")  # Slack allows about one message a second

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) pairs for combinations msgspec cannot express."""
        if self.url and self.token:
            return [("token", "give either 'url' (incoming webhook) or 'token' + 'channel' (bot), not both")]
        if not self.url and not self.token:
            return [("type", "a slack destination needs 'url' (incoming webhook) or 'token' + 'channel' (bot)")]
        if self.token and not self.channel:
            return [("token", "a bot token needs 'channel', like channel: '#vendas'")]
        return []

    def build_request(self, body: str, idempotency_key: str, record_id: str = FOUND_ID) -> OutgoingRequest:
        if self.url:
            return OutgoingRequest("POST", self.url, json_headers(idempotency_key), body)
        message = json.loads(body)
        if isinstance(message, dict):
            message.setdefault("channel", self.channel)
            body = json.dumps(message, ensure_ascii=False)
        headers = json_headers(idempotency_key, Authorization=f"Bearer {self.token}")
        return OutgoingRequest("POST", f"{self.base_url.rstrip('/')}/chat.postMessage", headers, body)

    def classify(self, status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
        """Incoming webhooks answer 200 'ok'; chat.postMessage answers 200 with ok: false on errors."""
        if status == 200 and body.lstrip().startswith("{"):
            try:
                answer = json.loads(body)
            except json.JSONDecodeError:
                return DELIVERED
            if isinstance(answer, dict) and answer.get("ok") is False:
                error = str(answer.get("error", "unknown_error"))
                kind = "retry" if error in _RETRY_ERRORS else "dead"
                return Outcome(kind, f"Slack: {error}", parse_retry_after(headers.get("retry-after"), now))
        outcome = classify_response(status, headers, body, now)
        if outcome.kind != "delivered" and body.strip():
            return Outcome(outcome.kind, f"{outcome.reason} ({body.strip()[:100]})", outcome.retry_after)
        return outcome

    def check_body(self, body: str) -> str | None:
        """Why Slack would refuse this message (its documented limits), or None."""
        message = msgspec.json.decode(body)
        if not isinstance(message, dict):
            return "a Slack message must be a JSON object with 'text' and/or 'blocks'"
        if len(str(message.get("text", ""))) > MAX_TEXT:
            return f"Slack cuts 'text' at {MAX_TEXT:,} characters; this one has {len(message['text']):,}"
        blocks = message.get("blocks") or []
        if len(blocks) > MAX_BLOCKS:
            return f"Slack allows at most {MAX_BLOCKS} blocks in a message; this one has {len(blocks)}"
        for number, block in enumerate(blocks, 1):
            problem = _block_problem(block) if isinstance(block, dict) else "it is not an object"
            if problem:
                return f"block {number}: {problem}"
        return None


_RETRY_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})


MAX_BLOCKS, MAX_SECTION_TEXT, MAX_FIELDS, MAX_FIELD_TEXT, MAX_HEADER_TEXT, MAX_TEXT = 50, 3000, 10, 2000, 150, 40000


def _block_problem(block: dict) -> str | None:
    text = block.get("text")
    text = str(text.get("text", "")) if isinstance(text, dict) else ""
    if block.get("type") == "header" and len(text) > MAX_HEADER_TEXT:
        return f"a header's text may have {MAX_HEADER_TEXT} characters; this one has {len(text)}"
    if block.get("type") != "section":
        return None
    if len(text) > MAX_SECTION_TEXT:
        return f"a section's text may have {MAX_SECTION_TEXT:,} characters; this one has {len(text):,}"
    fields = block.get("fields") or []
    if len(fields) > MAX_FIELDS:
        return f"a section may have {MAX_FIELDS} fields; this one has {len(fields)}"
    for field in fields:
        if isinstance(field, dict) and len(str(field.get("text", ""))) > MAX_FIELD_TEXT:
            return f"a field's text may have {MAX_FIELD_TEXT:,} characters"
    return None
