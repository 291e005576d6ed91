"""Shipped templates and examples: Slack messages are valid Block Kit for every sample event; the
systemd unit passes systemd-analyze."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from slack_sdk.models.blocks import Block

from gateway.config import load_config
from gateway.destinations.base import contains_words
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


def crm_bodies(vendor: str) -> list[tuple[str, object, dict]]:
    """(event type, destination settings, rendered body) for every sample event."""
    config = load_config(REPO / "examples" / "routes" / f"{vendor}.yaml", environ=VENDOR_ENV)
    found = []
    for sample in SAMPLES:
        event = read_event_file(str(sample))
        for delivery in route_event(config, event).deliveries:
            assert delivery.error is None, delivery.error
            found.append((event["event_id"], config.destinations[delivery.destination].spec, json.loads(delivery.body)))
    assert found, f"no {vendor} delivery for any sample event"
    return found


@pytest.mark.parametrize("vendor", ["hubspot", "pipedrive", "rdstation"])
def test_each_crm_follows_an_order_from_created_to_lost_or_won(vendor: str) -> None:
    """ORDER_CREATED makes a deal that carries its customer's contact (one delivery, which
    ties them together); ORDER_CANCEL loses the deal and FINANCIAL_PAYMENT_DISCHARGE wins it."""
    by_event: dict[str, list[str]] = {}
    customer = {"hubspot": "contact", "pipedrive": "person", "rdstation": "contacts"}[vendor]
    for event_id, destination, body in crm_bodies(vendor):
        by_event.setdefault(event_id, []).append(f"{destination.object}:{getattr(destination, 'action', 'upsert')}")
        if event_id == "ORDER_CREATED":
            assert body.get(customer), f"{vendor}: the new deal does not carry its {customer}: {body}"
    assert set(by_event) == {"ORDER_CREATED", "ORDER_CANCEL", "FINANCIAL_PAYMENT_DISCHARGE"}
    assert len(by_event["ORDER_CREATED"]) == 1 and by_event["ORDER_CREATED"][0].startswith("deals")
    assert len(by_event["ORDER_CANCEL"]) == len(by_event["FINANCIAL_PAYMENT_DISCHARGE"]) == 1


def test_hubspot_properties_are_strings_and_deals_share_the_order_key() -> None:
    stages = {}
    for event_id, destination, body in crm_bodies("hubspot"):
        assert body["properties"] and all(isinstance(v, str) for v in body["properties"].values()), body
        assert body["properties"][destination.upsert_by], f"{event_id}: no value for upsert_by {destination.upsert_by}"
        if destination.object == "deals":
            assert body["properties"]["go_order_code"] == "0000593098"
            stages[event_id] = body["properties"]["dealstage"]
        if "contact" in body:
            assert body["contact"]["properties"]["email"] and all(isinstance(v, str) for v in body["contact"]["properties"].values())
    assert stages["ORDER_CANCEL"] == "closedlost" and stages["FINANCIAL_PAYMENT_DISCHARGE"] == "closedwon"


def test_pipedrive_required_fields_and_updates_find_the_created_deal() -> None:
    titles, updates = [], {}
    for event_id, destination, body in crm_bodies("pipedrive"):
        if destination.action == "update":
            updates[event_id] = body
        elif destination.object == "deals":
            assert isinstance(body["title"], str) and body["title"] and body["currency"] == "BRL"
            assert body["person"]["name"] and body["person"]["emails"][0]["value"]
            titles.append(body["title"])
        else:
            assert isinstance(body["name"], str) and body["name"], body
    assert updates["ORDER_CANCEL"]["set"]["status"] == "lost" and updates["FINANCIAL_PAYMENT_DISCHARGE"]["set"]["status"] == "won"
    assert all(contains_words(titles[0], update["find"]) for update in updates.values())


def test_rdstation_envelopes_and_updates_find_the_created_deal() -> None:
    names, updates = [], {}
    for event_id, destination, body in crm_bodies("rdstation"):
        if destination.action == "update":
            updates[event_id] = body
            continue
        envelope = "deal" if destination.object == "deals" else "contact"
        assert isinstance(body[envelope]["name"], str) and body[envelope]["name"], body
        if envelope == "deal":
            names.append(body["deal"]["name"])
            assert body["contacts"][0]["name"] and body["contacts"][0]["emails"][0]["email"]
    assert updates["ORDER_CANCEL"]["set"]["deal"]["win"] is False and updates["FINANCIAL_PAYMENT_DISCHARGE"]["set"]["deal"]["win"] is True
    assert all(contains_words(names[0], update["find"]) for update in updates.values())


UNIT = REPO / "examples" / "systemd" / "go-gateway.service"


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """examples/systemd/go-gateway.service, with its gateway path pointed at this checkout's,
    draws not one complaint from `systemd-analyze verify` (an unknown key or a missing program
    would), and its commands are the CLI's own."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (Debian: apt-get install systemd)")
    gateway = Path(sys.executable).with_name("gateway")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/go-gateway/.venv/bin/gateway", str(gateway)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    commands = [line.split("=", 1)[1].split()[1:] for line in UNIT.read_text().splitlines() if line.startswith(("ExecStart=", "ExecStartPre="))]
    assert commands == [["check"], ["serve", "--host", "0.0.0.0", "--port", "8000"]]
    for command in commands:
        assert subprocess.run([str(gateway), *command, "--help"], capture_output=True, timeout=60).returncode == 0


def test_the_units_stop_grace_outlasts_the_gateways() -> None:
    """systemd waits longer than serve's own 30 s grace before it kills anything."""
    from gateway.service.server import SHUTDOWN_GRACE_SECONDS

    stop = next(int(line.split("=")[1]) for line in UNIT.read_text().splitlines() if line.startswith("TimeoutStopSec="))
    assert stop > SHUTDOWN_GRACE_SECONDS
