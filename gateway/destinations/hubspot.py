"""HubSpot CRM v3 with a private-app token: contacts, deals and notes."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.destinations.base import DELIVERED, DestinationSpec, Outcome, OutgoingRequest, classify_response, json_body, json_headers, parse_retry_after
from gateway.units import Rate

# HubSpot's daily limit resets at midnight in the account's time zone; ours are in Brazil.
DAILY_RESET_ZONE = ZoneInfo("America/Sao_Paulo")


class Spec(DestinationSpec, tag="hubspot", kw_only=True):
    token: str
    object: Literal["contacts", "deals", "notes"] = "contacts"
    base_url: str = "https://api.hubapi.com"
    rate: Rate | None = Rate(100, 10.0, "100/10s")  # the Free/Starter burst limit

    def problems(self) -> list[tuple[str, str]]:
        return []


def build_request(spec: Spec, body: str, idempotency_key: str) -> OutgoingRequest:
    url = f"{spec.base_url.rstrip('/')}/crm/v3/objects/{spec.object}"
    return OutgoingRequest("POST", url, json_headers(idempotency_key, Authorization=f"Bearer {spec.token}"), body)


def classify(status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
    """409 'already exists' is done; a DAILY 429 waits for the daily reset, not a few seconds."""
    answer = json_body(body)
    message = str(answer.get("message", "")).strip()
    if status == 409:
        return Outcome(DELIVERED.kind, f"HubSpot: already exists ({message[:120]})")
    if status == 429:
        if answer.get("policyName") == "DAILY":
            return Outcome("retry", "HubSpot: daily API limit reached; waiting for the daily reset", _seconds_to_midnight(now))
        wait = parse_retry_after(headers.get("retry-after"), now)
        return Outcome("retry", f"HubSpot: rate limited ({answer.get('policyName', 'TEN_SECONDLY_ROLLING')})", wait if wait is not None else 10.0)
    outcome = classify_response(status, headers, body, now)
    if outcome.kind == "delivered" or not message:
        return outcome
    return Outcome(outcome.kind, f"{outcome.reason}: HubSpot says {message[:200]}", outcome.retry_after)


def _seconds_to_midnight(now: float) -> float:
    local = datetime.fromtimestamp(now, DAILY_RESET_ZONE)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0, 0), DAILY_RESET_ZONE)
    return midnight.timestamp() - now + 60  # a minute after, not at the stroke of midnight
