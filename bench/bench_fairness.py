"""Fair delivery across shops (issue #24): a quiet shop's delivery latency while a noisy shop
floods, compared with the quiet shop alone, in one run.

One `gateway serve` (shipped defaults: 32 delivery slots) with two shops in routes.d/:
- `quiet`: one CRM that answers at once; GO sends it QUIET_RATE orders a second for QUIET_SECONDS.
- `noisy`: every order goes to a CRM that answers in NOISY_ANSWER_MS and to one that never answers
  (every request times out after its `timeout: 5s`).

Passes, each on a fresh database:
1. alone: only the quiet shop's orders.
2. flood: the noisy shop starts with BACKLOG deliveries pending (BACKLOG // 2 orders stored through
   the gateway's own ingest before serve starts) and GO keeps sending it NOISY_RATE orders a second
   during the pass.
Latency is measured end to end: from the moment the bench posts a quiet order (its time is in the
order) to the moment the receiver gets the delivery. Each pass checks that every quiet order posted
was accepted, stored and delivered once; the flood pass also that the noisy shop kept delivering.

Run:  .venv/bin/python bench/bench_fairness.py          (~3 minutes; SQLite)
      .venv/bin/python bench/bench_fairness.py --db postgresql   (PostgreSQL at
      GATEWAY_TEST_POSTGRES_URL or postgresql://root@127.0.0.1:5432/test, a schema per pass)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from bench_ingest import free_port, wait_up  # run as a script: bench/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TOKEN = "bench-token-123"
QUIET_RATE, QUIET_SECONDS = 20, 30  # 600 quiet orders a pass
NOISY_RATE = 100  # orders a second the noisy shop keeps sending during the flood (x 2 deliveries)
NOISY_ANSWER_MS = 50
BACKLOG = 100_000  # deliveries pending for the noisy shop when the flood pass starts
SERVER = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")

# Each shop's part: its source, destinations and route. The noisy shop's CRMs take 64 requests at
# once (more than the engine's 32 slots), as a shop that raised its CRM's concurrency would.
BODY = "'{\"id\": \"{{ data.id }}\", \"sent_at\": \"{{ data.sent_at }}\"}'"
PARTS = {
    "quiet": {"destinations": {"crm": '{type: http, url: "{receiver}/quiet"}'}},
    "noisy": {"destinations": {"crm": '{type: http, url: "{receiver}/noisy", concurrency: 64}', "parado": '{type: http, url: "{receiver}/hang", timeout: 5s, concurrency: 64}'}},
}


# --------------------------------------------------------------------------- the receiver


def run_receiver(port: int) -> None:
    """The receiver (a process of its own): /quiet notes each order's latency, /noisy answers in
    NOISY_ANSWER_MS, /hang never answers (the gateway's timeout ends each request)."""
    from aiohttp import web

    latencies: list[float] = []
    seen: set[str] = set()
    counts = {"quiet": 0, "noisy": 0, "hang": 0}

    async def quiet(request: web.Request) -> web.Response:
        order = json.loads(await request.read())
        latencies.append(time.time() - float(order["sent_at"]))
        seen.add(order["id"])
        counts["quiet"] += 1
        return web.Response(text="ok")

    async def noisy(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(NOISY_ANSWER_MS / 1000)
        counts["noisy"] += 1
        return web.Response(text="ok")

    async def hang(request: web.Request) -> web.Response:
        counts["hang"] += 1
        await asyncio.sleep(3600)
        return web.Response(text="late")

    async def report(request: web.Request) -> web.Response:
        return web.json_response({"latencies": latencies, "distinct": len(seen), **counts})

    app = web.Application()
    app.add_routes([web.post("/quiet", quiet), web.post("/noisy", noisy), web.post("/hang", hang), web.get("/report", report)])
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, shutdown_timeout=1)  # the hung requests end with it


# --------------------------------------------------------------------------- the gateway


def write_project(folder: Path, receiver: str, shops: bool) -> Path:
    """Each shop in routes.d/<shop>.yaml, or (shops=False) both in one routes.yaml, as a gateway
    without shops would hold them: the same sources, destinations and routes."""
    (folder / "routes.d").mkdir(parents=True, exist_ok=True)
    main = "version: 1\nsettings: {egress_allow: [127.0.0.0/8]}\n"
    if shops:
        for shop in PARTS:
            (folder / "routes.d" / f"{shop}.yaml").write_text("version: 1\n" + _sections([shop], receiver, prefixed=False))
        (folder / "routes.yaml").write_text(main + "sources: {}\n")
    else:
        (folder / "routes.yaml").write_text(main + _sections(list(PARTS), receiver, prefixed=True))
    return folder / "routes.yaml"


def _sections(shops: list[str], receiver: str, prefixed: bool) -> str:
    """sources, destinations and routes of these shops; `prefixed` names each shop's destinations
    and routes apart (quiet-crm, noisy-crm) when they share one file."""
    def name(shop: str, local: str) -> str:
        return f"{shop}-{local}" if prefixed else local

    sources = "".join(f"  go-{shop}: {{token: {TOKEN}, dedupe: false}}\n" for shop in shops)
    destinations = "".join(f"  {name(shop, local)}: {spec.replace('{receiver}', receiver)}\n" for shop in shops for local, spec in PARTS[shop]["destinations"].items())
    routes = "".join(
        f"  - name: {name(shop, 'pedido')}\n    source: go-{shop}\n    when: {{event_id: ORDER_CREATED}}\n    send:\n"
        + "".join(f"      - {{to: {name(shop, local)}, body: {BODY}}}\n" for local in PARTS[shop]["destinations"])
        for shop in shops
    )
    return f"sources:\n{sources}destinations:\n{destinations}routes:\n{routes}"


def order(shop: str, number: int) -> dict[str, object]:
    return {"event_id": "ORDER_CREATED", "data": {"id": f"{shop}-{number}", "code": f"{number:010d}", "status": 1, "sent_at": f"{time.time():.6f}"}}


def store_backlog(routes: Path, database_url: str, orders: int) -> None:
    """The noisy shop's backlog, stored through the gateway's own ingest (routing, rendering,
    one transaction per event), before serve starts."""
    from gateway.config import load_config
    from gateway.ingest import accept
    from gateway.store import migrate, open_store

    async def fill() -> None:
        await migrate(database_url)
        config = load_config(routes)
        store = open_store(database_url)
        await store.open()
        try:
            for start in range(0, orders, 500):
                batch = [accept(config, store, "go-noisy", json.dumps(e).encode(), e, time.time()) for e in (order("noisy", n) for n in range(start, min(orders, start + 500)))]
                await asyncio.gather(*batch)
        finally:
            await store.close()

    asyncio.run(fill())


def pending(database_url: str, destination_prefix: str) -> int:
    """Deliveries not yet at their end whose destination starts with the prefix (noisy/crm, noisy-crm)."""
    query = "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending') AND destination LIKE %s"
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url[len("sqlite:///"):]) as db:
            return int(db.execute(query.replace("%s", "?"), (destination_prefix + "%",)).fetchone()[0])
    import psycopg

    with psycopg.connect(database_url) as db:
        return int(db.execute(query, (destination_prefix + "%",)).fetchone()[0])


async def post_orders(url: str, shop: str, rate: float, seconds: float, first: int = 0) -> tuple[int, int]:
    """GO's orders at a steady rate (each on time, whatever the answers take); (posted, accepted)."""
    accepted = 0
    # Idle connections dropped after 2 s, before uvicorn's keep-alive of 5 s closes them under a request
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(keepalive_expiry=2)) as client:
        async def post(number: int) -> None:
            nonlocal accepted
            answer = await client.post(f"{url}/hooks/go-{shop}?token={TOKEN}", json=order(shop, number))
            accepted += answer.status_code == 202

        started, tasks = time.monotonic(), []
        total = int(rate * seconds)
        for n in range(total):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(post(first + n)))
        await asyncio.gather(*tasks)
    return total, accepted


def run_pass(folder: Path, database_url: str, receiver_port: int, flood: bool, shops: bool, first: int) -> dict[str, float]:
    """One pass on a fresh database; quiet orders numbered from `first` (new to the receiver)."""
    routes = write_project(folder, f"http://127.0.0.1:{receiver_port}", shops)
    if flood:
        store_backlog(routes, database_url, BACKLOG // 2)
    backlog_at_start = pending(database_url, "noisy") if flood else 0
    before = httpx.get(f"http://127.0.0.1:{receiver_port}/report").json()
    port = free_port()
    with open(folder / "gateway.log", "ab") as log:
        gateway = subprocess.Popen([PYTHON, "-m", "gateway", "serve", "--config", str(routes), "--db", database_url, "--port", str(port)], cwd=folder, stdout=log, stderr=log)
        try:
            wait_up(f"http://127.0.0.1:{port}/healthz", timeout=60)
            url = f"http://127.0.0.1:{port}"

            async def load() -> tuple[tuple[int, int], tuple[int, int]]:
                quiet = post_orders(url, "quiet", QUIET_RATE, QUIET_SECONDS, first=first)
                noisy = post_orders(url, "noisy", NOISY_RATE, QUIET_SECONDS, first=BACKLOG) if flood else asyncio.sleep(0, (0, 0))
                return await asyncio.gather(quiet, noisy)  # type: ignore[return-value]

            (posted, accepted), (noisy_posted, noisy_accepted) = asyncio.run(load())
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                after = httpx.get(f"http://127.0.0.1:{receiver_port}/report").json()
                if after["quiet"] - before["quiet"] >= accepted:
                    break
                time.sleep(0.2)
            backlog_at_end = pending(database_url, "noisy")
        finally:
            gateway.terminate()
            gateway.wait(60)
    latencies = sorted(after["latencies"][len(before["latencies"]):])
    return {
        "posted": posted, "accepted": accepted, "delivered": after["quiet"] - before["quiet"], "distinct": after["distinct"] - before["distinct"],
        "p50": statistics.median(latencies) * 1000, "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000, "max": latencies[-1] * 1000,
        "noisy_posted": noisy_posted, "noisy_accepted": noisy_accepted, "backlog_start": backlog_at_start, "backlog_end": backlog_at_end,
        "noisy_sent": after["noisy"] - before["noisy"], "hung": after["hang"] - before["hang"],
    }


# --------------------------------------------------------------------------- the run


def database_for(kind: str, folder: Path, name: str, schemas: list[str]) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / f'{name}.db'}"
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    schemas.append(schema)
    return f"{SERVER}{'&' if '?' in SERVER else '?'}options=-csearch_path%3D{schema}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)  # the receiver's own process
    args = parser.parse_args()
    if args.receiver:
        run_receiver(args.receiver)
        return
    receiver_port = free_port()
    receiver = subprocess.Popen([PYTHON, __file__, "--receiver", str(receiver_port)])
    schemas: list[str] = []
    rows = {}
    try:
        wait_up(f"http://127.0.0.1:{receiver_port}/report")
        with tempfile.TemporaryDirectory() as name:
            for number, (label, flood, shops) in enumerate((("alone", False, True), ("flood", True, True), ("no shops", True, False))):
                folder = Path(name) / label.replace(" ", "-")
                folder.mkdir()
                rows[label] = run_pass(folder, database_for(args.db, folder, "gw", schemas), receiver_port, flood, shops, first=number * 1_000_000)
    finally:
        receiver.terminate()
        receiver.wait(10)
        if schemas:
            import psycopg

            with psycopg.connect(SERVER, autocommit=True) as db:
                for schema in schemas:
                    db.execute(f"DROP SCHEMA {schema} CASCADE")
    report(args.db, rows)


def report(kind: str, rows: dict[str, dict[str, float]]) -> None:
    print(f"{kind}; quiet shop: {QUIET_RATE} orders/s for {QUIET_SECONDS} s; noisy shop: {BACKLOG:,} deliveries pending at start, {NOISY_RATE} orders/s "
          f"during the pass, half to a CRM answering in {NOISY_ANSWER_MS} ms, half to one that never answers (timeout 5 s)")
    print(f"{'pass':8} {'posted':>7} {'accepted':>9} {'delivered':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   noisy shop")
    for label, r in rows.items():
        noisy = (f"backlog {r['backlog_start']:,.0f} -> {r['backlog_end']:,.0f}; {r['noisy_accepted']:.0f}/{r['noisy_posted']:.0f} accepted; "
                 f"{r['noisy_sent']:.0f} answered, {r['hung']:.0f} timed out") if r["noisy_posted"] else "-"
        print(f"{label:8} {r['posted']:7.0f} {r['accepted']:9.0f} {r['delivered']:10.0f} {r['p50']:8.1f} {r['p99']:8.1f} {r['max']:8.1f}   {noisy}")
    for label in ("flood", "no shops"):
        print(f"quiet p99 {label} / alone: {rows[label]['p99'] / rows['alone']['p99']:.2f}; p50: {rows[label]['p50'] / rows['alone']['p50']:.2f}")
    wrong = [label for label, r in rows.items() if not r["posted"] == r["accepted"] == r["delivered"] == r["distinct"]]
    wrong += [f"{label} (the noisy shop's backlog was not there, or nothing of it was delivered)" for label, r in rows.items() if r["noisy_posted"] and (r["noisy_sent"] == 0 or r["backlog_start"] < BACKLOG)]
    print("every quiet order posted was accepted, stored and delivered once" if not wrong else f"MISMATCH in: {', '.join(wrong)}")
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
