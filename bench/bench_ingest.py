"""Ingest and delivery throughput, against a bare Litestar endpoint in the same run.

1. Ingest: `wrk` (2 threads, 32 connections, 15 s) POSTs GO's ORDER_CREATED event with a
   unique id each time, first to a bare Litestar endpoint that only parses the JSON (same
   uvicorn settings: one process, no access log), then to the gateway with durable SQLite
   storage and two matching routes (a Slack template and an HTTP mirror), deliveries going to
   a fast local receiver at the same time: (a) `gateway serve` delivering (from its delivery child
   process), (b) `gateway serve --no-deliver` with `gateway worker` beside it, (c) `gateway
   serve --no-deliver` alone, ingest's own cost. Each at saturation, then at half the bare
   endpoint's rate; (a) also at 0.15 of it, a rate its deliveries keep up with.
2. Delivery: 5,000 deliveries made dead on purpose (the receiver refuses them with 400), then
   `gateway replay` queues them all at once towards the real receiver; we time the drain.

Needs `wrk` (Debian package). Run:  .venv/bin/python bench/bench_ingest.py [--drain-only | --no-drain | --alone]
(`--alone`: the bare endpoint and `serve --no-deliver`, saturated and at half the bare rate)
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

from gateway.delivery.engine import IDLE_SECONDS

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TOKEN = "bench-token-123"
DURATION, CONNECTIONS = "15s", 32
DRAIN_EVENTS = 2500  # x 2 routes = 5,000 deliveries
HALF_ASKED = 0.5  # the throughput target; what was achieved is in the "vs bare" column
KEPT_UP_ASKED = 0.15  # serve delivering at a rate its deliveries keep up with (2 per event, ~600/s)


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


def wrk(url: str, mean_delay_ms: float = 0, duration: str = DURATION) -> dict[str, float]:
    """wrk at saturation, or with `mean_delay_ms` Poisson pauses per connection (bench/post.lua)."""
    env = {**os.environ, "WRK_MEAN_DELAY_MS": f"{mean_delay_ms:.3f}"}
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration}", "--latency", "-s", str(ROOT / "bench" / "post.lua"), url],
        capture_output=True, text=True, check=True, env=env,
    ).stdout
    def millis(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s", out, re.MULTILINE).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": millis("50%"), "p99": millis("99%"), "mean": millis("Latency"),
        "errors": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def wrk_at_rate(url: str, rate: float) -> dict[str, float]:
    """Latency at a given load: each of the 32 connections pauses so that together they send
    `rate` requests/s. A connection's cycle is pause + latency, so two short calibration runs
    measure the latency and the pause is set to what remains of 32/rate."""
    cycle_ms = CONNECTIONS / rate * 1000
    pause_ms = cycle_ms
    requests = errors = 0.0
    for _ in range(2):  # the second run is at nearly the final rate, so its latency is close to the final one
        calibration = wrk(url, pause_ms, duration="5s")
        requests, errors = requests + calibration["requests"], errors + calibration["errors"]
        pause_ms = max(cycle_ms - calibration["mean"], 0.0)
    result = wrk(url, pause_ms)
    result["offered"] = rate
    result["requests_total"] = requests + result["requests"]  # every request the three runs completed
    result["errors_total"] = errors + result["errors"]
    return result


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
    drain_only = "--drain-only" in sys.argv
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_project(folder)
        sink_port, bare_port = free_port(), free_port()
        sink_url = f"http://127.0.0.1:{sink_port}"
        sink = subprocess.Popen([PYTHON, str(ROOT / "bench" / "sink_app.py"), str(sink_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes = [sink]
        rows: dict[str, dict[str, float]] = {}
        try:
            wait_up(f"{sink_url}/count")
            if not drain_only:
                bare = uvicorn("bare_app:app", bare_port, ROOT / "bench")
                processes.append(bare)
                wait_up(f"http://127.0.0.1:{bare_port}/")
                rows["bare"] = wrk(f"http://127.0.0.1:{bare_port}/hooks/go")
                half = rows["bare"]["rps"] * HALF_ASKED
                rows["bare, half"] = wrk_at_rate(f"http://127.0.0.1:{bare_port}/hooks/go", half)
                bare.terminate()
                env = {"SINK_URL": f"{sink_url}/in", "PYTHONPATH": str(ROOT)}
                kept_up = rows["bare"]["rps"] * KEPT_UP_ASKED
                if "--alone" not in sys.argv:
                    rows["serve"], rows["serve, kept up"], rows["serve, half"] = measure_gateway(folder, env, processes, rates=[kept_up, half])
                    (rows["split"],) = measure_gateway(folder, env, processes, separate_worker=True)
                rows["alone"], rows["alone, half"] = measure_gateway(folder, env, processes, rates=[half], separate_worker=True, worker=False)
            drain = measure_drain(folder, sink_url) if "--no-drain" not in sys.argv else None
        finally:
            for process in processes:
                process.terminate()
        report(rows, drain)


def measure_gateway(folder: Path, env: dict[str, str], processes: list, rates: tuple[float, ...] | list[float] = (), separate_worker: bool = False, worker: bool = True) -> list[dict[str, float]]:
    """wrk against `gateway serve`: delivering itself, or `--no-deliver` with a `gateway worker`
    beside it, or (worker=False) `--no-deliver` alone, which is ingest's own cost. At
    saturation, then at each of `rates` requests/s."""
    for leftover in folder.glob("gw.db*"):
        leftover.unlink()
    port = free_port()
    server = gateway(folder, port, env, *(["--no-deliver"] if separate_worker else []))
    processes.append(server)
    started = 1
    if separate_worker and worker:
        worker_log = open(folder / "worker.log", "ab")  # noqa: SIM115
        command = [PYTHON, "-m", "gateway", "worker", "--db", f"sqlite:///{folder / 'gw.db'}"]
        processes.append(subprocess.Popen(command, cwd=folder, env={**os.environ, **env}, stdout=worker_log, stderr=worker_log))
        started = 2
    try:
        wait_up(f"http://127.0.0.1:{port}/healthz")
    except RuntimeError:
        print((folder / "gateway.log").read_text()[-4000:], file=sys.stderr)
        raise
    url = f"http://127.0.0.1:{port}/hooks/go?token={TOKEN}"
    results = [wrk(url)]
    for rate in rates:
        if worker:
            wait_drained(f"http://127.0.0.1:{port}/metrics")  # the backlog of the run before would be measured too
        results.append(wrk_at_rate(url, rate))
    for process in processes[-started:]:
        process.terminate()
        process.wait(60)
    return results


def wait_drained(metrics_url: str, timeout: float = 180) -> None:
    """Until no delivery is pending or being sent (bounded: a stuck queue shows in the rows)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = httpx.get(metrics_url, timeout=10).text
        waiting = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(('gateway_queue_depth{status="pending"}', 'gateway_queue_depth{status="sending"}')))
        if waiting == 0:
            return
        time.sleep(0.5)


def measure_drain(folder: Path, sink_url: str) -> dict[str, float]:
    """Make DRAIN_EVENTS x 2 deliveries dead (the receiver refuses them), then replay and time them."""
    (folder / "gw.db").unlink(missing_ok=True)  # none yet with --drain-only
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
    while time.monotonic() < deadline and f'gateway_queue_depth{{status="dead"}} {2 * DRAIN_EVENTS}.0' not in httpx.get(f"http://127.0.0.1:{port}/metrics").text:
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


def report(rows: dict[str, dict[str, float]], drain: dict[str, float] | None) -> None:
    if rows:
        bare = rows["bare"]["rps"]
        print(f"ingest, wrk -t2 -c{CONNECTIONS} -d{DURATION}; 'half rate' rows ask for {HALF_ASKED} of the bare endpoint's saturated rate, '{KEPT_UP_ASKED} rate' for {KEPT_UP_ASKED}:")
        print(f"{'endpoint':52} {'req/s':>9} {'vs bare':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
        names = {
            "bare": "bare Litestar JSON endpoint, saturated",
            "bare, half": "bare Litestar JSON endpoint, half rate",
            "serve": "/hooks/go, serve (delivering too), saturated",
            "serve, half": "/hooks/go, serve (delivering too), half rate",
            "serve, kept up": f"/hooks/go, serve (delivering too), {KEPT_UP_ASKED} rate",
            "split": "/hooks/go, serve --no-deliver + worker, saturated",
            "alone": "/hooks/go, serve --no-deliver (ingest), saturated",
            "alone, half": "/hooks/go, serve --no-deliver (ingest), half rate",
        }
        for key, name in names.items():
            if key not in rows:
                continue
            row = rows[key]
            print(f"{name:52} {row['rps']:9.0f} {row['rps'] / bare:8.2f} {row['p50']:8.2f} {row['p99']:8.2f} {row['errors']:8.0f}")
    if drain is None:
        return
    print(f"delivery drain: {drain['deliveries']:.0f} deliveries in {drain['seconds']:.2f} s = {drain['deliveries'] / drain['seconds']:.0f}/s from the replay command"
          f" (the engine notices another process's work within {IDLE_SECONDS:g} s); first to last arrival {drain['arrival_seconds']:.2f} s"
          f" = {drain['deliveries'] / drain['arrival_seconds']:.0f}/s (statuses after: {drain['statuses']})")


if __name__ == "__main__":
    main()
