"""Any HTTP endpoint: the escape hatch for every vendor we do not know by name."""

from __future__ import annotations

from typing import Literal

from gateway.destinations.base import DestinationSpec, OutgoingRequest


class Spec(DestinationSpec, tag="http", kw_only=True):
    url: str
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = {}
    content_type: str = "application/json"
    sign: str | None = None  # Standard Webhooks secret (whsec_…); signing is done at send time

    @property
    def json_body(self) -> bool:
        return "json" in self.content_type.lower()

    def problems(self) -> list[tuple[str, str]]:
        if not self.url.lower().startswith(("http://", "https://")):
            return [("url", f"'{self.url}' is not an http:// or https:// address")]
        return []


def build_request(spec: Spec, body: str, idempotency_key: str) -> OutgoingRequest:
    headers = {"Content-Type": spec.content_type, "Idempotency-Key": idempotency_key, **spec.headers}
    return OutgoingRequest(spec.method, spec.url, headers, body)
