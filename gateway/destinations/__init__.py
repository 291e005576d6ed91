"""Destination types, one module per vendor, behind one small interface (see `base`)."""

from __future__ import annotations

from types import ModuleType

from gateway.destinations import hubspot, http, pipedrive, rdstation, slack
from gateway.destinations.base import DRY_RUN_KEY, DestinationSpec, OutgoingRequest

TYPES: dict[str, ModuleType] = {
    "slack": slack,
    "http": http,
    "hubspot": hubspot,
    "pipedrive": pipedrive,
    "rdstation": rdstation,
}

AnyDestinationSpec = slack.Spec | http.Spec | hubspot.Spec | pipedrive.Spec | rdstation.Spec


def build_request(spec: DestinationSpec, body: str, idempotency_key: str = DRY_RUN_KEY) -> OutgoingRequest:
    """The HTTP request that delivers `body` to the destination described by `spec`."""
    module = TYPES[spec.__struct_config__.tag]  # type: ignore[index]
    return module.build_request(spec, body, idempotency_key)


__all__ = ["TYPES", "AnyDestinationSpec", "DestinationSpec", "OutgoingRequest", "build_request", "DRY_RUN_KEY"]
