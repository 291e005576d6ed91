"""Pipedrive API v2 with an API token: persons and deals, created or updated.

`action: update` finds the record with Pipedrive's search (`GET /api/v2/{object}/search`), then
changes it with `PATCH /api/v2/{object}/{id}`: how a deal becomes won or lost when GO says the
order was paid or cancelled.
"""

from __future__ import annotations

import json
from typing import Literal
from urllib.parse import urlencode

from gateway.destinations.base import (
    FOUND_ID,
    DestinationSpec,
    Outcome,
    OutgoingRequest,
    check_update,
    checked_update,
    classify_response,
    contains_words,
    json_body,
    json_headers,
    parse_retry_after,
    the_one_record,
)

# The field Pipedrive searches when `find_in` is not given.
DEFAULT_SEARCH_FIELD = {"deals": "title", "persons": "email"}
SEARCHABLE = {"deals": ("title", "custom_fields", "notes"), "persons": ("email", "name", "phone", "custom_fields", "notes")}


class Spec(DestinationSpec, tag="pipedrive", kw_only=True):
    token: str
    company: str  # the subdomain in https://<company>.pipedrive.com
    object: Literal["persons", "deals"] = "persons"
    action: Literal["create", "update"] = "create"
    find_in: str | None = None  # the field an update searches (title, email, custom_fields…)
    base_url: str | None = None

    def problems(self) -> list[tuple[str, str]]:
        if "." in self.company or "/" in self.company:
            return [("company", f"write only the company part of the address, like 'minhaempresa', not '{self.company}'")]
        if self.find_in is not None and self.find_in not in SEARCHABLE[self.object]:
            return [("find_in", f"Pipedrive searches {self.object} by {', '.join(SEARCHABLE[self.object])}; not by '{self.find_in}'")]
        return []

    @property
    def search_field(self) -> str:
        return self.find_in or DEFAULT_SEARCH_FIELD[self.object]

    def build_request(self, body: str, idempotency_key: str, record_id: str = FOUND_ID) -> OutgoingRequest:
        headers = json_headers(idempotency_key, **{"x-api-token": self.token})
        if self.action == "create":
            return OutgoingRequest("POST", f"{_base(self)}/{self.object}", headers, body)
        update = checked_update(body)
        return OutgoingRequest("PATCH", f"{_base(self)}/{self.object}/{record_id}", headers, json.dumps(update.changes, ensure_ascii=False))

    def check_body(self, body: str) -> str | None:
        return check_update(self.action, body)

    def find_request(self, body: str) -> OutgoingRequest | None:
        """The search an update starts with: an exact match on `find_in` when Pipedrive allows it."""
        if self.action != "update":
            return None
        update = checked_update(body)
        query = {"term": update.find, "fields": self.search_field, "limit": "10"}
        if self.search_field != "title":  # titles are searched by words: "Pedido 123" inside "Pedido 123 - Ana"
            query["exact_match"] = "true"
        return OutgoingRequest("GET", f"{_base(self)}/{self.object}/search?{urlencode(query)}", {"x-api-token": self.token, "Accept": "application/json"})

    def found_record(self, body: str, answer: str) -> str | Outcome:
        """The id of the one record the search found; several matches are refused, not guessed."""
        update = checked_update(body)
        data = json_body(answer).get("data")
        items = data.get("items", []) if isinstance(data, dict) else []
        records = [i["item"] for i in items if isinstance(i, dict) and isinstance(i.get("item"), dict) and "id" in i["item"]]
        if self.search_field == "title":
            records = [r for r in records if contains_words(str(r.get("title", "")), update.find)]
        return the_one_record("Pipedrive", self.object, update.find, [str(r["id"]) for r in records])

    def classify(self, status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
        """429 waits for `x-ratelimit-reset` (seconds); errors keep Pipedrive's own text."""
        if status == 429:
            wait = parse_retry_after(headers.get("x-ratelimit-reset") or headers.get("retry-after"), now)
            return Outcome("retry", "Pipedrive: rate limited", wait if wait is not None else 2.0)
        outcome = classify_response(status, headers, body, now)
        error = json_body(body).get("error")
        if outcome.kind == "delivered" or not error:
            return outcome
        return Outcome(outcome.kind, f"{outcome.reason}: Pipedrive says {str(error)[:200]}", outcome.retry_after)


def _base(spec: Spec) -> str:
    return (spec.base_url or f"https://{spec.company}.pipedrive.com/api/v2").rstrip("/")


