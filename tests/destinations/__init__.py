"""Tests of each destination type: the request it builds and what its vendor's answers mean.

Each vendor's file ends with tests through a real `gateway serve` against a loopback server
that answers as the vendor documents.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec

from gateway.destinations import TYPES
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess

NOW = 1_700_000_000.0
GO_TOKEN = "token-de-teste-123"


def spec(raw: dict) -> Any:
    """A destination's settings as routes.yaml would give them."""
    decode = lambda kind, value: kind.parse(value)
    return msgspec.convert(raw, TYPES[raw["type"]].Spec, dec_hook=decode)


def start_gateway(project: Project, routes: str, env: dict[str, str]) -> GatewayProcess:
    project.routes(routes)
    return GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": GO_TOKEN, **env}).start()


def post_event(gateway: GatewayProcess, sample: str, **data: Any) -> str:
    """Post a sample GO event (with `data` fields replaced); returns the stored event id."""
    event = json.loads((EVENTS / sample).read_text())
    event["data"].update(data)
    response = gateway.post(f"/hooks/go?token={GO_TOKEN}", json.dumps(event))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def deliveries_when(gateway: GatewayProcess, event_id: str, settled: Any, timeout: float = 20.0) -> list[dict]:
    """The event's deliveries (from `gateway events show --json`) once `settled(deliveries)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        shown = json.loads(gateway.cli("events", "show", event_id, "--json").stdout)["deliveries"]
        if settled(shown) or time.monotonic() > deadline:
            return shown
        time.sleep(0.1)
