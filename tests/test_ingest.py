"""Ingest in the caller's process (an app built in code, no writer process): the same answers
and the same stored rows as `gateway serve`."""

from __future__ import annotations

import json
import sqlite3

from litestar.testing import TestClient

from gateway.app import Runtime, create_app
from gateway.config import load_config
from gateway.ingest import InProcessWriter
from gateway.store import open_store
from tests.conftest import EVENTS, Project

TOKEN = "token-de-teste-123"


def test_an_app_built_in_code_ingests_in_its_own_process(project: Project) -> None:
    config_file = project.routes(
        f"""
        version: 1
        settings: {{egress_allow: [127.0.0.0/8]}}
        sources: {{go: {{token: {TOKEN}, dedupe: 10m}}}}
        destinations:
          nowhere: {{type: http, url: "http://127.0.0.1:9/in"}}
        routes:
          - name: ok
            when: {{event_id: ORDER_CREATED}}
            send: {{to: nowhere, body: '{{"id": "{{{{ data.id }}}}"}}'}}
          - name: broken
            when: {{event_id: ORDER_CREATED}}
            send: {{to: nowhere, body: '{{"x": "{{{{ data.nada }}}}"}}'}}
        """
    )
    database = project.root / "data" / "gateway.db"
    runtime = Runtime(config=load_config(config_file), store=open_store(f"sqlite:///{database}"), deliver=False)
    body = (EVENTS / "order_created.json").read_bytes()
    with TestClient(create_app(runtime)) as client:
        first = client.post(f"/hooks/go?token={TOKEN}", content=body)
        again = client.post(f"/hooks/go?token={TOKEN}", content=body)
        metrics = client.get("/metrics").text
    assert isinstance(runtime.writer, InProcessWriter)
    assert first.status_code == 202 and first.json()["deliveries"] == 2
    assert again.status_code == 200 and again.json() == {**first.json(), "deliveries": 0, "duplicate": True}  # nothing new to send
    with sqlite3.connect(database) as db:
        rows = dict(db.execute("SELECT route, status FROM deliveries").fetchall())
        (stored_body,) = db.execute("SELECT body FROM events").fetchone()
    assert rows == {"ok": "pending", "broken": "failed"}
    assert json.loads(stored_body) == json.loads(body)
    assert 'gateway_deliveries_total{destination="nowhere",outcome="failed"} 1.0' in metrics
