"""RD Station CRM (v1): contacts and deals; the token travels in the query string.

`action: update` lists the records whose name (deals) or e-mail (contacts) matches `find`
(`GET /api/v1/{object}?name=…`), then changes the one found with `PUT /api/v1/{object}/{id}`.
"""

from __future__ import annotations

import json
from typing import Literal
from urllib.parse import quote, urlencode

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
    the_one_record,
)

# RD Station CRM v1 list filters: deals by name, contacts by e-mail.
SEARCH_PARAMETER = {"deals": "name", "contacts": "email"}


class Spec(DestinationSpec, tag="rdstation", kw_only=True):
    token: str
    object: Literal["contacts", "deals"] = "contacts"
    action: Literal["create", "update"] = "create"
    base_url: str = "https://crm.rdstation.com/api/v1"

    def problems(self) -> list[tuple[str, str]]:
        return []

    def build_request(self, body: str, idempotency_key: str, record_id: str = FOUND_ID) -> OutgoingRequest:
        if self.action == "create":
            return OutgoingRequest("POST", _url(self, self.object), json_headers(idempotency_key), body)
        update = checked_update(body)
        return OutgoingRequest("PUT", _url(self, f"{self.object}/{record_id}"), json_headers(idempotency_key), json.dumps(update.changes, ensure_ascii=False))

    def check_body(self, body: str) -> str | None:
        """A deal's inline contacts (how RD ties a new deal to its customer) each need a name."""
        contacts = json_body(body).get("contacts") if self.object == "deals" and self.action == "create" else None
        if contacts is not None and not (isinstance(contacts, list) and all(isinstance(c, dict) and c.get("name") for c in contacts)):
            return 'a deal\'s "contacts" is a list of contacts, each with "name" (and "emails": [{"email": "..."}])'
        return check_update(self.action, body)

    def find_request(self, body: str) -> OutgoingRequest | None:
        if self.action != "update":
            return None
        update = checked_update(body)
        return OutgoingRequest("GET", _url(self, self.object, **{SEARCH_PARAMETER[self.object]: update.find}), {"Accept": "application/json"})

    def found_record(self, body: str, answer: str) -> str | Outcome:
        """The id of the one record whose name (or e-mail) holds `find`; several are refused."""
        update = checked_update(body)
        listed = json_body(answer).get(self.object)
        records = [r for r in listed if isinstance(r, dict) and (r.get("id") or r.get("_id"))] if isinstance(listed, list) else []
        if self.object == "deals":
            records = [r for r in records if contains_words(str(r.get("name", "")), update.find)]
        else:
            records = [r for r in records if any(str(e.get("email", "")).casefold() == update.find.casefold() for e in r.get("emails") or [] if isinstance(e, dict))]
        return the_one_record("RD Station", self.object, update.find, [str(r.get("id") or r.get("_id")) for r in records])

    def classify(self, status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
        if status in _MEANINGS:
            return Outcome("dead", _MEANINGS[status])
        return classify_response(status, headers, body, now)


def _url(spec: Spec, path: str, **query: str) -> str:
    return f"{spec.base_url.rstrip('/')}/{path}?{urlencode({**query, 'token': spec.token}, quote_via=quote)}"


_MEANINGS = {
    401: "RD Station: the token is invalid or revoked; check RDSTATION_CRM_TOKEN",
    406: "RD Station: the plan's contact limit is exceeded; nothing more can be created",
}


