"""A full disk: ingest answers 503 (never a 2xx for an event it did not store) and recovers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Sink

pytestmark = pytest.mark.slow
TOKEN = "token-de-teste-123"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs for the database (needs root, which the test machines and CI have)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"this machine cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def delivered_events(sink: Sink) -> set[str]:
    """Stored event ids are not in the body; the receiver sees GO's data.id, mapped back below."""
    return {request.json()["data"]["id"] for request in list(sink.received)}


def test_full_disk_gives_503_and_recovers(project: Project, small_disk: Path) -> None:
    sink = Sink()
    project.routes(
        f"""
        version: 1
        settings: {{egress_allow: [127.0.0.0/8]}}
        sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}"}}}}
        destinations: {{sink: {{type: http, url: "{sink.url('/in')}", timeout: 2s}}}}
        routes:
          - name: tudo
            when: {{event_id: ORDER_CREATED}}
            send: {{to: sink, body: "{{{{ event | tojson }}}}"}}
        """
    )
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN})
    gateway.database = f"sqlite:///{small_disk / 'gateway.db'}"
    template = json.loads((EVENTS / "order_created.json").read_text())
    acknowledged: list[str] = []
    statuses: list[int] = []
    refusals: list[dict] = []
    try:
        gateway.start()
        for number in range(400):  # ~8 KiB each: the 1 MiB disk fills long before the end
            body = {**template, "data": {**template["data"], "id": f"p{number}", "notes": "x" * 8000}}
            response = gateway.post(f"/hooks/go?token={TOKEN}", json.dumps(body))
            statuses.append(response.status_code)
            if response.status_code == 202:
                acknowledged.append(f"p{number}")
            else:
                refusals.append(response.json())
                if len(refusals) >= 5:
                    break
        assert 503 in statuses, statuses
        assert set(statuses) <= {202, 503}, set(statuses)  # a 202 after a 503 is fine: that event fitted in the space left
        assert all(r["error"] == "store_unavailable" and "send it again" in r["detail"] for r in refusals), refusals

        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        recovered = gateway.post(f"/hooks/go?token={TOKEN}", json.dumps({**template, "data": {**template["data"], "id": "after"}}))
        assert recovered.status_code == 202, recovered.text
        acknowledged.append("after")
        # an attempt whose record hit the full disk is sent again when its claim expires (17 s)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not set(acknowledged) <= delivered_events(sink):
            time.sleep(0.2)
        assert set(acknowledged) <= delivered_events(sink), "an acknowledged event never reached the receiver"
    finally:
        gateway.kill()
        sink.close()
    with sqlite3.connect(small_disk / "gateway.db") as db:
        stored = {json.loads(row[0])["data"]["id"] for row in db.execute("SELECT body FROM events")}
    assert set(acknowledged) <= stored, "an event answered 202 is missing from the database"
