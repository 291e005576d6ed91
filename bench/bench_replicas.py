"""Ingest and end-to-end throughput with 1, 2 and 3 replicas on PostgreSQL, next to one
`gateway serve` on SQLite, in one run (issue #15).

Each replica is a `gateway serve` of its own (HTTP process + delivery child) on one PostgreSQL
database; wrk loads them all at once (one wrk per replica, 32 connections shared out), GO's
ORDER_CREATED with a new data.id in every request (bench/post.lua), one route to a local
receiver (bench/sink_app.py), default settings. Measured: requests/s accepted, events stored
(must equal accepted), and end-to-end deliveries/s from the start of the load to the last
delivery arriving. Everything shares this machine's cores: more replicas here divide the same
CPU, so the table shows what each costs, not what more machines would give.

Run:  .venv/bin/python bench/bench_replicas.py   (needs wrk, and PostgreSQL at
GATEWAY_TEST_POSTGRES_URL or postgresql://root@127.0.0.1:5432/test)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from bench_ingest import free_port, wait_up  # run as a script: bench/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TOKEN = "bench-token-123"
DURATION = "10s"
CONNECTIONS = 32
SERVER = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")


def write_routes(folder: Path, sink_url: str) -> Path:
    path = folder / "routes.yaml"
    path.write_text(f"""
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: {TOKEN}}}}}
destinations:
  sink: {{type: http, url: "{sink_url}"}}
routes:
  - name: pedido
    when: {{event_id: ORDER_CREATED}}
    send: {{to: sink, body: '{{"text": "Pedido {{{{ data.code }}}}", "id": "{{{{ data.id }}}}"}}'}}
""")
    return path


def wrk_all(urls: list[str]) -> int:
    """One wrk per replica at once, the connections shared out; the requests answered 2xx."""
    per = max(1, CONNECTIONS // len(urls))
    runs = [
        subprocess.Popen(["wrk", "-t1", f"-c{per}", f"-d{DURATION}", "-s", str(ROOT / "bench" / "post.lua"), url], stdout=subprocess.PIPE, text=True)
        for url in urls
    ]
    total = 0
    for run in runs:
        out, _ = run.communicate(timeout=120)
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        total += requests - (int(non_2xx.group(1)) if non_2xx else 0)
    return total


def counts(database_url: str) -> tuple[int, int]:
    """(events stored, deliveries delivered)."""
    if database_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(database_url[len("sqlite:///"):]) as db:
            return db.execute("SELECT count(*) FROM events").fetchone()[0], db.execute("SELECT count(*) FROM deliveries WHERE status = 'delivered'").fetchone()[0]
    with psycopg.connect(database_url) as db:
        return db.execute("SELECT count(*) FROM events").fetchone()[0], db.execute("SELECT count(*) FROM deliveries WHERE status = 'delivered'").fetchone()[0]


def measure(folder: Path, routes: Path, database_url: str, replicas: int) -> dict[str, float]:
    ports = [free_port() for _ in range(replicas)]
    logs = [open(folder / f"replica-{n}.log", "ab") for n in range(replicas)]  # noqa: SIM115
    processes = [
        subprocess.Popen([PYTHON, "-m", "gateway", "serve", "--config", str(routes), "--db", database_url, "--port", str(port)], cwd=folder, stdout=log, stderr=log)
        for port, log in zip(ports, logs)
    ]
    try:
        for port in ports:
            wait_up(f"http://127.0.0.1:{port}/healthz")
        started = time.monotonic()
        accepted = wrk_all([f"http://127.0.0.1:{port}/hooks/go?token={TOKEN}" for port in ports])
        loaded = time.monotonic() - started
        stored, delivered = counts(database_url)
        deadline = time.monotonic() + 120
        while delivered < stored and time.monotonic() < deadline:
            time.sleep(0.25)
            stored, delivered = counts(database_url)
        finished = time.monotonic() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
        for log in logs:
            log.close()
    return {"rps": accepted / loaded, "accepted": accepted, "stored": stored, "delivered": delivered, "e2e": delivered / finished, "seconds": finished}


def fresh_schema_url() -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    return schema, f"{SERVER}{'&' if '?' in SERVER else '?'}options=-csearch_path%3D{schema}"


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        sink_port = free_port()
        sink = subprocess.Popen([PYTHON, str(ROOT / "bench" / "sink_app.py"), str(sink_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows: list[tuple[str, dict[str, float]]] = []
        schemas = []
        try:
            wait_up(f"http://127.0.0.1:{sink_port}/count")
            routes = write_routes(folder, f"http://127.0.0.1:{sink_port}/in")
            rows.append(("SQLite, 1 serve", measure(folder, routes, f"sqlite:///{folder / 'gw.db'}", 1)))
            for replicas in (1, 2, 3):
                schema, url = fresh_schema_url()
                schemas.append(schema)
                rows.append((f"PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}", measure(folder, routes, url, replicas)))
        finally:
            sink.terminate()
            with psycopg.connect(SERVER, autocommit=True) as db:
                for schema in schemas:
                    db.execute(f"DROP SCHEMA {schema} CASCADE")
    print(f"wrk, {CONNECTIONS} connections shared by the replicas, {DURATION}; one route to a local receiver")
    print(f"{'setup':26} {'req/s':>8} {'accepted':>9} {'stored':>8} {'delivered':>10} {'e2e/s':>8} {'drained in s':>13}")
    for label, row in rows:
        print(f"{label:26} {row['rps']:8.0f} {row['accepted']:9.0f} {row['stored']:8.0f} {row['delivered']:10.0f} {row['e2e']:8.0f} {row['seconds']:13.1f}")
    # stored may exceed accepted by the requests in flight when wrk stops (one per connection), never fall short
    wrong = [label for label, row in rows if not row["accepted"] <= row["stored"] <= row["accepted"] + CONNECTIONS or row["delivered"] != row["stored"]]
    print("every row: events stored == requests accepted (+ those in flight at wrk's stop), all delivered" if not wrong else f"MISMATCH in: {', '.join(wrong)}")
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
