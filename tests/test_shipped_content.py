"""Shipped templates and examples: Slack messages are valid Block Kit for every sample event."""

from __future__ import annotations

import json

import pytest
from slack_sdk.models.blocks import Block

from gateway.config import load_config
from gateway.routing import read_event_file, route_event
from tests.conftest import EVENTS, REPO

SAMPLES = sorted(EVENTS.glob("*.json"))


def shipped_slack_bodies() -> list[tuple[str, dict]]:
    config = load_config(REPO / "routes.yaml", environ={})
    bodies = []
    for sample in SAMPLES:
        for delivery in route_event(config, read_event_file(str(sample))).deliveries:
            if config.destinations[delivery.destination].type == "slack":
                assert delivery.error is None, delivery.error
                bodies.append((f"{sample.stem}->{delivery.route}", json.loads(delivery.body)))
    return bodies


def test_every_sample_event_reaches_slack() -> None:
    """All six GO events have a Slack message in the shipped config."""
    assert len(shipped_slack_bodies()) == 6


@pytest.mark.parametrize(("case", "message"), shipped_slack_bodies(), ids=lambda v: v if isinstance(v, str) else "")
def test_slack_message_is_valid_block_kit(case: str, message: dict) -> None:
    """Each block parses with slack_sdk, round-trips unchanged, and passes its limits."""
    assert message["text"]
    assert 0 < len(message["blocks"]) <= 50
    for raw in message["blocks"]:
        block = Block.parse(raw)
        assert block is not None, raw
        block.validate_json()
        assert block.to_dict() == raw


def test_slack_messages_speak_portuguese_and_mask_cpf() -> None:
    config = load_config(REPO / "routes.yaml", environ={})
    event = read_event_file(str(EVENTS / "order_created.json"))
    event["data"]["user"]["document"] = "12345678909"
    body = route_event(config, event).deliveries[0].body
    assert "Novo pedido" in body and "Cliente" in body
    assert "12345678909" not in body and "***.456.789-**" in body


VENDOR_ENV = {"HUBSPOT_TOKEN": "pat-x", "PIPEDRIVE_TOKEN": "pd-x", "RDSTATION_CRM_TOKEN": "rd-x"}


def crm_bodies(vendor: str) -> list[tuple[str, dict]]:
    config = load_config(REPO / "examples" / "routes" / f"{vendor}.yaml", environ=VENDOR_ENV)
    found = []
    for sample in SAMPLES:
        for delivery in route_event(config, read_event_file(str(sample))).deliveries:
            assert delivery.error is None, delivery.error
            found.append((config.destinations[delivery.destination].spec.object, json.loads(delivery.body)))
    assert found, f"no {vendor} delivery for any sample event"
    return found


def test_hubspot_properties_are_all_strings() -> None:
    for _, body in crm_bodies("hubspot"):
        assert body["properties"] and all(isinstance(v, str) for v in body["properties"].values()), body


def test_pipedrive_required_fields() -> None:
    for kind, body in crm_bodies("pipedrive"):
        required = "title" if kind == "deals" else "name"
        assert isinstance(body[required], str) and body[required], body
        if kind == "deals":
            assert body["currency"] == "BRL"


def test_rdstation_envelopes() -> None:
    for kind, body in crm_bodies("rdstation"):
        envelope = "deal" if kind == "deals" else "contact"
        assert isinstance(body[envelope]["name"], str) and body[envelope]["name"], body
