"""A source's quota at ingest (issue #24): past it, 429 with Retry-After and a JSON body, counted
in /metrics, nothing stored; on PostgreSQL the quota holds for every replica together."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import psycopg
from litestar.testing import TestClient

from gateway.config import load_config
from gateway.service.app import create_app
from gateway.service.topology import Runtime, Topology
from gateway.store import open_store
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess

TOKEN = "token-da-loja-123"


def routes(quota: str) -> str:
    return f"""
    version: 1
    sources: {{loja: {{token: {TOKEN}, dedupe: false, quota: {quota}}}, outra: {{token: {TOKEN}, dedupe: false}}}}
    routes: []
    """


def order(number: int) -> dict:
    event = json.loads((EVENTS / "order_created.json").read_text())
    return {**event, "data": {**event["data"], "id": str(number)}}


def test_past_its_quota_a_source_gets_429_and_nothing_is_stored(project: Project) -> None:
    config_file = project.routes(routes("{rate: 1/min, burst: 3}"))
    database = project.root / "data" / "gateway.db"
    runtime = Runtime(config=load_config(config_file), store=open_store(f"sqlite:///{database}"), topology=Topology.IN_PROCESS_NO_DELIVER)
    with TestClient(create_app(runtime)) as client:
        answers = [client.post(f"/hooks/loja?token={TOKEN}", json=order(n)) for n in range(5)]
        other = client.post(f"/hooks/outra?token={TOKEN}", json=order(99))  # another source is not slowed
        wrong = client.post("/hooks/loja?token=errado", json=order(100))  # refused before the quota: takes none of it
        metrics = client.get("/metrics").text
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    refused = answers[3]
    assert refused.json()["error"] == "over_quota" and "over its quota (1/min, 3 at once)" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert other.status_code == 202 and wrong.status_code == 401
    assert 'gateway_events_received_total{outcome="over_quota",source="loja",tenant=""} 2.0' in metrics
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT source, count(*) FROM events GROUP BY source ORDER BY source").fetchall() == [("loja", 3), ("outra", 1)]


def test_a_quota_holds_for_every_replica_together(tmp_path: Path, postgres_url: str) -> None:
    Project(tmp_path).routes(routes("{rate: 1/min, burst: 3}"))
    replicas = []
    try:
        for number in range(2):
            replica = GatewayProcess(tmp_path, workers=4)
            replica.database = postgres_url
            replica.log_path = tmp_path / f"replica-{number}.log"
            replicas.append(replica.start())
        statuses = [httpx.post(replicas[n % 2].url(f"/hooks/loja?token={TOKEN}"), json=order(n), timeout=30).status_code for n in range(4)]
    finally:
        for replica in replicas:
            replica.terminate()
    assert statuses == [202, 202, 202, 429]  # three in all, not three per replica
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone() == (3,)
