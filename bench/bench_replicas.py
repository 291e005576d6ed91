"""Ingest and end-to-end throughput with 1, 2 and 3 replicas on PostgreSQL, next to one
`gateway serve` on SQLite, in one run (issue #15).

Each replica is a `gateway serve` of its own (HTTP process + delivery child) on one PostgreSQL
database; wrk loads them all at once (one wrk per replica, 32 connections shared out), GO's
ORDER_CREATED with a new data.id in every request (bench/post.lua), one route to a local
receiver (bench/sink_app.py), default settings. Measured: requests/s accepted, events stored
(must equal accepted), and end-to-end deliveries/s from the start of the load to the last
delivery arriving. Everything shares this machine's cores: more replicas here divide the same
CPU, so the table shows what each costs, not what more machines would give.

It also takes the CPU each event costs on each side (the replicas' process trees; every
PostgreSQL server process, exited backends included) and prints issue #23's capacity model from
the one-replica row: events/s for 1, 2, 4 and 8 replica machines against one PostgreSQL machine.

Run:  .venv/bin/python bench/bench_replicas.py [--passes 3]   (needs wrk, the `bench` extra
(`pip install -e '.[bench]'`: psutil), and PostgreSQL at GATEWAY_TEST_POSTGRES_URL or
postgresql://root@127.0.0.1:5432/test)
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
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


def _cpu_seconds(process: psutil.Process, children: bool = False) -> float:
    """User + system CPU of a process (with `children`: plus its exited, waited-for children's)."""
    times = process.cpu_times()
    return times.user + times.system + (times.children_user + times.children_system if children else 0.0)


def cpu_of_trees(roots: list[int]) -> float:
    """CPU seconds so far of these processes and everything under them, exited children included."""
    total = 0.0
    for root in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            top = psutil.Process(root)
            for process in [top, *top.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += _cpu_seconds(process, children=True)
    return total


def postgres_cpu() -> float:
    """CPU seconds so far of the PostgreSQL server: every `postgres` process, and the backends
    that already exited (counted in the postmaster's children's time)."""
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "postgres":
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = process.parent()
            total += _cpu_seconds(process, children=parent is None or parent.name() != "postgres")
    return total


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
        gateway_before, database_before = cpu_of_trees([p.pid for p in processes]), postgres_cpu()
        started = time.monotonic()
        accepted = wrk_all([f"http://127.0.0.1:{port}/hooks/go?token={TOKEN}" for port in ports])
        loaded = time.monotonic() - started
        stored, delivered = counts(database_url)
        deadline = time.monotonic() + 120
        while delivered < stored and time.monotonic() < deadline:
            time.sleep(0.25)
            stored, delivered = counts(database_url)
        finished = time.monotonic() - started
        gateway_cpu, database_cpu = cpu_of_trees([p.pid for p in processes]) - gateway_before, postgres_cpu() - database_before
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
        for log in logs:
            log.close()
    return {
        "rps": accepted / loaded, "accepted": accepted, "stored": stored, "delivered": delivered, "e2e": delivered / finished, "seconds": finished,
        # CPU per event, received and delivered (the counts are equal when a row is right)
        "gateway_us": gateway_cpu / max(delivered, 1) * 1e6, "database_us": database_cpu / max(delivered, 1) * 1e6,
    }


def fresh_schema_url() -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    return schema, f"{SERVER}{'&' if '?' in SERVER else '?'}options=-csearch_path%3D{schema}"


CORES = os.cpu_count() or 2


def one_pass() -> list[tuple[str, dict[str, float]]]:
    """SQLite, then 1, 2 and 3 replicas on PostgreSQL, each on a fresh database."""
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
    return rows


def print_pass(number: int, rows: list[tuple[str, dict[str, float]]]) -> bool:
    """The pass's table and issue #23's two PostgreSQL targets; False when a count is wrong."""
    print(f"\npass {number}: wrk, {CONNECTIONS} connections shared by the replicas, {DURATION}; one route to a local receiver")
    print(f"{'setup':26} {'req/s':>8} {'accepted':>9} {'stored':>8} {'delivered':>10} {'e2e/s':>8} {'drained in s':>13} {'gateway µs/event':>17} {'PostgreSQL µs/event':>20}")
    for label, row in rows:
        database = f"{row['database_us']:20.0f}" if label.startswith("PostgreSQL") else f"{'-':>20}"
        print(f"{label:26} {row['rps']:8.0f} {row['accepted']:9.0f} {row['stored']:8.0f} {row['delivered']:10.0f} {row['e2e']:8.0f} {row['seconds']:13.1f} {row['gateway_us']:17.0f} {database}")
    sqlite, postgres = rows[0][1], rows[1][1]
    print(f"one replica stores {postgres['rps'] / sqlite['rps']:.2f} of SQLite's events/s (target >= 0.8); delivers {postgres['e2e']:,.0f}/s end to end (target >= 1,000)")
    # stored may exceed accepted by the requests in flight when wrk stops (one per connection), never fall short
    wrong = [label for label, row in rows if not row["accepted"] <= row["stored"] <= row["accepted"] + CONNECTIONS or row["delivered"] != row["stored"]]
    print("every row: events stored == requests accepted (+ those in flight at wrk's stop), all delivered" if not wrong else f"MISMATCH in: {', '.join(wrong)}")
    return not wrong


def print_capacity(rows: list[tuple[str, dict[str, float]]]) -> None:
    """Issue #23's capacity model, from one replica's measured CPU per event on each side: k replica
    machines of CORES cores each against one PostgreSQL machine of CORES cores."""
    one = rows[1][1]
    replica_side, database_side = one["gateway_us"] / 1e6, one["database_us"] / 1e6
    per_replica, database_limit = CORES / replica_side, CORES / database_side
    print(f"\ncapacity model ({CORES}-core machines; per event received and delivered: replica {replica_side * 1e6:.0f} µs, PostgreSQL {database_side * 1e6:.0f} µs of CPU)")
    for machines in (1, 2, 4, 8):
        predicted = min(machines * per_replica, database_limit)
        limit = "PostgreSQL's CPU" if machines * per_replica > database_limit else "the replicas' CPU"
        print(f"  {machines} replica machine{'s' if machines > 1 else ' '}: {predicted:8,.0f} events/s  (limited by {limit})")
    shared = CORES / (replica_side + database_side)
    print(f"  check, everything on this one machine: predicts <= {shared:,.0f} events/s (wrk and the receiver take their share too); measured {one['e2e']:,.0f} end to end")


def main() -> None:
    passes = int(sys.argv[sys.argv.index("--passes") + 1]) if "--passes" in sys.argv else 1
    right = True
    for number in range(1, passes + 1):
        rows = one_pass()
        right = print_pass(number, rows) and right
        print_capacity(rows)
    if not right:
        sys.exit(1)


if __name__ == "__main__":
    main()
