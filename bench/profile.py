"""Where each event's time goes, per process (issue #23): py-spy samples every process of a real
`gateway serve` (the HTTP process, the ingest child, the delivery child) while wrk loads it as
bench/peers.sh does, and the report gives each process's CPU and its costliest functions.

    .venv/bin/pip install -e '.[bench]'      # py-spy
    .venv/bin/python bench/profile.py         # ~40 s; needs wrk (apt-get install wrk)
    .venv/bin/python bench/profile.py --seconds 20 --no-deliver --top 30

One route to a local receiver (bench/sink_app.py), GO's ORDER_CREATED with a new data.id in every
request (bench/post.lua), 32 connections; py-spy at 250 samples a second with --gil (a sample
counts only while its thread holds the GIL, so waiting does not show: what remains is the
Python CPU each function costs; C code it calls, SQLite's included, counts as its caller's).
Checks that the events stored equal the requests accepted, as every benchmark here does.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_ingest import free_port, wait_up  # run as a script: bench/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TOKEN = "bench-token-123"
PROCESSES = {"HTTP process": "gateway serve", "ingest child": "gateway.service.ingest_child", "delivery child": "gateway.service.delivery_child"}
ROUTES = """
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: {token}}}}}
destinations:
  sink: {{type: http, url: "{sink}"}}
routes:
  - name: pedido
    when: {{event_id: ORDER_CREATED}}
    send: {{to: sink, body: '{{"text": "Pedido {{{{ data.code }}}}"}}'}}
"""


def ticks(pid: int) -> int:
    """User + system CPU of a process so far, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def find(pattern: str, under: int) -> int:
    """The pid of the process under `under` (itself included) whose command line has `pattern`."""
    for _ in range(100):
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            if pattern in cmdline and (int(proc.name) == under or parent == under):
                return int(proc.name)
        time.sleep(0.1)
    raise RuntimeError(f"no process '{pattern}' under {under}")


def aggregate(raw: Path, top: int) -> list[str]:
    """A process's samples as lines: its costliest functions by self time, then inclusive."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [re.sub(r" \(.*/site-packages/", " (", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"  {total} samples holding the GIL", "  self:"]
    lines += [f"    {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines += ["  inclusive (gateway code):"]
    lines += [f"    {n / total:6.1%}  {f}" for f, n in inclusive.most_common() if "gateway/" in f][:top]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--no-deliver", action="store_true", help="ingest alone (serve --no-deliver)")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    spy = Path(PYTHON).with_name("py-spy")
    if not spy.exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        sink_port, port = free_port(), free_port()
        sink = subprocess.Popen([PYTHON, str(ROOT / "bench" / "sink_app.py"), str(sink_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (folder / "routes.yaml").write_text(ROUTES.format(token=TOKEN, sink=f"http://127.0.0.1:{sink_port}/in"))
        database = folder / "gw.db"
        command = [PYTHON, "-m", "gateway", "serve", "--port", str(port), "--db", f"sqlite:///{database}", *(["--no-deliver"] if args.no_deliver else [])]
        with open(folder / "gateway.log", "ab") as log:
            serve = subprocess.Popen(command, cwd=folder, stdout=log, stderr=log)
        try:
            wait_up(f"http://127.0.0.1:{sink_port}/count")
            wait_up(f"http://127.0.0.1:{port}/healthz")
            names = {k: v for k, v in PROCESSES.items() if not (args.no_deliver and k == "delivery child")}
            pids = {label: find(pattern, serve.pid) for label, pattern in names.items()}
            wrk = subprocess.Popen(
                ["wrk", "-t2", "-c32", f"-d{args.seconds + 2}s", "-s", str(ROOT / "bench" / "post.lua"), f"http://127.0.0.1:{port}/hooks/go?token={TOKEN}"],
                stdout=subprocess.PIPE, text=True,
            )
            time.sleep(1)  # past wrk's start
            before, began = {label: ticks(pid) for label, pid in pids.items()}, time.monotonic()
            spies = {
                label: subprocess.Popen([str(spy), "record", "-p", str(pid), "-d", str(args.seconds), "-r", "250", "--gil", "-f", "raw", "--nonblocking", "-o", str(folder / f"{pid}.txt")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for label, pid in pids.items()
            }
            for process in spies.values():
                process.wait(args.seconds + 60)
            elapsed = time.monotonic() - began
            cpu = {label: (ticks(pid) - before[label]) / os.sysconf("SC_CLK_TCK") / elapsed for label, pid in pids.items()}
            out, _ = wrk.communicate(timeout=60)
            time.sleep(1)
        finally:
            serve.terminate()
            serve.wait(60)
            sink.terminate()
        accepted = int(re.search(r"(\d+) requests in", out).group(1)) - int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
        with sqlite3.connect(database) as db:
            stored = db.execute("SELECT count(*) FROM events").fetchone()[0]
        rate = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
        print(f"serve{' --no-deliver' if args.no_deliver else ''}: {rate} req/s; {accepted:,} requests accepted, {stored:,} events stored")
        for label, pid in pids.items():
            print(f"\n{label} (pid {pid}): {cpu[label]:.0%} of a core while sampled")
            print("\n".join(aggregate(folder / f"{pid}.txt", args.top)))
        if not accepted <= stored <= accepted + 32:  # the requests in flight at wrk's stop may be stored
            sys.exit(f"MISMATCH: {stored} events stored for {accepted} requests accepted")


if __name__ == "__main__":
    main()
