"""Which incidents a snapshot of the gateway shows, and when an open one has cleared (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.alerts.conditions import Health, cleared, findings
from gateway.alerts.settings import Alerts
from gateway.errors import Location
from gateway.store.base import Incident
from gateway.units import Duration

NOW = 1_765_000_000.0
ALERTS = Alerts(
    to=("avisos",), console_url=None, check_every=30, failing_for=Duration(600, "10m"), circuit_open=True, gone=True,
    dead_over=20, pending_older_than=Duration(1800, "30m"), edit_refused=True, location=Location("routes.yaml", 1, 1),
)
DESTINATIONS = ("avisos", "crm", "loja-a/crm")


@pytest.mark.parametrize(
    ("health", "keys"),
    [
        (Health(NOW), []),
        (Health(NOW, failing_since={"crm": NOW - 601}), ["failing:crm"]),
        (Health(NOW, failing_since={"crm": NOW - 599}), []),  # not long enough yet
        (Health(NOW, failing_since={"avisos": NOW - 3600}, circuit_open={"avisos"}, stopped={"avisos"}), []),  # the alerts' own destination: never
        (Health(NOW, circuit_open={"loja-a/crm"}), ["circuit_open:loja-a/crm"]),
        (Health(NOW, stopped={"crm"}), ["gone:crm"]),
        (Health(NOW, dead=21), ["dead_over"]),
        (Health(NOW, dead=20), []),
        (Health(NOW, oldest_pending_at=NOW - 1800), ["pending_old"]),
        (Health(NOW, oldest_pending_at=NOW - 60), []),
        (Health(NOW, refused=("routes.yaml:3:1: unknown key",)), ["edit_refused"]),
        (Health(NOW, failing_since={"crm": NOW - 700}, stopped={"crm"}, dead=50), ["dead_over", "failing:crm", "gone:crm"]),
    ],
)
def test_each_condition_is_one_finding(health: Health, keys: list[str]) -> None:
    """Each kind at its threshold, by key; never about the alerts' own destinations."""
    assert sorted(findings(ALERTS, DESTINATIONS, health, {})) == keys


def test_a_kind_set_to_false_is_never_found() -> None:
    off = replace(ALERTS, failing_for=None, circuit_open=False, gone=False, dead_over=None, pending_older_than=None, edit_refused=False)
    everything = Health(NOW, failing_since={"crm": 0.5}, circuit_open={"crm"}, stopped={"crm"}, dead=999, oldest_pending_at=1.0, refused=("x",))
    assert findings(off, DESTINATIONS, everything, {}) == {}


def test_a_failing_run_must_outlast_the_last_resolution() -> None:
    """A replica whose engine still counts an old run does not reopen an incident another
    replica just resolved: the run counts from the resolution."""
    health = Health(NOW, failing_since={"crm": NOW - 3600})
    assert findings(ALERTS, DESTINATIONS, health, {"failing:crm": NOW - 60}) == {}
    assert list(findings(ALERTS, DESTINATIONS, health, {"failing:crm": NOW - 601})) == ["failing:crm"]


def test_the_details_speak_portuguese() -> None:
    found = findings(ALERTS, DESTINATIONS, Health(NOW, dead=21, failing_since={"crm": NOW - 700}), {})
    assert found["dead_over"].detail == "21 entregas falharam de vez (o limite é 20)"
    assert found["failing:crm"].detail.startswith("nenhuma entrega deu certo desde ")


def incident(kind: str, subject: str = "crm") -> Incident:
    return Incident("i1", f"{kind}:{subject}", kind, subject, "", NOW - 100)


@pytest.mark.parametrize(
    ("open_incident", "health", "expected"),
    [
        (incident("failing"), Health(NOW), False),  # no evidence on this replica: another may still see it failing
        (incident("failing"), Health(NOW, last_delivered={"crm": NOW - 200}), False),  # a success from before it opened
        (incident("failing"), Health(NOW, last_delivered={"crm": NOW - 10}), True),
        (incident("circuit_open"), Health(NOW, last_delivered={"crm": NOW - 10}), True),
        (incident("gone"), Health(NOW, stopped={"crm"}), False),
        (incident("gone"), Health(NOW), True),
        (incident("failing", "saiu-do-routes"), Health(NOW), True),  # its destination is gone from routes.yaml
        (Incident("i1", "dead_over", "dead_over", "", "", NOW - 100), Health(NOW), True),
    ],
)
def test_an_open_incident_clears_on_evidence(open_incident: Incident, health: Health, expected: bool) -> None:
    assert cleared(open_incident, health, DESTINATIONS) is expected
