"""Running the gateway: log lines, as text or JSON, never carry personal data."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from gateway.service.logs import PersonalDataFilter, configure_logging
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess

TOKEN = "token-de-teste-123"
ROUTES = """
version: 1
settings: {egress_allow: [127.0.0.0/8]}
sources: {go: {token: "${GO_WEBHOOK_TOKEN}"}}
destinations:
  nowhere: {type: http, url: "http://127.0.0.1:9/in"}
routes:
  - name: tudo
    when: {event_id: ORDER_CREATED}
    send: {to: nowhere, body: '{"email": "{{ data.user.email }}"}'}
"""


def test_json_logs_are_one_object_per_line(project: Project) -> None:
    project.routes(ROUTES)
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN, "GATEWAY_LOG_FORMAT": "json", "GATEWAY_LOG_LEVEL": "debug"}).start()
    try:
        assert gateway.post(f"/hooks/go?token={TOKEN}", (EVENTS / "order_created.json").read_text()).status_code == 202
    finally:
        gateway.terminate()
    records = [json.loads(line) for line in gateway.log().splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"] == "gateway.ingest" and "ORDER_CREATED from go: 1 delivery" in r["message"] for r in records)
    assert "teste@teste.com" not in gateway.log() and TOKEN not in gateway.log()


def _processes_under(root: int) -> dict[str, int]:
    """name (the module a child runs, or 'serve') -> niceness, for serve and its children."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        pid, parent, nice = int(entry.name), int(fields[1]), int(fields[16])
        if pid == root:
            found["serve"] = nice
        elif parent == root:
            found[next((part.rsplit(".", 1)[1] for part in command if part.startswith("gateway.service.")), "?")] = nice
    return found


def test_deliveries_get_the_cpu_first(project: Project) -> None:
    """The HTTP process and the ingest child run below the delivery child's priority, so a flood
    of events cannot starve the deliveries (gateway/service/priority.py)."""
    project.routes(ROUTES)
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        seen = _processes_under(gateway.process.pid)
    finally:
        gateway.terminate()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert seen == {"serve": min(19, base + 5), "ingest_child": min(19, base + 5), "delivery_child": base}


def test_personal_data_is_masked_in_any_log_record() -> None:
    record = logging.LogRecord("lib", logging.WARNING, __file__, 1, "could not reach %s for CPF %s", ("ana@example.com", "123.456.789-09"), None)
    assert PersonalDataFilter().filter(record) is True
    assert record.getMessage() == "could not reach *** for CPF ***"


def test_personal_data_is_masked_in_tracebacks() -> None:
    try:
        raise ValueError("brl needs an amount, got 'ana@example.com'")
    except ValueError:
        record = logging.LogRecord("lib", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    PersonalDataFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "ValueError: brl needs an amount, got '***'" in text and "ana@example.com" not in text


@pytest.mark.parametrize(
    ("asked", "gateway_level", "root_level", "warned"),
    [
        (None, logging.INFO, logging.INFO, False),
        ("debug", logging.DEBUG, logging.INFO, False),  # the gateway's lines, not every library's
        ("WARNING", logging.WARNING, logging.WARNING, False),
        ("verbose", logging.INFO, logging.INFO, True),
    ],
)
def test_gateway_log_level(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], asked: str | None, gateway_level: int, root_level: int, warned: bool) -> None:
    if asked is None:
        monkeypatch.delenv("GATEWAY_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("GATEWAY_LOG_LEVEL", asked)
    try:
        configure_logging()
        assert logging.getLogger("gateway").level == gateway_level
        assert logging.getLogger().level == root_level
        assert ("GATEWAY_LOG_LEVEL=verbose is not one of debug, info, warning, error; using info" in capsys.readouterr().err) is warned
    finally:
        monkeypatch.delenv("GATEWAY_LOG_LEVEL", raising=False)
        configure_logging()
