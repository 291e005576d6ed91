"""Pipedrive API v2 with an API token: persons and deals, created or updated.

`action: update` finds the record with Pipedrive's search (`GET /api/v2/{object}/search`), then
changes it with `PATCH /api/v2/{object}/{id}`: how a deal becomes won or lost when GO says the
order was paid or cancelled.

A new deal's body may carry its customer: `"person": {"name": ..., "emails": [{"value": ...}]}`.
Pipedrive has no upsert, so each step searches before it creates: the deal by its exact title
(there already: done), the person by e-mail (the oldest one if several share it), the person
created only when none is found, and the deal created with its `person_id`. What a step created
is remembered in the gateway's store at once, and a retry reuses it instead of searching:
Pipedrive's search lags behind its creates, and a search right after a create finds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import replace
from typing import ClassVar, Literal
from urllib.parse import urlencode

from gateway.destinations.base import (
    FOUND_ID,
    NOTHING_MADE,
    Answer,
    Created,
    DestinationSpec,
    Exchange,
    Outcome,
    OutgoingRequest,
    check_update,
    checked_update,
    classify_response,
    contains_words,
    json_body,
    json_headers,
    parse_retry_after,
    step_failed,
    the_one_record,
)

PERSON_STEP, DEAL_STEP = "person", "deal"  # what a delivery's steps create, remembered by the store
#: where the person's id goes in a new deal until the person is found or created (dry-run shows this)
PERSON_ID = "{person id found or created}"
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

    remembers_steps: ClassVar[bool] = True  # the person a deal's first attempt created

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
        if self._person(body) is not None:  # the deal itself, once its person is known (see `exchange`)
            return self._create("deals", self._deal_for(body, PERSON_ID), idempotency_key)
        if self.action == "create":
            return OutgoingRequest("POST", f"{_base(self)}/{self.object}", headers, body)
        update = checked_update(body)
        return OutgoingRequest("PATCH", f"{_base(self)}/{self.object}/{record_id}", headers, json.dumps(update.changes, ensure_ascii=False))

    def check_body(self, body: str) -> str | None:
        person = self._person(body)
        if person is not None and not _email(person):
            return 'a deal\'s "person" is found by e-mail: give it "emails": [{"value": "...", "primary": true}]'
        if person is not None and not json_body(body).get("title"):
            return 'a Pipedrive deal needs "title"'
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

    def exchange(self, body: str, idempotency_key: str, now: float, made: Mapping[str, str] = NOTHING_MADE) -> Exchange:
        """A new deal with its person: find or create the person, then the deal, never twice.
        What an earlier attempt created (`made`) is reused, not searched for: Pipedrive's search
        lags behind its creates, so a person created a moment ago is not found yet."""
        person = self._person(body)
        if person is None:
            return (yield from super().exchange(body, idempotency_key, now, made))
        if DEAL_STEP in made:
            return Outcome("delivered", f"Pipedrive: the deal is there already (id {made[DEAL_STEP]}, created by an earlier attempt)")
        deal = self._deal_for(body, None)
        answer = yield self._search("deals", "title", str(deal.get("title", "")))
        existing = self._found(answer, now, "searching for the deal", lambda item: item.get("title") == deal.get("title"))
        if isinstance(existing, Outcome) or existing:
            return existing if isinstance(existing, Outcome) else Outcome("delivered", f"Pipedrive: the deal is there already (id {existing[0]})")
        person_id = made.get(PERSON_STEP)
        if person_id is None:
            found = yield from self._find_or_create_person(person, idempotency_key, now)
            if isinstance(found, Outcome):
                return found
            person_id = found
        answer = yield self._create("deals", self._deal_for(body, int(person_id) if person_id.isdigit() else person_id), idempotency_key)
        outcome = self.classify(answer.status, answer.headers, answer.text, now)
        if outcome.kind != "delivered":
            return outcome
        deal_id = self._created_id(answer, now, "creating the deal")
        if isinstance(deal_id, str):
            yield Created(DEAL_STEP, deal_id)
        return Outcome("delivered", f"Pipedrive: deal created for person {person_id}")

    def _find_or_create_person(self, person: dict, idempotency_key: str, now: float) -> Generator[OutgoingRequest | Created, Answer | None, str | Outcome]:
        """The person's id: the oldest with this e-mail, or one created now (and remembered)."""
        answer = yield self._search("persons", "email", _email(person))
        found = self._found(answer, now, "searching for the person", lambda item: True)
        if isinstance(found, Outcome) or found:
            return found if isinstance(found, Outcome) else found[0]
        answer = yield self._create("persons", person, idempotency_key)
        created = self._created_id(answer, now, "creating the person")
        if isinstance(created, str):
            yield Created(PERSON_STEP, created)  # stored before the deal is asked for
        return created

    def planned_requests(self, body: str, idempotency_key: str) -> list[OutgoingRequest]:
        person = self._person(body)
        if person is None:
            return super().planned_requests(body, idempotency_key)
        return [
            self._search("deals", "title", str(self._deal_for(body, None).get("title", ""))),
            self._search("persons", "email", _email(person)),
            replace(self._create("persons", person, idempotency_key), note="only when the search finds no person with this e-mail"),
            self.build_request(body, idempotency_key),
        ]

    def _deal_for(self, body: str, person_id: int | str | None) -> dict:
        """The deal of a body that carries its person: without it, with the person's id."""
        deal = {k: v for k, v in json_body(body).items() if k != "person"}
        return deal if person_id is None else {**deal, "person_id": person_id}

    def _person(self, body: str) -> dict | None:
        person = json_body(body).get("person") if self.object == "deals" and self.action == "create" else None
        return person if isinstance(person, dict) else None

    def _search(self, kind: str, field: str, term: str) -> OutgoingRequest:
        query = urlencode({"term": term, "fields": field, "exact_match": "true", "limit": "10"})
        return OutgoingRequest("GET", f"{_base(self)}/{kind}/search?{query}", {"x-api-token": self.token, "Accept": "application/json"})

    def _create(self, kind: str, record: dict, idempotency_key: str) -> OutgoingRequest:
        headers = json_headers(idempotency_key, **{"x-api-token": self.token})
        return OutgoingRequest("POST", f"{_base(self)}/{kind}", headers, json.dumps(record, ensure_ascii=False))

    def _found(self, answer: Answer, now: float, step: str, wanted: Callable[[dict], bool]) -> list[str] | Outcome:
        """The ids a search found (oldest first), or what its failure means."""
        if not 200 <= answer.status < 300:
            outcome = self.classify(answer.status, answer.headers, answer.text, now)
            return step_failed(step, outcome)
        data = json_body(answer.text).get("data")
        items = data.get("items", []) if isinstance(data, dict) else []
        records = [i["item"] for i in items if isinstance(i, dict) and isinstance(i.get("item"), dict) and "id" in i["item"]]
        return sorted((str(r["id"]) for r in records if wanted(r)), key=lambda i: (len(i), i))

    def _created_id(self, answer: Answer, now: float, step: str) -> str | Outcome:
        outcome = self.classify(answer.status, answer.headers, answer.text, now)
        if outcome.kind != "delivered":
            return step_failed(step, outcome)
        data = json_body(answer.text).get("data")
        record_id = data.get("id") if isinstance(data, dict) else None
        return str(record_id) if record_id is not None else Outcome("dead", f"{step}: Pipedrive answered {answer.status} without an id")

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


def _email(person: dict) -> str:
    emails = person.get("emails")
    first = emails[0] if isinstance(emails, list) and emails and isinstance(emails[0], dict) else {}
    return str(first.get("value") or "")


def _base(spec: Spec) -> str:
    return (spec.base_url or f"https://{spec.company}.pipedrive.com/api/v2").rstrip("/")


