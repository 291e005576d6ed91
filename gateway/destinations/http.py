"""Any HTTP endpoint: the escape hatch for every vendor we do not know by name."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace
from typing import Literal

from gateway.destinations.base import FOUND_ID, DestinationSpec, OutgoingRequest


class Spec(DestinationSpec, tag="http", kw_only=True):
    url: str
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = {}
    content_type: str = "application/json"
    sign: str | None = None  # Standard Webhooks secret (whsec_…); signing is done at send time
    traceparent: bool = True  # with traces on (gateway/tracing.py), each attempt's W3C traceparent header

    @property
    def json_body(self) -> bool:
        return "json" in self.content_type.lower()

    @property
    def sends_traceparent(self) -> bool:
        return self.traceparent

    def problems(self) -> list[tuple[str, str]]:
        if self.sign:
            try:
                base64.b64decode(self.sign.removeprefix("whsec_"), validate=True)
            except ValueError:
                return [("sign", "the signing secret must be base64, optionally after 'whsec_' (as Standard Webhooks generates it)")]
        return []

    def build_request(self, body: str, idempotency_key: str, record_id: str = FOUND_ID) -> OutgoingRequest:
        headers = {"Content-Type": self.content_type, "Idempotency-Key": idempotency_key, **self.headers}
        return OutgoingRequest(self.method, self.url, headers, body)

    def signed(self, request: OutgoingRequest, message_id: str, timestamp: int) -> OutgoingRequest:
        """With `sign:`, Standard Webhooks signature headers (webhook-id, webhook-timestamp,
        webhook-signature). The secret is base64 after an optional `whsec_` prefix; the
        signature is HMAC-SHA256 over `id.timestamp.body`, base64-encoded, as `v1,<signature>`.
        """
        if not self.sign:
            return request
        key = base64.b64decode(self.sign.removeprefix("whsec_"))
        signed = f"{message_id}.{timestamp}.{request.body}".encode()
        signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        headers = {**request.headers, "webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{signature}"}
        return replace(request, headers=headers)


