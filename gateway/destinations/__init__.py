"""Destination types, one module per vendor, behind one small interface (see `base`)."""

from __future__ import annotations

from types import ModuleType

from gateway.destinations import hubspot, http, pipedrive, rdstation, slack
from gateway.destinations.base import DRY_RUN_KEY, DestinationSpec, Outcome, OutgoingRequest, classify_response

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


def build_request(spec: DestinationSpec, body: str, idempotency_key: str = DRY_RUN_KEY) -> OutgoingRequest:
    """The HTTP request that delivers `body` to the destination described by `spec`."""
    return _module(spec).build_request(spec, body, idempotency_key)


def check_body(spec: DestinationSpec, body: str) -> str | None:
    """Why the vendor would refuse this rendered body (its documented limits), or None."""
    vendor_check = getattr(_module(spec), "check_body", None)
    return vendor_check(body) if vendor_check else None


def classify(spec: DestinationSpec, status: int, headers: dict[str, str], body: str, now: float) -> Outcome:
    """What an answer means for this destination (vendors may read their error bodies)."""
    vendor = getattr(_module(spec), "classify", classify_response)
    return vendor(status, headers, body, now)


__all__ = ["TYPES", "AnyDestinationSpec", "DestinationSpec", "Outcome", "OutgoingRequest", "build_request", "check_body", "classify", "DRY_RUN_KEY"]
