"""`gateway backup` and `gateway restore` on a real SQLite file under a real `gateway serve`: a
backup taken while events keep arriving holds every event acknowledged before it began, intact
and with its deliveries; a restore refuses a running gateway's database and keeps the database
it replaces; PostgreSQL is pointed at pg_dump."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Sink, always

TOKEN = "token-de-teste-123"


def routes(sink: Sink) -> str:
    return f"""
    version: 1
    settings: {{egress_allow: [127.0.0.0/8]}}
    sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
    destinations:
      crm: {{type: http, url: "{sink.url('/crm')}"}}
    routes:
      - name: pedido
        when: {{event_id: ORDER_CREATED}}
        send: {{to: crm, body: '{{"id": "{{{{ data.id }}}}"}}'}}
    """


class Poster(threading.Thread):
    """GO sending orders one after another until stopped (bounded: 60 s, 20,000 orders); the
    ids acknowledged, in order."""

    def __init__(self, gateway: GatewayProcess) -> None:
        super().__init__(daemon=True)
        self.gateway, self.acknowledged, self.stopping = gateway, list[str](), threading.Event()
        self.template = json.loads((EVENTS / "order_created.json").read_text())

    def run(self) -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=10) as client:
            for number in range(20_000):
                if self.stopping.is_set() or time.monotonic() > deadline:
                    return
                order = f"pedido-{number}"
                body = {**self.template, "data": {**self.template["data"], "id": order}}
                if client.post(self.gateway.url(f"/hooks/go?token={TOKEN}"), json=body).status_code == 202:
                    self.acknowledged.append(order)

    def wait_for(self, count: int) -> list[str]:
        deadline = time.monotonic() + 30
        while len(self.acknowledged) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acknowledged) >= count, len(self.acknowledged)
        return list(self.acknowledged)


def stored_orders(database: Path) -> dict[str, int]:
    """Each stored order's id, with its number of deliveries."""
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT e.body, count(d.id) FROM events e LEFT JOIN deliveries d ON d.event_id = e.id GROUP BY e.id").fetchall()
    db.close()
    return {json.loads(body)["data"]["id"]: deliveries for body, deliveries in rows}


def test_a_backup_under_load_restores_every_acknowledged_event(project: Project) -> None:
    """Orders keep arriving while `gateway backup` runs; restored (the gateway stopped), the
    database holds every order acknowledged before the backup began, each with its delivery,
    and the gateway starts on it and delivers; the database it replaced is kept aside."""
    sink = Sink(always(200))
    project.routes(routes(sink))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    poster = Poster(gateway)
    poster.start()
    try:
        before = poster.wait_for(300)
        taken = gateway.cli("backup", "copias/gateway-backup.db")
        after = len(poster.acknowledged)
        poster.wait_for(after + 100)  # still taking events after the backup
    finally:
        poster.stopping.set()
        poster.join(30)
        gateway.terminate()
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.startswith("backup copias/gateway-backup.db: ") and "events" in taken.stdout
    assert after > len(before)  # events were acknowledged while the backup ran
    backed_up = stored_orders(project.root / "copias" / "gateway-backup.db")
    assert set(before) <= set(backed_up) and all(n == 1 for n in backed_up.values())
    live = stored_orders(project.root / "data" / "gateway.db")
    assert len(live) > len(backed_up)  # the live database went on; the backup is a snapshot

    restored = gateway.cli("restore", "copias/gateway-backup.db")
    assert restored.returncode == 0, restored.stderr
    kept = [k for k in (project.root / "data").glob("gateway.db.before-restore-*") if not k.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1 and set(stored_orders(kept[0])) == set(live)  # the replaced database, whole
    assert f"the database it replaced is kept as {kept[0]}" in restored.stdout.replace("\n", "")
    assert set(stored_orders(project.root / "data" / "gateway.db")) == set(backed_up)
    sink.received.clear()
    gateway.start()
    try:
        post = json.loads((EVENTS / "order_created.json").read_text())
        post["data"]["id"] = "depois-do-restore"
        assert gateway.post(f"/hooks/go?token={TOKEN}", json.dumps(post)).status_code == 202
        sink.wait_for(1, path="/crm")
        assert httpx.get(gateway.url("/readyz"), timeout=10).json()["status"] == "ready"
    finally:
        gateway.terminate()
        sink.close()
    assert "depois-do-restore" in stored_orders(project.root / "data" / "gateway.db")


def test_restore_refuses_the_database_of_a_running_gateway(project: Project, sink: Sink) -> None:
    """While serve has the database open, restore says so and changes nothing."""
    project.routes(routes(sink))
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        assert gateway.cli("backup", "copia.db").returncode == 0
        refused = gateway.cli("restore", "copia.db")
    finally:
        gateway.terminate()
    assert refused.returncode == 1
    assert "data/gateway.db is open in process" in refused.stderr and "stop it, restore, then start it again" in refused.stderr
    assert not list((project.root / "data").glob("*.before-restore-*"))


def test_what_cannot_be_backed_up_or_restored_is_said(project: Project, sink: Sink) -> None:
    """No database, a file that is not a backup, PostgreSQL: a message saying what to do, exit 1."""
    project.routes(routes(sink))
    (project.root / "notas.txt").write_text("não é um banco de dados\n" * 100)
    missing = project.gateway("backup", "copia.db", env={"GO_WEBHOOK_TOKEN": TOKEN})
    not_a_backup = project.gateway("restore", "notas.txt", env={"GO_WEBHOOK_TOKEN": TOKEN})
    postgres = project.gateway("backup", "copia.dump", "--db", "postgresql://gateway@127.0.0.1:5432/gateway")
    assert missing.returncode == not_a_backup.returncode == postgres.returncode == 1
    assert "there is no database at data/gateway.db" in missing.stderr
    assert "notas.txt is not an SQLite database" in not_a_backup.stderr and "give a file `gateway backup` wrote" in not_a_backup.stderr
    assert "the database is PostgreSQL" in postgres.stderr and "pg_dump --format=custom" in postgres.stderr
    assert not (project.root / "data").exists()  # nothing created on the way
