"""The destination interface, and what every destination shares.

A destination type is a module with a `Spec`: its routes.yaml fields (a msgspec struct tagged by
`type:`) and the methods of `DestinationSpec`, the declared interface. `build_request` must be
given; every other method has a default that fits a plain HTTP receiver, and a vendor overrides
what it knows better: its settings' rules (`problems`), its documented body limits
(`check_body`), the search an update starts with (`find_request`, `found_record`), what its
answers mean (`classify`) and its signature (`signed`). The delivery engine, dry-run and
routing only call these methods and only see `OutgoingRequest`: nothing outside
`destinations/` knows a vendor. (An ABC is not possible here: msgspec structs have their own
metaclass; tests/destinations/test_base.py checks every type gives `build_request`.)
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, ClassVar

import msgspec

from gateway.units import Duration, Rate

# Placeholder that dry-run shows where the real key is assigned when an event is stored.
DRY_RUN_KEY = "<assigned when the event is stored>"
#: where the record id goes in an update's URL until the search has found it (dry-run shows this)
FOUND_ID = "{id found by the search}"


# A delivery's requests, one after the other: yields requests, is sent answers, returns the outcome.
Exchange = Generator["OutgoingRequest | Created", "Answer | None", "Outcome"]
NOTHING_MADE: Mapping[str, str] = MappingProxyType({})


class RetrySpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """`retry: {attempts: 12, first: 10s, max: 2h}`: exponential backoff with jitter."""

    attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    first: Duration = Duration(5, "5s")
    max: Duration = Duration(3600, "1h")


class DestinationSpec(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Fields every destination accepts, whatever its type."""

    rate: Rate | None = None
    timeout: Duration = Duration(10, "10s")
    retry: RetrySpec = RetrySpec()
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=512)] = 4
    ordered_by: str | None = None
    description: str | None = None

    #: whether its exchange yields `Created` steps, so a retry needs what earlier attempts made
    remembers_steps: ClassVar[bool] = False

    #: whether rendered bodies must be JSON (vendors always; `http` unless told otherwise)
    @property
    def json_body(self) -> bool:
        return True

    #: whether requests carry the attempt's W3C traceparent when traces are on (a vendor's API
    #: has no use for it; `http` sends it unless its `traceparent: false`)
    @property
    def sends_traceparent(self) -> bool:
        return False

    # -- the interface: `build_request` is required, the rest have defaults

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) pairs for combinations of settings msgspec cannot express."""
        return []

    def build_request(self, body: str, idempotency_key: str, record_id: str = FOUND_ID) -> OutgoingRequest:
        """The HTTP request that delivers `body` (for an update, to the record `record_id` that
        the search found; dry-run passes FOUND_ID before any search ran)."""
        raise NotImplementedError(f"destination type '{self.__struct_config__.tag}' must define build_request")

    def check_body(self, body: str) -> str | None:
        """Why the vendor would refuse this rendered body (its documented limits), or None."""
        return None

    def find_request(self, body: str) -> OutgoingRequest | None:
        """The search an update must make before it knows which record to change, or None."""
        return None

    def found_record(self, body: str, answer: str) -> str | Outcome:
        """The record id in the search's (2xx) answer, or the outcome when there is not exactly one."""
        return Outcome("dead", f"destination type '{self.__struct_config__.tag}' makes no search")

    def classify(self, status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
        """What an answer means: delivered, retry (and when) or dead, with the reason."""
        return classify_response(status, headers, body, now)

    def signed(self, request: OutgoingRequest, message_id: str, timestamp: int) -> OutgoingRequest:
        """The request with the destination's signature headers, if it signs."""
        return request

    def exchange(self, body: str, idempotency_key: str, now: float, made: Mapping[str, str] = NOTHING_MADE) -> Exchange:
        """The requests one delivery makes, in order, as a generator: it yields each request, is
        sent each answer, and returns the delivery's outcome. Every step must be safe to make
        again: a retry starts from the first. A step that creates a record yields `Created`
        (stored at once; nothing is sent back), and a retry gets in `made` what earlier attempts
        created, by step, to reuse instead of creating it twice. The default: the search an
        update needs (if any), then the request itself."""
        record_id = FOUND_ID
        search = self.find_request(body)
        if search is not None:
            found = yield search
            if not 200 <= found.status < 300:
                return step_failed("searching for the record", self.classify(found.status, found.headers, found.text, now))
            record = self.found_record(body, found.text)
            if isinstance(record, Outcome):
                return record
            record_id = record
        answer = yield self.signed(self.build_request(body, idempotency_key, record_id), idempotency_key, int(now))
        return self.classify(answer.status, answer.headers, answer.text, now)

    def planned_requests(self, body: str, idempotency_key: str) -> list[OutgoingRequest]:
        """Every request `exchange` makes, ids that answers give shown as placeholders: what
        dry-run prints."""
        search = self.find_request(body)
        return [request for request in (search, self.build_request(body, idempotency_key, FOUND_ID)) if request is not None]


@dataclass(frozen=True)
class Created:
    """Yielded by an exchange: this step created `record_id` at the receiver (remember it)."""

    step: str
    record_id: str


@dataclass(frozen=True)
class Answer:
    """What a receiver answered one request (at most 64 KiB of its body)."""

    status: int
    headers: dict[str, str]
    text: str


def step_failed(step: str, outcome: Outcome) -> Outcome:
    """An outcome of one step of several, saying which step it was."""
    return Outcome(outcome.kind, f"{step}: {outcome.reason}", outcome.retry_after, outcome.known_reset)


@dataclass(frozen=True)
class OutgoingRequest:
    """The exact HTTP request a delivery makes."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    note: str = ""  # for dry-run: when the request is made only on a condition


def json_headers(idempotency_key: str, **extra: str) -> dict[str, str]:
    """Headers every JSON delivery carries; the key stays the same across attempts."""
    return {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": idempotency_key, **extra}


@dataclass(frozen=True)
class Outcome:
    """What an attempt's answer means: delivered, retry (not before `retry_after` s) or dead."""

    kind: str  # delivered | retry | dead
    reason: str = ""
    retry_after: float | None = None
    # A wait the receiver asked for is capped (one absurd header must not park a delivery for
    # days); a wait the adapter worked out from the vendor's documented reset is not.
    known_reset: bool = False
    failure: str | None = None  # no answer came: why, by name (delivery/client.py FAILURE_NAMES)


DELIVERED = Outcome("delivered")
TRANSIENT_STATUSES = frozenset({408, 425, 429})


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


def classify_response(status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
    """The HTTP meaning of an answer, for any destination; vendors refine it."""
    if 200 <= status < 300:
        return DELIVERED
    if 300 <= status < 400:
        where = headers.get("location", "?")
        return Outcome("dead", f"HTTP {status}: redirects are not followed (to {where}); fix the URL")
    if status in TRANSIENT_STATUSES or status >= 500:
        return Outcome("retry", f"HTTP {status}", parse_retry_after(headers.get("retry-after"), now))
    if status == 410:
        return Outcome("dead", "HTTP 410: the receiver says this address is gone")
    return Outcome("dead", f"HTTP {status}: the receiver refused the request")


def json_body(text: str) -> dict:
    """A body's JSON object, or {} when it is not one (vendors' error bodies)."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- updates found by a search
#
# GO knows its order code, not the CRM's record id. A destination with `action: update` first
# searches for the record (one GET), then changes it. Its rendered body says both:
#     {"find": "<search term>", "set": {<the fields to change>}}



@dataclass(frozen=True)
class Update:
    find: str
    changes: dict


def read_update(body: str) -> Update | str:
    """The search term and the changes of an update body, or why the body is not one."""
    value = json_body(body)
    find, changes = value.get("find"), value.get("set")
    if not isinstance(find, str) or not find.strip():
        return "an update needs \"find\": the text that identifies the record, like \"Pedido {{ data.code }}\""
    if not isinstance(changes, dict) or not changes:
        return "an update needs \"set\": an object with the fields to change, like {\"status\": \"won\"}"
    return Update(find.strip(), changes)


def checked_update(body: str) -> Update:
    """The update in a body that `check_update` accepted when it was rendered; ValueError when
    the body was rendered for something else (the destination changed since)."""
    update = read_update(body)
    if isinstance(update, str):
        raise ValueError(f"{update}; the body was rendered before the destination changed: `gateway replay --rerender` renders it again")
    return update


def check_update(action: str, body: str) -> str | None:
    """`check_body` for a destination with `action: update`: why the body is not an update."""
    if action != "update":
        return None
    update = read_update(body)
    return update if isinstance(update, str) else None


def the_one_record(vendor: str, kind: str, term: str, ids: list[str]) -> str | Outcome:
    """The record an update changes: the only id its search found. None found yet is a retry
    (the route that creates it may still be on its way; when the attempts run out the
    delivery is dead and says what was searched); several are refused, never guessed."""
    found = sorted(set(ids))
    if not found:
        return Outcome("retry", f"no {vendor} {kind[:-1]} matching '{term}' yet (the route that creates it may still be on its way)")
    if len(found) > 1:
        return Outcome("dead", f"{vendor}: {len(found)} {kind} match '{term}' (ids {', '.join(found[:5])}); make 'find' identify one record")
    return found[0]


def contains_words(text: str, term: str) -> bool:
    """Whether `term` appears in `text` as whole words: 'Pedido 12' is in 'Pedido 12 - Ana',
    not in 'Pedido 123'. Case is ignored."""
    return re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text, re.IGNORECASE) is not None
