"""Pipedrive API v2 with an API token: persons and deals."""

from __future__ import annotations

from typing import Literal

from gateway.destinations.base import DestinationSpec, OutgoingRequest, json_headers


class Spec(DestinationSpec, tag="pipedrive", kw_only=True):
    token: str
    company: str  # the subdomain in https://<company>.pipedrive.com
    object: Literal["persons", "deals"] = "persons"
    base_url: str | None = None

    def problems(self) -> list[tuple[str, str]]:
        if "." in self.company or "/" in self.company:
            return [("company", f"write only the company part of the address, like 'minhaempresa', not '{self.company}'")]
        return []


def build_request(spec: Spec, body: str, idempotency_key: str) -> OutgoingRequest:
    base = spec.base_url or f"https://{spec.company}.pipedrive.com/api/v2"
    return OutgoingRequest("POST", f"{base.rstrip('/')}/{spec.object}", json_headers(idempotency_key, **{"x-api-token": spec.token}), body)
