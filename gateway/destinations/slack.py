"""Slack: an incoming webhook (`url`) or a bot token posting with `chat.postMessage`."""

from __future__ import annotations

import json

from gateway.destinations.base import DestinationSpec, OutgoingRequest, json_headers
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
