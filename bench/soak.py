"""Soak: a gateway under steady load for a long time, with a receiver that fails now and then.

Sends GO's six sample events round-robin (each with a unique `data.id`) at a fixed rate to a
real `gateway serve` (SQLite, delivery in the same process). Every event goes to two routes:
an HTTP mirror and a Slack message, both delivered to one local receiver that answers 500 to a
random share of requests (1% by default). At the end it waits (bounded) for the queue to drain
and reconciles every event acknowledged against every delivery received: lost ones (acknowledged,
never received) must be 0. It reports the gateway's memory and open files at the start and
the end, and every minute in between.

Run:  .venv/bin/python bench/soak.py                  (10 minutes, 20 events/s, 1% errors)
      .venv/bin/python bench/soak.py --minutes 1      (a quick check)
Exit status 0 when nothing was lost, 1 otherwise.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "soak-token-123"
ROUTES = 2  # deliveries per event


class Receiver:
    """A local receiver recording (route, event id, idempotency key) of every request it takes."""

    def __init__(self, error_rate: float, seed: int = 20) -> None:
        self.lock = threading.Lock()
        self.keys: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.requests = 0
        self.failed_on_purpose = 0
        chance = random.Random(seed)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with receiver.lock:
                    receiver.requests += 1
                    fail = chance.random() < error_rate
                    if fail:
                        receiver.failed_on_purpose += 1
                    else:
                        order = body["id"] if self.path == "/mirror" else body["text"].rsplit(" ", 1)[-1]
                        receiver.keys[(self.path, order)].add(self.headers["idempotency-key"])
                status = 500 if fail else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self) -> set[tuple[str, str]]:
        with self.lock:
            return set(self.keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_project(folder: Path, receiver_port: int) -> None:
    shutil.copytree(ROOT / "templates", folder / "templates")
    (folder / "routes.yaml").write_text(f"""
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: {TOKEN}, dedupe: false}}}}
destinations:
  espelho: {{type: http, url: "http://127.0.0.1:{receiver_port}/mirror", retry: {{first: 1s, max: 10s}}}}
  slack: {{type: slack, url: "http://127.0.0.1:{receiver_port}/slack", rate: 1000/s, retry: {{first: 1s, max: 10s}}}}
routes:
  - name: espelho
    when: {{event_id: {{exists: true}}}}
    send: {{to: espelho, body: '{{"id": "{{{{ data.id }}}}", "event": "{{{{ event_id }}}}"}}'}}
  - name: slack
    when: {{event_id: {{exists: true}}}}
    send: {{to: slack, body: '{{"text": "{{{{ event_id }}}} {{{{ data.id }}}}"}}'}}
""")


def resources(pid: int) -> dict[str, float]:
    """`gateway serve` and its child processes (the ingest child, the delivery child) together."""
    pids = [pid, *(int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    rss_kib = 0
    for one in pids:
        status = Path(f"/proc/{one}/status").read_text()
        rss_kib += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return {"rss_mb": round(rss_kib / 1024, 1), "open_files": sum(len(os.listdir(f"/proc/{one}/fd")) for one in pids), "processes": len(pids)}


def run(minutes: float, rate: float, error_rate: float) -> dict:
    samples = [json.loads(p.read_text()) for p in sorted((ROOT / "examples" / "events").glob("*.json"))]
    receiver = Receiver(error_rate)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_project(folder, receiver.port)
        port = free_port()
        log = open(folder / "gateway.log", "ab")  # noqa: SIM115
        command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--db", f"sqlite:///{folder / 'gw.db'}"]
        gateway = subprocess.Popen(command, cwd=folder, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_up(f"{url}/healthz")
            start = resources(gateway.pid)
            acknowledged, refused, timeline = send_for(url, samples, minutes * 60, rate, receiver, gateway.pid)
            drained = wait_drained(receiver, acknowledged, timeout=120)
            end = resources(gateway.pid)
        finally:
            gateway.terminate()
            gateway.wait(timeout=40)
    expected = {(path, order) for order in acknowledged for path in ("/mirror", "/slack")}
    got = receiver.received()
    return {
        "minutes": minutes, "rate_per_s": rate, "error_rate": error_rate,
        "events_acknowledged": len(acknowledged), "posts_refused": refused,
        "deliveries_expected": len(expected), "deliveries_received": len(expected & got),
        "lost": len(expected - got), "redeliveries": receiver.requests - receiver.failed_on_purpose - len(got),
        "failed_on_purpose": receiver.failed_on_purpose,
        "keys_consistent": all(len(keys) == 1 for keys in receiver.keys.values()),
        "drain_seconds": drained, "start": start, "end": end, "timeline": timeline,
    }


def wait_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def send_for(url: str, samples: list[dict], seconds: float, rate: float, receiver: Receiver, pid: int) -> tuple[set[str], int, list[dict]]:
    """Post at `rate` events/s for `seconds`, paced; the ids acknowledged, refusals, a minute-by-minute log."""
    acknowledged: set[str] = set()
    refused = 0
    timeline = []
    began = time.monotonic()
    next_report = began + 60
    with httpx.Client(timeout=10) as client:
        for number, sample in zip(itertools.count(), itertools.cycle(samples)):
            due = began + number / rate
            if due - began >= seconds:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            order = f"soak-{number}"
            event = {**sample, "data": {**sample["data"], "id": order}}
            try:
                answer = client.post(f"{url}/hooks/go?token={TOKEN}", json=event)
                if answer.status_code == 202:
                    acknowledged.add(order)
                else:
                    refused += 1
            except httpx.HTTPError:
                refused += 1
            if time.monotonic() >= next_report:
                point = {"minute": round((time.monotonic() - began) / 60), "acknowledged": len(acknowledged), "received": len(receiver.received()), **resources(pid)}
                timeline.append(point)
                print(json.dumps(point), flush=True)
                next_report += 60
    return acknowledged, refused, timeline


def wait_drained(receiver: Receiver, acknowledged: set[str], timeout: float) -> float:
    """Seconds until every acknowledged event reached both routes (or the timeout)."""
    expected = {(path, order) for order in acknowledged for path in ("/mirror", "/slack")}
    began = time.monotonic()
    while time.monotonic() - began < timeout and not expected <= receiver.received():
        time.sleep(0.5)
    return round(time.monotonic() - began, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--error-rate", type=float, default=0.01, help="share of requests the receiver answers 500")
    args = parser.parse_args()
    result = run(args.minutes, args.rate, args.error_rate)
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["lost"] == 0 and result["keys_consistent"] else 1)


if __name__ == "__main__":
    main()
