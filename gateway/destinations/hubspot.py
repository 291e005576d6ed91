"""HubSpot CRM v3 with a private-app token: contacts, deals and notes.

`upsert_by: <property>` sends through `POST /crm/v3/objects/{object}/batch/upsert`, which
creates the record or updates the one whose unique property has that value. That is how one
GO order stays one deal: created on ORDER_CREATED, marked lost on ORDER_CANCEL and won on
FINANCIAL_PAYMENT_DISCHARGE, and a redelivery never makes a second one.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.destinations.base import (
    FOUND_ID,
    DELIVERED,
    DestinationSpec,
    Outcome,
    OutgoingRequest,
    classify_response,
    json_body,
    json_headers,
    parse_retry_after,
)
from gateway.units import Rate

# HubSpot's daily limit resets at midnight in the account's time zone; ours are in Brazil.
DAILY_RESET_ZONE = ZoneInfo("America/Sao_Paulo")


class Spec(DestinationSpec, tag="hubspot", kw_only=True):
    token: str
    object: Literal["contacts", "deals", "notes"] = "contacts"
    base_url: str = "https://api.hubapi.com"
    upsert_by: str | None = None  # a unique property (email, go_order_code): create or update
    rate: Rate | None = Rate(100, 10.0, "100/10s")  # the Free/Starter burst limit

    def problems(self) -> list[tuple[str, str]]:
        if self.upsert_by and self.object == "notes":
            return [("upsert_by", "notes have no unique property to upsert by; remove 'upsert_by'")]
        return []

    def build_request(self, body: str, idempotency_key: str, record_id: str = FOUND_ID) -> OutgoingRequest:
        url = f"{self.base_url.rstrip('/')}/crm/v3/objects/{self.object}"
        headers = json_headers(idempotency_key, Authorization=f"Bearer {self.token}")
        if self.upsert_by is None:
            return OutgoingRequest("POST", url, headers, body)
        properties = json_body(body).get("properties", {})
        upsert = {"inputs": [{"idProperty": self.upsert_by, "id": properties.get(self.upsert_by), "properties": properties}]}
        return OutgoingRequest("POST", f"{url}/batch/upsert", headers, json.dumps(upsert, ensure_ascii=False))

    def check_body(self, body: str) -> str | None:
        """HubSpot wants every property value as a string, and an upsert needs its key property."""
        record = json_body(body)
        properties = record.get("properties")
        if not isinstance(properties, dict):
            return 'a HubSpot body is {"properties": {...}}'
        wrong = [name for name, value in properties.items() if not isinstance(value, str)]
        if wrong:
            return f"HubSpot property values must be text: put quotes around the value of {', '.join(wrong)}"
        if self.upsert_by and not properties.get(self.upsert_by):
            return f"upsert_by is '{self.upsert_by}', so the template must give properties.{self.upsert_by} a value"
        extra = sorted(set(record) - {"properties"})
        if self.upsert_by and extra:
            return f"HubSpot's upsert takes only \"properties\"; remove {', '.join(extra)} or 'upsert_by'"
        return None

    def classify(self, status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
        """409 'already exists' is done; a DAILY 429 waits for the daily reset, not a few seconds."""
        answer = json_body(body)
        message = str(answer.get("message", "")).strip()
        if status == 207 or (status == 200 and answer.get("numErrors")):
            return _batch_failure(answer)
        if status == 409:
            return Outcome(DELIVERED.kind, f"HubSpot: already exists ({message[:120]})")
        if status == 429:
            if answer.get("policyName") == "DAILY":
                return Outcome("retry", "HubSpot: daily API limit reached; waiting for the daily reset", _seconds_to_midnight(now), known_reset=True)
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


def _batch_failure(answer: dict) -> Outcome:
    """A batch answer (207) whose one input failed: HubSpot rejected the record itself."""
    errors = answer.get("errors") or [{}]
    first = errors[0] if isinstance(errors[0], dict) else {}
    return Outcome("dead", f"HubSpot refused the record: {str(first.get('message', 'no message'))[:200]}")
