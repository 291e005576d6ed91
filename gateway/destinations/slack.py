"""Slack: an incoming webhook (`url`) or a bot token posting with `chat.postMessage`."""

from __future__ import annotations

import json

from gateway.destinations.base import DELIVERED, DestinationSpec, Outcome, OutgoingRequest, classify_response, json_headers, parse_retry_after
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


def build_request(spec: Spec, body: str, idempotency_key: str) -> OutgoingRequest:
    if spec.url:
        return OutgoingRequest("POST", spec.url, json_headers(idempotency_key), body)
    message = json.loads(body)
    if isinstance(message, dict):
        message.setdefault("channel", spec.channel)
        body = json.dumps(message, ensure_ascii=False)
    headers = json_headers(idempotency_key, Authorization=f"Bearer {spec.token}")
    return OutgoingRequest("POST", f"{spec.base_url.rstrip('/')}/chat.postMessage", headers, body)


def classify(status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
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


_RETRY_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})
