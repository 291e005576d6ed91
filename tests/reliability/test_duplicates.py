"""Duplicate inbound events: GO sending the same event several times at once yields one set
of deliveries (dedupe inside and across the store's group-commit batches)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess

pytestmark = pytest.mark.slow
TOKEN = "token-de-teste-123"


def test_each_event_sent_three_times_concurrently_is_stored_once(project: Project) -> None:
    project.routes(
        """
        version: 1
        sources: {go: {token: "${GO_WEBHOOK_TOKEN}", dedupe: 10m}}
        destinations: {erp: {type: http, url: "https://erp.example.com/in"}}
        routes:
          - name: tudo
            shadow: true
            when: {event_id: ORDER_CREATED}
            send: {to: erp, body: "{{ event | tojson }}"}
        """
    )
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    template = json.loads((EVENTS / "order_created.json").read_text())
    bodies = [json.dumps({**template, "data": {**template["data"], "id": str(n)}}) for n in range(1000)]
    try:
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(24) as pool:
            def post(body: str) -> tuple[int, str]:
                response = client.post(gateway.url(f"/hooks/go?token={TOKEN}"), content=body)
                return response.status_code, response.json()["id"]

            answers = list(pool.map(post, [body for body in bodies for _ in range(3)]))
    finally:
        gateway.kill()
    assert Counter(status for status, _ in answers) == {202: 1000, 200: 2000}
    assert len({stored_id for _, stored_id in answers}) == 1000  # duplicates name their original
    with sqlite3.connect(project.root / "data" / "gateway.db") as db:
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1000
        assert db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 1000
