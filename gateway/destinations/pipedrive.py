"""Pipedrive API v2 with an API token: persons and deals."""

from __future__ import annotations

from typing import Literal

from gateway.destinations.base import DestinationSpec, Outcome, OutgoingRequest, classify_response, json_body, json_headers, parse_retry_after


class Spec(DestinationSpec, tag="pipedrive", kw_only=True):
    token: str
    company: str  # the subdomain in https://<company>.pipedrive.com
    object: Literal["persons", "deals"] = "persons"
    base_url: str | None = None

    def problems(self) -> list[tuple[str, str]]:
        if "." in self.company or "/" in self.company:
            return [("company", f"write only the company part of the address, like 'minhaempresa', not '{self.company}'")]
        return []


def build_request(spec: Spec, body: str, idempotency_key: str) -> OutgoingRequest:
    base = spec.base_url or f"https://{spec.company}.pipedrive.com/api/v2"
    return OutgoingRequest("POST", f"{base.rstrip('/')}/{spec.object}", json_headers(idempotency_key, **{"x-api-token": spec.token}), body)


def classify(status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
    """429 waits for `x-ratelimit-reset` (seconds); errors keep Pipedrive's own text."""
    if status == 429:
        wait = parse_retry_after(headers.get("x-ratelimit-reset") or headers.get("retry-after"), now)
        return Outcome("retry", "Pipedrive: rate limited", wait if wait is not None else 2.0)
    outcome = classify_response(status, headers, body, now)
    error = json_body(body).get("error")
    if outcome.kind == "delivered" or not error:
        return outcome
    return Outcome(outcome.kind, f"{outcome.reason}: Pipedrive says {str(error)[:200]}", outcome.retry_after)
