"""HubSpot CRM v3 with a private-app token: contacts, deals and notes.

`upsert_by: <property>` sends through `POST /crm/v3/objects/{object}/batch/upsert`, which
creates the record or updates the one whose unique property has that value. That is how one
GO order stays one deal: created on ORDER_CREATED, marked lost on ORDER_CANCEL and won on
FINANCIAL_PAYMENT_DISCHARGE, and a redelivery never makes a second one.

A deal body may carry its customer: `{"properties": {...}, "contact": {"properties": {"email":
...}}}`. Then one delivery makes three requests, each safe to make again: the contact upserted
by e-mail, the deal upserted by `upsert_by`, and the two associated with HubSpot's default
deal-to-contact association (v4; linking twice changes nothing). A retry starts over from the
contact. Search is never used: it lags new records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.destinations.base import (
    DELIVERED,
    FOUND_ID,
    Answer,
    DestinationSpec,
    NOTHING_MADE,
    Exchange,
    Outcome,
    OutgoingRequest,
    classify_response,
    json_body,
    json_headers,
    parse_retry_after,
    step_failed,
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
        """HubSpot wants every property value as a string, and an upsert needs its key property;
        a deal's contact needs an e-mail (it is upserted by it)."""
        record = json_body(body)
        problem = _properties_problem(record.get("properties"), self.upsert_by, "")
        if problem:
            return problem
        if self.object == "deals" and self.upsert_by and "contact" in record:
            contact = record["contact"]
            problem = _properties_problem(contact.get("properties") if isinstance(contact, dict) else None, "email", "contact.")
            if problem:
                return problem
        allowed = {"properties", "contact"} if self.object == "deals" and self.upsert_by else {"properties"}
        extra = sorted(set(record) - allowed)
        if self.upsert_by and extra:
            takes = '"properties" (and "contact", its customer)' if "contact" in allowed else '"properties"'
            return f"HubSpot's upsert takes only {takes}; remove {', '.join(extra)} or 'upsert_by'"
        return None

    def exchange(self, body: str, idempotency_key: str, now: float, made: Mapping[str, str] = NOTHING_MADE) -> Exchange:
        """A deal with its contact: the contact, the deal, then the link; otherwise one request.
        Upserts by e-mail and by the deal's key: a retry finds what an earlier attempt made."""
        contact = self._contact(body)
        if contact is None:
            return (yield from super().exchange(body, idempotency_key, now, made))
        answer = yield self._upsert("contacts", "email", contact, idempotency_key)
        contact_id = self._created_id(answer, now, "upserting the contact")
        if isinstance(contact_id, Outcome):
            return contact_id
        answer = yield self.build_request(body, idempotency_key)
        deal_id = self._created_id(answer, now, "upserting the deal")
        if isinstance(deal_id, Outcome):
            return deal_id
        answer = yield self._association(deal_id, contact_id, idempotency_key)
        outcome = self.classify(answer.status, answer.headers, answer.text, now)
        return outcome if outcome.kind != "delivered" else Outcome("delivered", f"HubSpot: deal {deal_id} linked to contact {contact_id}")

    def planned_requests(self, body: str, idempotency_key: str) -> list[OutgoingRequest]:
        contact = self._contact(body)
        if contact is None:
            return super().planned_requests(body, idempotency_key)
        return [
            self._upsert("contacts", "email", contact, idempotency_key),
            self.build_request(body, idempotency_key),
            self._association("{deal id from the upsert}", "{contact id from the upsert}", idempotency_key),
        ]

    def _contact(self, body: str) -> dict | None:
        contact = json_body(body).get("contact") if self.object == "deals" and self.upsert_by else None
        return contact.get("properties") if isinstance(contact, dict) else None

    def _upsert(self, kind: str, by: str, properties: dict, idempotency_key: str) -> OutgoingRequest:
        upsert = {"inputs": [{"idProperty": by, "id": properties.get(by), "properties": properties}]}
        url = f"{self.base_url.rstrip('/')}/crm/v3/objects/{kind}/batch/upsert"
        return OutgoingRequest("POST", url, json_headers(idempotency_key, Authorization=f"Bearer {self.token}"), json.dumps(upsert, ensure_ascii=False))

    def _association(self, deal_id: str, contact_id: str, idempotency_key: str) -> OutgoingRequest:
        url = f"{self.base_url.rstrip('/')}/crm/v4/objects/deals/{deal_id}/associations/default/contacts/{contact_id}"
        return OutgoingRequest("PUT", url, json_headers(idempotency_key, Authorization=f"Bearer {self.token}"), "")

    def _created_id(self, answer: Answer, now: float, step: str) -> str | Outcome:
        """The record id in a batch upsert's answer, or what the failed step means."""
        outcome = self.classify(answer.status, answer.headers, answer.text, now)
        if outcome.kind != "delivered":
            return step_failed(step, outcome)
        results = json_body(answer.text).get("results")
        record_id = results[0].get("id") if isinstance(results, list) and results and isinstance(results[0], dict) else None
        return str(record_id) if record_id else Outcome("dead", f"{step}: HubSpot answered {answer.status} without a record id")

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


def _properties_problem(properties: object, required: str | None, prefix: str) -> str | None:
    if not isinstance(properties, dict):
        return f'a HubSpot {prefix.rstrip(".") or "body"} is {{"properties": {{...}}}}'
    wrong = [f"{prefix}{name}" for name, value in properties.items() if not isinstance(value, str)]
    if wrong:
        return f"HubSpot property values must be text: put quotes around the value of {', '.join(wrong)}"
    if required and not properties.get(required):
        why = f"upsert_by is '{required}', so" if not prefix else "a deal's contact is upserted by e-mail, so"
        return f"{why} the template must give {prefix}properties.{required} a value"
    return None


def _seconds_to_midnight(now: float) -> float:
    local = datetime.fromtimestamp(now, DAILY_RESET_ZONE)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0, 0), DAILY_RESET_ZONE)
    return midnight.timestamp() - now + 60  # a minute after, not at the stroke of midnight


def _batch_failure(answer: dict) -> Outcome:
    """A batch answer (207) whose one input failed: HubSpot rejected the record itself."""
    errors = answer.get("errors") or [{}]
    first = errors[0] if isinstance(errors[0], dict) else {}
    return Outcome("dead", f"HubSpot refused the record: {str(first.get('message', 'no message'))[:200]}")
