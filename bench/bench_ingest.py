"""Ingest and delivery throughput, against a bare Litestar endpoint in the same run.

1. Ingest: `wrk` (2 threads, 32 connections, 15 s) POSTs GO's ORDER_CREATED event with a
   unique id each time, first to a bare Litestar endpoint that only parses the JSON (same
   uvicorn settings: one process, no access log), then to the gateway with durable SQLite
   storage and two matching routes (a Slack template and an HTTP mirror), deliveries going to
   a fast local receiver at the same time: (a) `gateway serve` delivering in the same process,
   (b) `gateway serve --no-deliver` with `gateway worker` beside it.
2. Delivery: 5,000 deliveries made dead on purpose (the receiver refuses them with 400), then
   `gateway replay` queues them all at once towards the real receiver; we time the drain.

Needs `wrk` (Debian package). Run:  .venv/bin/python bench/bench_ingest.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from gateway.delivery import IDLE_SECONDS

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TOKEN = "bench-token-123"
DURATION, CONNECTIONS = "15s", 32
DRAIN_EVENTS = 2500  # x 2 routes = 5,000 deliveries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def uvicorn(app: str, port: int, cwd: Path) -> subprocess.Popen[bytes]:
    command = [PYTHON, "-m", "uvicorn", app, "--port", str(port), "--no-access-log", "--log-level", "warning"]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def gateway(folder: Path, port: int, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    command = [PYTHON, "-m", "gateway", "serve", "--port", str(port), "--db", f"sqlite:///{folder / 'gw.db'}", *extra]
    log = open(folder / "gateway.log", "ab")  # noqa: SIM115
    return subprocess.Popen(command, cwd=folder, env={**os.environ, **env}, stdout=log, stderr=log)


def wrk(url: str) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}", "--latency", "-s", str(ROOT / "bench" / "post.lua"), url],
        capture_output=True, text=True, check=True,
    ).stdout
    def millis(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": millis("50%"), "p99": millis("99%"),
        "errors": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def write_project(folder: Path) -> None:
    shutil.copytree(ROOT / "templates", folder / "templates")
    (folder / "routes.yaml").write_text(f"""
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: {TOKEN}}}}}
destinations:
  slack: {{type: slack, url: "${{SINK_URL}}", rate: 100000/s, concurrency: 32, retry: {{attempts: 1}}}}
  espelho: {{type: http, url: "${{SINK_URL}}", concurrency: 32, retry: {{attempts: 1}}}}
routes:
  - name: slack
    when: {{event_id: ORDER_CREATED}}
    send: {{to: slack, template: slack/order_created.json.j2}}
  - name: espelho
    when: {{event_id: ORDER_CREATED}}
    send: {{to: espelho, body: "{{{{ event | tojson }}}}"}}
""")


def count(sink: str) -> int:
    return httpx.get(f"{sink}/count").json()["received"]


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_project(folder)
        sink_port, bare_port, gw_port = free_port(), free_port(), free_port()
        sink_url = f"http://127.0.0.1:{sink_port}"
        sink = subprocess.Popen([PYTHON, str(ROOT / "bench" / "sink_app.py"), str(sink_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bare = uvicorn("bare_app:app", bare_port, ROOT / "bench")
        processes = [sink, bare]
        try:
            wait_up(f"{sink_url}/count")
            wait_up(f"http://127.0.0.1:{bare_port}/")
            baseline = wrk(f"http://127.0.0.1:{bare_port}/hooks/go") if "--drain-only" not in sys.argv else {"rps": 1, "p50": 0, "p99": 0, "errors": 0}
            bare.terminate()
            env = {"SINK_URL": f"{sink_url}/in", "PYTHONPATH": str(ROOT)}
            together = measure_gateway(folder, gw_port, env, processes)
            split = measure_gateway(folder, free_port(), env, processes, separate_worker=True)
            alone = measure_gateway(folder, free_port(), env, processes, separate_worker=True, worker=False)
            drain = measure_drain(folder, sink_url)
        finally:
            for process in processes:
                process.terminate()
        report(baseline, together, split, alone, drain)


def measure_gateway(folder: Path, port: int, env: dict[str, str], processes: list, separate_worker: bool = False, worker: bool = True) -> dict[str, float]:
    """wrk against `gateway serve`: delivering itself, or `--no-deliver` with a `gateway worker`
    beside it, or (worker=False) `--no-deliver` alone, which is ingest's own cost."""
    for leftover in folder.glob("gw.db*"):
        leftover.unlink()
    server = gateway(folder, port, env, *(["--no-deliver"] if separate_worker else []))
    processes.append(server)
    started = 1
    if separate_worker and worker:
        worker_log = open(folder / "worker.log", "ab")  # noqa: SIM115
        command = [PYTHON, "-m", "gateway", "worker", "--db", f"sqlite:///{folder / 'gw.db'}"]
        processes.append(subprocess.Popen(command, cwd=folder, env={**os.environ, **env}, stdout=worker_log, stderr=worker_log))
        started = 2
    wait_up(f"http://127.0.0.1:{port}/healthz")
    result = wrk(f"http://127.0.0.1:{port}/hooks/go?token={TOKEN}") if "--drain-only" not in sys.argv else {"rps": 1, "p50": 0, "p99": 0, "errors": 0}
    for process in processes[-started:]:
        process.terminate()
        process.wait(60)
    return result


def measure_drain(folder: Path, sink_url: str) -> dict[str, float]:
    """Make DRAIN_EVENTS x 2 deliveries dead (the receiver refuses them), then replay and time them."""
    (folder / "gw.db").unlink()
    for suffix in ("-wal", "-shm"):
        (folder / f"gw.db{suffix}").unlink(missing_ok=True)
    port = free_port()
    down = gateway(folder, port, {"SINK_URL": f"{sink_url}/reject", "PYTHONPATH": str(ROOT)})
    wait_up(f"http://127.0.0.1:{port}/healthz")
    event = json.loads((ROOT / "examples" / "events" / "order_created.json").read_text())
    with httpx.Client() as client:
        for number in range(DRAIN_EVENTS):
            event["data"]["id"] = f"drain-{number}"
            client.post(f"http://127.0.0.1:{port}/hooks/go?token={TOKEN}", json=event)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "gateway_queue_depth{status=\"dead\"} %d.0" % (2 * DRAIN_EVENTS) not in httpx.get(f"http://127.0.0.1:{port}/metrics").text:
        time.sleep(0.2)
    down.terminate()
    down.wait(60)
    with sqlite3.connect(folder / "gw.db") as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
    assert statuses == {"dead": 2 * DRAIN_EVENTS}, statuses
    port = free_port()
    before = count(sink_url)
    httpx.post(f"{sink_url}/reset")
    up = gateway(folder, port, {"SINK_URL": f"{sink_url}/in", "PYTHONPATH": str(ROOT)})
    try:
        wait_up(f"http://127.0.0.1:{port}/healthz")
        started = time.monotonic()
        subprocess.run([PYTHON, "-m", "gateway", "replay", "--db", f"sqlite:///{folder / 'gw.db'}"], cwd=folder, check=True, capture_output=True)
        while count(sink_url) - before < 2 * DRAIN_EVENTS and time.monotonic() - started < 300:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        with sqlite3.connect(folder / "gw.db") as db:
            statuses = dict(db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
        arrivals = httpx.get(f"{sink_url}/count").json()
        return {"deliveries": count(sink_url) - before, "seconds": elapsed, "arrival_seconds": arrivals["last_at"] - arrivals["first_at"], "statuses": statuses}
    finally:
        up.terminate()
        up.wait(60)


def report(baseline: dict[str, float], together: dict[str, float], split: dict[str, float], alone: dict[str, float], drain: dict[str, float]) -> None:
    print(f"ingest, wrk -t2 -c{CONNECTIONS} -d{DURATION}:")
    print(f"{'endpoint':44} {'req/s':>9} {'vs bare':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    rows = (
        ("bare Litestar JSON endpoint", baseline),
        ("/hooks/go, serve (delivering too)", together),
        ("/hooks/go, serve --no-deliver + worker", split),
        ("/hooks/go, serve --no-deliver (ingest alone)", alone),
    )
    for name, row in rows:
        print(f"{name:44} {row['rps']:9.0f} {row['rps'] / baseline['rps']:8.2f} {row['p50']:8.2f} {row['p99']:8.2f} {row['errors']:8.0f}")
    print(f"delivery drain: {drain['deliveries']:.0f} deliveries in {drain['seconds']:.2f} s = {drain['deliveries'] / drain['seconds']:.0f}/s from the replay command"
          f" (the engine notices another process's work within {IDLE_SECONDS:g} s); first to last arrival {drain['arrival_seconds']:.2f} s"
          f" = {drain['deliveries'] / drain['arrival_seconds']:.0f}/s (statuses after: {drain['statuses']})")


if __name__ == "__main__":
    main()
