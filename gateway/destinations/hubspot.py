"""HubSpot CRM v3 with a private-app token: contacts, deals and notes."""

from __future__ import annotations

from typing import Literal

from gateway.destinations.base import DestinationSpec, OutgoingRequest, json_headers
from gateway.units import Rate


class Spec(DestinationSpec, tag="hubspot", kw_only=True):
    token: str
    object: Literal["contacts", "deals", "notes"] = "contacts"
    base_url: str = "https://api.hubapi.com"
    rate: Rate | None = Rate(100, 10.0, "100/10s")  # the Free/Starter burst limit

    def problems(self) -> list[tuple[str, str]]:
        return []


def build_request(spec: Spec, body: str, idempotency_key: str) -> OutgoingRequest:
    url = f"{spec.base_url.rstrip('/')}/crm/v3/objects/{spec.object}"
    return OutgoingRequest("POST", url, json_headers(idempotency_key, Authorization=f"Bearer {spec.token}"), body)
