"""Topologies: which parts run where, chosen in one place; ingest in the caller's process (an
app built in code) gives the same answers and the same stored rows as `gateway serve`."""

from __future__ import annotations

import json
import sqlite3

from litestar.testing import TestClient

import pytest

from gateway.config import load_config
from gateway.service.app import create_app
from gateway.service.topology import DeliveryElsewhere, IngestHere, Runtime, Topology, choose_topology
from gateway.store import open_store
from gateway.store.memory import MemoryStore
from tests.conftest import EVENTS, Project

TOKEN = "token-de-teste-123"


def test_an_app_built_in_code_ingests_in_its_own_process(project: Project, caplog: pytest.LogCaptureFixture) -> None:
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
    runtime = Runtime(config=load_config(config_file), store=open_store(f"sqlite:///{database}"), topology=Topology.IN_PROCESS_NO_DELIVER)
    body = (EVENTS / "order_created.json").read_bytes()
    with TestClient(create_app(runtime)) as client:
        first = client.post(f"/hooks/go?token={TOKEN}", content=body)
        again = client.post(f"/hooks/go?token={TOKEN}", content=body)
        metrics = client.get("/metrics").text
    assert isinstance(runtime.ingest, IngestHere) and isinstance(runtime.delivery, DeliveryElsewhere)
    assert first.status_code == 202 and first.json()["deliveries"] == 2
    assert again.status_code == 200 and again.json() == {**first.json(), "deliveries": 0, "duplicate": True}  # nothing new to send
    with sqlite3.connect(database) as db:
        rows = dict(db.execute("SELECT route, status FROM deliveries").fetchall())
        (stored_body,) = db.execute("SELECT body FROM events").fetchone()
    assert rows == {"ok": "pending", "broken": "failed"}
    assert json.loads(stored_body) == json.loads(body)
    assert 'gateway_deliveries_total{destination="nowhere",outcome="failed",tenant=""} 1.0' in metrics
    failed = [r.getMessage() for r in caplog.records if "failed to render" in r.getMessage()]
    assert len(failed) == 1 and "of route broken to nowhere failed to render" in failed[0] and "nada" in failed[0]  # logged once, by id and reason


@pytest.mark.parametrize(
    ("database_url", "deliver", "expected"),
    [
        ("sqlite:///data/gateway.db", True, Topology.CHILDREN),
        ("sqlite:///data/gateway.db", False, Topology.CHILD_NO_DELIVER),
        ("sqlite:///:memory:", True, Topology.IN_PROCESS),
        ("sqlite:///:memory:", False, Topology.IN_PROCESS_NO_DELIVER),
        ("postgresql://root@127.0.0.1:5432/test", True, Topology.SHARED_DATABASE),
        ("postgresql://root@127.0.0.1:5432/test", False, Topology.SHARED_DATABASE_NO_DELIVER),
        (None, True, Topology.IN_PROCESS),  # the memory store: only this process holds it
    ],
)
def test_children_only_when_they_can_open_the_same_routes_and_database(project: Project, database_url: str | None, deliver: bool, expected: Topology) -> None:
    config = load_config(project.routes("version: 1\nsources: {go: {token: t0ken-de-teste}}\nroutes: []\n"))
    store = open_store(database_url) if database_url else MemoryStore()
    assert choose_topology(config, store, deliver) is expected
    assert expected.ingest_in_child == expected.name.startswith("CHILD")
    assert expected.delivers == (expected in (Topology.IN_PROCESS, Topology.CHILDREN, Topology.SHARED_DATABASE))
    assert expected.delivery_in_child == (expected in (Topology.CHILDREN, Topology.SHARED_DATABASE))


def test_ingest_keeps_gos_code_for_the_search(project: Project) -> None:
    """data.code is stored beside the payload at ingest (as text, whether GO sent a string or a
    number), in the indexed column the console's search by code reads."""
    config_file = project.routes(f"version: 1\nsources: {{go: {{token: {TOKEN}, dedupe: false}}}}\nroutes: []\n")
    database = project.root / "data" / "gateway.db"
    runtime = Runtime(config=load_config(config_file), store=open_store(f"sqlite:///{database}"), topology=Topology.IN_PROCESS_NO_DELIVER)
    event = json.loads((EVENTS / "order_created.json").read_text())
    with TestClient(create_app(runtime)) as client:
        for code in ("0000593098", 42, None):
            assert client.post(f"/hooks/go?token={TOKEN}", json={**event, "data": {**event["data"], "code": code}}).status_code == 202
    with sqlite3.connect(database) as db:
        codes = [row[0] for row in db.execute("SELECT code FROM events ORDER BY rowid")]
        plan = " ".join(str(row) for row in db.execute("EXPLAIN QUERY PLAN SELECT id FROM events WHERE code = '42' ORDER BY received_at DESC"))
    assert codes == ["0000593098", "42", None]
    assert "events_code" in plan  # an index search, not a scan of every payload
