"""RD Station CRM (v1): contacts and deals; the token travels in the query string."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from gateway.destinations.base import DestinationSpec, Outcome, OutgoingRequest, classify_response, json_headers


class Spec(DestinationSpec, tag="rdstation", kw_only=True):
    token: str
    object: Literal["contacts", "deals"] = "contacts"
    base_url: str = "https://crm.rdstation.com/api/v1"

    def problems(self) -> list[tuple[str, str]]:
        return []


def build_request(spec: Spec, body: str, idempotency_key: str) -> OutgoingRequest:
    url = f"{spec.base_url.rstrip('/')}/{spec.object}?token={quote(spec.token, safe='')}"
    return OutgoingRequest("POST", url, json_headers(idempotency_key), body)


_MEANINGS = {
    401: "RD Station: the token is invalid or revoked; check RDSTATION_CRM_TOKEN",
    406: "RD Station: the plan's contact limit is exceeded; nothing more can be created",
}


def classify(status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
    if status in _MEANINGS:
        return Outcome("dead", _MEANINGS[status])
    return classify_response(status, headers, body, now)
