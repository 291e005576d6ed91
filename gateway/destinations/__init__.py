"""Destination types, one module per vendor, behind one small interface (see `base`)."""

from __future__ import annotations

from types import ModuleType

from gateway.destinations import http, hubspot, pipedrive, rdstation, slack
from gateway.destinations.base import DRY_RUN_KEY, FOUND_ID, DestinationSpec, Outcome, OutgoingRequest, classify_response

TYPES: dict[str, ModuleType] = {
    "slack": slack,
    "http": http,
    "hubspot": hubspot,
    "pipedrive": pipedrive,
    "rdstation": rdstation,
}

AnyDestinationSpec = slack.Spec | http.Spec | hubspot.Spec | pipedrive.Spec | rdstation.Spec


def _module(spec: DestinationSpec) -> ModuleType:
    return TYPES[spec.__struct_config__.tag]  # type: ignore[index]


def build_request(spec: DestinationSpec, body: str, idempotency_key: str = DRY_RUN_KEY, record_id: str | None = None) -> OutgoingRequest:
    """The HTTP request that delivers `body` to the destination described by `spec`
    (for an update, to the record its search found: `record_id`)."""
    if record_id is None:
        return _module(spec).build_request(spec, body, idempotency_key)
    return _module(spec).build_request(spec, body, idempotency_key, record_id)


def check_body(spec: DestinationSpec, body: str) -> str | None:
    """Why the vendor would refuse this rendered body (its documented limits), or None."""
    vendor_check = getattr(_module(spec), "check_body", None)
    return vendor_check(spec, body) if vendor_check else None


def find_request(spec: DestinationSpec, body: str) -> OutgoingRequest | None:
    """The search an update must make before it knows which record to change, or None."""
    finder = getattr(_module(spec), "find_request", None)
    return finder(spec, body) if finder else None


def found_record(spec: DestinationSpec, body: str, answer: str) -> str | Outcome:
    """The record id in a search's (2xx) answer, or the outcome when there is not exactly one."""
    return _module(spec).found_record(spec, body, answer)


def classify(spec: DestinationSpec, status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
    """What an answer means for this destination (vendors may read their error bodies)."""
    vendor = getattr(_module(spec), "classify", classify_response)
    return vendor(status, headers, body, now)


__all__ = ["DRY_RUN_KEY", "FOUND_ID", "TYPES", "AnyDestinationSpec", "DestinationSpec", "Outcome", "OutgoingRequest", "build_request", "check_body", "classify", "find_request", "found_record"]
