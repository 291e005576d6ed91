"""A secret planted in every variable routes.yaml reads never appears in any output: log lines
(also of a refused reload, a traceback), CLI output, stored answers, error bodies, metrics."""

from __future__ import annotations

import base64
import json
import logging
import sys
import time

import httpx
import pytest

from gateway.cli import main as cli
from gateway.masking import remember_secrets
from gateway.service.logs import PersonalDataFilter
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Received, Sink

SIGNING = "whsec_" + base64.b64encode(b"PLANTED-signing-key-0123456789").decode()
PLANTED = {
    "GO_WEBHOOK_TOKEN": "PLANTED-go-token-4f1c",
    "MIRROR_TOKEN": "PLANTED-mirror-token-9a2b",
    "MIRROR_API_KEY": "PLANTED-api-key-77de",
    "MIRROR_SIGNING_SECRET": SIGNING,
    "MIRROR_ATTEMPTS": "PLANTED-attempts-31ab",
}
ROUTES = """
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}"}}}}
destinations:
  espelho:
    type: http
    url: "${{MIRROR_URL}}"
    headers: {{Authorization: "Bearer ${{MIRROR_TOKEN}}", X-Api-Key: "${{MIRROR_API_KEY}}"}}
    sign: "${{MIRROR_SIGNING_SECRET}}"
    retry: {{attempts: {attempts}, first: 100ms, max: 100ms}}
  quebrado:
    type: http
    url: "${{BROKEN_URL}}"
routes:
  - name: tudo
    when: {{event_id: ORDER_CREATED}}
    send:
      - {{to: espelho, body: '{{"id": "{{{{ data.id }}}}"}}'}}
      - {{to: quebrado, body: '{{}}'}}
"""


def echo_everything(request: Received, count: int) -> tuple[int, dict[str, str], bytes, float]:
    """A receiver refusing the request and quoting back its path and every header, as a
    careless vendor's error page does."""
    return 500, {}, json.dumps({"path": request.path, "headers": request.headers}).encode(), 0


def planted_values(sink: Sink) -> dict[str, str]:
    return {
        **PLANTED,
        "MIRROR_URL": sink.url("/hooks/PLANTED-url-path-5e5e"),
        "BROKEN_URL": "http://bot:PLANTED-password-0c0c@127.0.0.1:9/x",
    }


def assert_nothing_planted(exposed: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        for part in {value, value.split("@")[0], "PLANTED-"}:
            at = exposed.find(part)
            assert at < 0, f"{name}: {part!r} leaked in ...{exposed[max(0, at - 300):at + 100]}..."


def test_planted_secrets_appear_in_no_output(project: Project) -> None:
    sink = Sink(echo_everything)
    values = planted_values(sink)
    project.routes(ROUTES.format(attempts=2))
    outputs: list[str] = []
    for verb in (["check"], ["dry-run", "examples/events/order_created.json"]):
        result = project.gateway(*verb, env=values)
        outputs += [result.stdout, result.stderr]
        assert "quebrado" in result.stdout + result.stderr  # the unusable address is named, not quoted
    gateway = GatewayProcess(project.root, values).start()
    try:
        token = values["GO_WEBHOOK_TOKEN"]
        event = (EVENTS / "order_created.json").read_text()
        accepted = gateway.post(f"/hooks/go?token={token}", event)
        assert accepted.status_code == 202, accepted.text
        wrong = gateway.post(f"/hooks/go?token={token}x", event)
        assert wrong.status_code == 401
        outputs.append(wrong.text)
        shown = {}
        for _ in range(100):  # bounded: until both deliveries are dead
            shown = json.loads(gateway.cli("events", "show", accepted.json()["id"], "--json").stdout)
            if all(d["status"] == "dead" for d in shown["deliveries"]):
                break
            time.sleep(0.1)
        assert [d["status"] for d in shown["deliveries"]] == ["dead", "dead"], shown
        responses = [a["response"] or "" for d in shown["deliveries"] for a in d["attempts_log"]]
        assert any('"authorization": "Bearer ***"' in r for r in responses), responses  # the answer was kept, masked
        outputs += [json.dumps(shown), gateway.cli("events").stdout, httpx.get(gateway.url("/metrics")).text]
        project.routes(ROUTES.format(attempts='"${{MIRROR_ATTEMPTS}}"'))  # a refused reload quotes the value it could not read
        for _ in range(50):
            if "reload refused" in gateway.log():
                break
            time.sleep(0.1)
        assert "reload refused" in gateway.log()
        outputs.append(gateway.log())
    finally:
        gateway.kill()
        sink.close()
    assert_nothing_planted("\n".join(outputs), values)


def test_a_traceback_and_the_clis_last_resort_message_are_scrubbed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Text nobody checked (an exception's message) loses every secret the process loaded."""
    secret = "PLANTED-remembered-secret-abcd"
    remember_secrets([secret])
    try:
        raise RuntimeError(f"connection to https://x.example/{secret} failed for ana@example.com")
    except RuntimeError:
        record = logging.LogRecord("lib", logging.ERROR, __file__, 1, "failed with %s", (secret,), None)
        record.exc_info = sys.exc_info()
    PersonalDataFilter().filter(record)
    assert secret not in record.getMessage() and secret not in (record.exc_text or "") and "ana@example.com" not in (record.exc_text or "")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"unexpected: {secret}")

    monkeypatch.setattr(cli.verify, "check", broken)
    with pytest.raises(SystemExit) as exited:
        cli.run(["check"])
    err = capsys.readouterr().err
    assert exited.value.code == cli.EXIT_INTERNAL and "internal error: RuntimeError: unexpected: ***" in err and secret not in err
