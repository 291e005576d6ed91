"""Destination types, one module per vendor, behind one declared interface: the methods of
`base.DestinationSpec`. The functions here are what routing, dry-run and tests call."""

from __future__ import annotations

from types import ModuleType

from gateway.destinations import http, hubspot, pipedrive, rdstation, slack
from gateway.destinations.base import DRY_RUN_KEY, FOUND_ID, DestinationSpec, Outcome, OutgoingRequest

TYPES: dict[str, ModuleType] = {
    "slack": slack,
    "http": http,
    "hubspot": hubspot,
    "pipedrive": pipedrive,
    "rdstation": rdstation,
}

AnyDestinationSpec = slack.Spec | http.Spec | hubspot.Spec | pipedrive.Spec | rdstation.Spec


def build_request(spec: DestinationSpec, body: str, idempotency_key: str = DRY_RUN_KEY, record_id: str | None = None) -> OutgoingRequest:
    """The HTTP request that delivers `body` to the destination described by `spec`
    (for an update, to the record its search found: `record_id`)."""
    return spec.build_request(body, idempotency_key, FOUND_ID if record_id is None else record_id)


def check_body(spec: DestinationSpec, body: str) -> str | None:
    """Why the vendor would refuse this rendered body (its documented limits), or None."""
    return spec.check_body(body)


def find_request(spec: DestinationSpec, body: str) -> OutgoingRequest | None:
    """The search an update must make before it knows which record to change, or None."""
    return spec.find_request(body)


def found_record(spec: DestinationSpec, body: str, answer: str) -> str | Outcome:
    """The record id in a search's (2xx) answer, or the outcome when there is not exactly one."""
    return spec.found_record(body, answer)


def classify(spec: DestinationSpec, status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
    """What an answer means for this destination (vendors may read their error bodies)."""
    return spec.classify(status, headers, body, now)


__all__ = ["DRY_RUN_KEY", "FOUND_ID", "TYPES", "AnyDestinationSpec", "DestinationSpec", "Outcome", "OutgoingRequest", "build_request", "check_body", "classify", "find_request", "found_record"]
