"""routes.yaml's alerts: section through `gateway check`: every mistake at its line with the fix;
what each alert would send through `gateway dry-run --alerts`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Project

MAIN = """
version: 1
settings: {egress_allow: [127.0.0.0/8]}
sources: {go: {token: token-de-teste-123}}
destinations:
  avisos: {type: slack, url: "https://hooks.slack.com/services/T0/B0/${SLACK_SEGREDO}"}
  espelho: {type: http, url: "http://127.0.0.1:9/avisos"}
  crm: {type: hubspot, token: "${HUBSPOT_TOKEN}"}
routes:
  - name: pedido
    when: {event_id: ORDER_CREATED}
    send: {to: espelho, body: '{"id": "{{ data.id }}"}'}
"""
ENV = {"SLACK_SEGREDO": "segredo-do-slack-123", "HUBSPOT_TOKEN": "pat-na1-segredo"}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("alerts: {to: avisso}", "routes.yaml:12:14: alerts.to: 'avisso' is not"),
        ("alerts: {to: avisso}", "'avisso' is not a destination of routes.yaml (did you mean 'avisos'?)"),
        ("alerts: {to: crm}", "routes.yaml:12:14: alerts.to: 'crm' is a hubspot destination; notices go to 'slack' or 'http' destinations"),
        ("alerts: {to: [avisos, crm]}", "routes.yaml:12:23: alerts.to: 'crm' is a hubspot destination"),
        ("alerts: {to: avisos, failing_for: 10}", "routes.yaml:12:35: alerts.failing_for: write the unit: '10s' for seconds, '10m' for minutes"),
        ("alerts: {to: avisos, pending_older_than: true}", "alerts.pending_older_than: say how long, like 10m (or false to turn it off)"),
        ("alerts: {to: avisos, dead_ovr: 5}", "routes.yaml:12:22: unknown key 'dead_ovr' in alerts (did you mean 'dead_over'?)"),
        ("alerts: {to: avisos, console_url: gateway.loja.com.br}", "alerts.console_url must be the console's address, like https://"),
        ("alerts: {}", "alerts is missing the required key 'to'"),
    ],
)
def test_each_mistake_in_alerts_is_refused_at_its_line(project: Project, section: str, message: str) -> None:
    project.routes(MAIN + section + "\n")
    result = project.gateway("check", env=ENV)
    assert result.returncode == 1, result.stdout
    assert message in result.stdout, result.stdout


def test_alerts_in_a_shops_file_are_refused(project: Project) -> None:
    """Alerts are about the whole gateway: a shop's file that has them is told where they go."""
    project.routes(MAIN)
    project.write("routes.d/loja-a.yaml", "version: 1\nsources: {go-loja-a: {token: token-da-loja-a-123}}\nalerts: {to: avisos}\n")
    result = project.gateway("check", env=ENV)
    assert result.returncode == 1
    assert "routes.d/loja-a.yaml:3:1: alerts: are about the whole gateway, every shop's destinations too: set them in routes.yaml" in result.stdout


def test_dry_run_alerts_shows_each_notice_opened_and_resolved_secrets_masked(project: Project) -> None:
    """Every kind the section turns on, opened and resolved, as each of its destinations would
    get it: Slack's message with the console's link, the HTTP endpoint's JSON; no secret shown."""
    project.routes(MAIN + "alerts: {to: [avisos, espelho], console_url: 'https://gw.loja.com.br', gone: false}\n")
    result = project.gateway("dry-run", "--alerts", env=ENV)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "segredo-do-slack-123" not in out and "hooks.slack.com/services/T0/B0/***" in out
    assert "failing (opened): 🔴 O destino *crm* está falhando" in out and "failing (resolved): ✅ O destino *crm* voltou a funcionar (ficou 25 min com problema)." in out
    assert "gone (" not in out  # turned off
    assert all(f"{kind} (opened)" in out and f"{kind} (resolved)" in out for kind in ("circuit_open", "dead_over", "pending_old", "edit_refused"))
    slack = json.loads(next(line.strip() for line in out.splitlines() if line.strip().startswith('{"text": "⚠️')))
    assert slack["text"].endswith("\n<https://gw.loja.com.br/console/deliveries?status=dead|Abrir no console>")
    http = [json.loads(line.strip()) for line in out.splitlines() if line.strip().startswith('{"alert": "dead_over"')]
    assert [(h["state"], h["resolved_at"] is None) for h in http] == [("opened", True), ("resolved", False)]


def test_dry_run_without_an_event_or_alerts_says_what_to_give(project: Project) -> None:
    project.routes(MAIN)
    result = project.gateway("dry-run", env=ENV)
    assert result.returncode == 2 and "give the event to try" in result.stderr
    assert "routes.yaml has no alerts: section" in project.gateway("dry-run", "--alerts", env=ENV).stdout
