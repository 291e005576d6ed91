"""bench/peers.sh's helpers: check what the gateway stored, prefill a backlog, time its drain,
and sum a run up against issue #14's targets, and several runs (passes) against issue #23's.

    peers.py stored NAME DB RESULTS       events stored vs requests accepted (exit 1 on a loss)
    peers.py prefill DB COUNT             COUNT events with one pending delivery each, to `sink`
    peers.py drain NAME DB COUNT SINK_LOG RESULTS READY_URL PID SINK_LINES_BEFORE
    peers.py summary RESULTS              the ratios, as Markdown
    peers.py passes RESULTS...            issue #23's targets, one column per pass, the worst decides
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import time
import uuid
from pathlib import Path

import psutil
from bench_ingest import CONNECTIONS, wait_up, wrk_at_rate

from gateway.store.base import PENDING, NewDelivery, NewEvent
from gateway.store.sqlite import SQLiteStore

KIT = Path(__file__).resolve().parents[1].parent / "shared" / "bench-peers"
ROUTE, DESTINATION = "pedido-para-o-sink", "sink"  # as in the kit's gateway/routes.yaml


def rows(results: str) -> list[dict]:
    return [json.loads(line) for line in Path(results).read_text().splitlines() if line.strip()]


def append(results: str, row: dict) -> None:
    with open(results, "a") as out:
        out.write(json.dumps(row) + "\n")


def stored(name: str, db: str, results: str) -> int:
    """Every accepted request is an event in the database. wrk does not count the requests in
    flight when it stops (the server stored them), hence the margin above, never below."""
    measured = [r for r in rows(results) if r.get("name") == name and "accepted_total" in r]
    accepted = sum(r["accepted_total"] for r in measured) + 1  # + the kit's probe
    in_flight = sum(2 * r["conc"] for r in measured)  # at most one per connection, warm-up and run
    with sqlite3.connect(db) as c:
        events = c.execute("SELECT count(*) FROM events WHERE config_version != 'prefill'").fetchone()[0]
        statuses = dict(c.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
    ok = accepted <= events <= accepted + in_flight
    append(results, {"name": name, "kind": "stored", "events": events, "accepted": accepted, "deliveries": statuses, "ok": ok})
    print(f"   {name}: {events:,} events stored for {accepted:,} accepted requests; deliveries {statuses}; {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def prefill(db: str, count: int) -> int:
    """A database holding `count` events, each with one delivery pending to the sink, stored
    through the gateway's own store (as ingest stores them)."""
    body = (KIT / "order_created.json").read_text()
    event = json.loads(body)

    async def run() -> None:
        store = SQLiteStore(db)
        await store.open()
        now = time.time()
        for start in range(0, count, 1000):
            batch = []
            for n in range(start, min(count, start + 1000)):
                event["data"]["id"] = f"prefill-{n}"
                delivery = NewDelivery(uuid.uuid4().hex, ROUTE, DESTINATION, json.dumps({"text": f"Pedido {n}"}), PENDING)
                batch.append(store.add_event(NewEvent(uuid.uuid4().hex, "go", "ORDER_CREATED", json.dumps(event), now, "prefill", (delivery,))))
            await asyncio.gather(*batch)
        await store.close()

    started = time.monotonic()
    asyncio.run(run())
    print(f"   prefilled {db}: {count:,} pending deliveries in {time.monotonic() - started:.1f} s")
    return 0


def drain(name: str, db: str, count: int, sink_log: str, results: str, ready_url: str, pid: int, sink_before: int) -> int:
    """Time from the gateway answering to the last of `count` stored deliveries delivered, and the
    peak RSS of all its processes meanwhile (the backlog is in the database, the claims in memory).
    `sink_before`: the sink's log lines before the gateway started (it delivers before it answers)."""
    wait_up(ready_url, timeout=60)
    started = time.monotonic()
    delivered, rss_peak_kb = 0, 0
    with sqlite3.connect(db, timeout=30) as c:
        while time.monotonic() - started < 180 and delivered < count:
            time.sleep(0.25)
            rss_peak_kb = max(rss_peak_kb, _tree_rss_kb(pid))
            delivered = c.execute("SELECT count(*) FROM deliveries WHERE status = 'delivered'").fetchone()[0]
    seconds = time.monotonic() - started
    settled = time.monotonic() + 5  # nginx logs a request once it has answered it
    while (arrived := _lines(sink_log) - sink_before) < delivered and time.monotonic() < settled:
        time.sleep(0.1)
    row = {"name": name, "kind": "drain", "backlog": count, "delivered": delivered, "arrived": arrived, "seconds": round(seconds, 2), "per_s": round(delivered / seconds, 1), "rss_peak_kb": rss_peak_kb}
    append(results, row)
    print(f"   {name}: {delivered:,} of {count:,} delivered ({arrived:,} arrived at the sink) in {seconds:.1f} s = {row['per_s']:,}/s; RSS peak {rss_peak_kb / 1024:.1f} MiB")
    return 0 if delivered == count else 1


def _tree_rss_kb(root: int) -> int:
    """Resident memory of `root` and every process under it, in KiB."""
    try:
        top = psutil.Process(root)
        tree = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss // 1024
    return total


def half(name: str, db: str, url: str, ready_url: str, results: str) -> int:
    """`serve --no-deliver` at half the rate its saturated row reached: Poisson arrivals over the
    32 connections (bench_ingest.wrk_at_rate), then every request wrk completed (its two
    calibration runs included) counted against the events stored."""

    saturated = next(r for r in rows(results) if r.get("name") == "gateway-no-deliver" and "rps" in r)["rps"]
    wait_up(ready_url, timeout=60)
    measured = wrk_at_rate(url, saturated / 2)
    with sqlite3.connect(db) as c:
        events = c.execute("SELECT count(*) FROM events").fetchone()[0]
    sent = int(measured["requests_total"])
    in_flight = 3 * CONNECTIONS  # at most one per connection when each of the three runs stops
    ok = measured["errors_total"] == 0 and sent <= events <= sent + in_flight
    row = {"name": name, "kind": "half", "offered": saturated / 2, "rps": measured["rps"], "p50_ms": measured["p50"], "p99_ms": measured["p99"], "sent": sent, "events": events, "ok": ok}
    append(results, row)
    print(f"   {name}: offered {saturated / 2:,.0f}/s, got {measured['rps']:,.0f}/s, p50 {measured['p50']:.2f} ms, p99 {measured['p99']:.2f} ms; "
          f"{events:,} events stored for {sent:,} requests completed: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def _lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def summary(results: str) -> int:
    """The ratios issue #14 asks for, each beside its target."""
    found = rows(results)
    load = {r["name"]: r for r in found if "rps" in r}
    extra = {(r["name"], r["kind"]): r for r in found if r.get("kind")}
    lines = ["", "| measure | value | target | met |", "|---|---:|---|---|"]

    def add(label: str, value: float | None, target: str, met: bool | None, unit: str = "") -> None:
        shown = "-" if value is None else f"{value:,.2f}{unit}"
        lines.append(f"| {label} | {shown} | {target} | {'-' if met is None else ('yes' if met else '**no**')} |")

    serve, quiet, backlog = load.get("gateway-serve"), load.get("gateway-no-deliver"), load.get("gateway-no-deliver-backlog")
    nodered, bare = load.get("nodered-sync"), load.get("litestar-uvicorn-1w")
    if serve and nodered:
        ratio = serve["forwarded_per_s"] / max(nodered["forwarded_per_s"], 1e-9)
        add("serve forwarded/s during load ÷ Node-RED's", ratio, "≥ 1.0", ratio >= 1.0)
    if serve:
        stored = extra.get(("gateway-serve", "stored"), {})
        drained = serve.get("forwarded_total", 0) >= stored.get("events", 0) - 1  # the probe's delivery counts too
        add("serve: forwarded after the drain ÷ events stored", serve.get("forwarded_total", 0) / max(stored.get("events", 1), 1), "1.0 within 20 s", drained and serve["drain_s"] <= 20)
        add("serve p99 ms", serve["p99_ms"], "≤ 25", serve["p99_ms"] <= 25)
        add("serve RSS peak MiB (all processes)", (serve.get("rss_peak_kb") or 0) / 1024, "< 200", (serve.get("rss_peak_kb") or 0) / 1024 < 200)
    if quiet and bare:
        ratio = quiet["rps"] / bare["rps"]
        add("serve --no-deliver req/s ÷ bare Litestar's", ratio, "≥ 0.6", ratio >= 0.6)
        add("serve --no-deliver p99 ms", quiet["p99_ms"], "≤ 15", quiet["p99_ms"] <= 15)
    half_row = extra.get(("gateway-no-deliver-half", "half"))
    if half_row:
        add(f"serve --no-deliver at half its rate ({half_row['rps']:,.0f} req/s): p99 ms", half_row["p99_ms"], "< 10", half_row["p99_ms"] < 10 and half_row["ok"])
    if quiet and backlog:
        ratio = backlog["rps"] / quiet["rps"]
        add("ingest with the backlog pending ÷ on an empty database", ratio, "≥ 0.8", ratio >= 0.8)
    drain_row = extra.get(("gateway-drain", "drain"))
    if drain_row:
        add(f"drain of {drain_row['backlog']:,} stored deliveries, per s", drain_row["per_s"], "≥ 1,000", drain_row["per_s"] >= 1000 and drain_row["delivered"] == drain_row["backlog"])
    checks = [r for r in found if r.get("kind") == "stored"]
    checks += [{**r, "accepted": r["sent"]} for r in found if r.get("kind") == "half"]
    lines.append("")
    lines += [f"- {r['name']}: {r['events']:,} events stored, {r['accepted']:,} requests accepted (+ up to one in flight per connection at wrk's stop): {'OK' if r['ok'] else 'MISMATCH'}" for r in checks]
    print("\n".join(lines))
    return 0


# Issue #23's targets: (label, what to read from a pass, the test). The worst pass decides.
ROUND_TWO = (
    ("serve forwarded/s during load ÷ Node-RED's", "forward_ratio", "≥ 2.0", lambda v: v >= 2.0),
    ("serve forwarded after the 20 s drain ÷ accepted", "drained", "≥ 0.99", lambda v: v >= 0.99),
    ("serve --no-deliver req/s ÷ bare Litestar's", "ingest_ratio", "≥ 0.75", lambda v: v >= 0.75),
    ("serve --no-deliver p99 ms", "ingest_p99", "≤ 10", lambda v: v <= 10),
    ("serve p99 ms", "serve_p99", "≤ 15", lambda v: v <= 15),
    ("RSS MiB of all processes draining 100,000 pending", "backlog_rss", "< 200", lambda v: v < 200),
    ("events stored == requests accepted, every gateway row", "counted", "yes", lambda v: v == 1),
)


def pass_figures(results: str) -> dict[str, float]:
    """One pass's figures for ROUND_TWO."""
    found = rows(results)
    load = {r["name"]: r for r in found if "rps" in r}
    extra = {(r["name"], r["kind"]): r for r in found if r.get("kind")}
    figures: dict[str, float] = {}
    serve, quiet, nodered, bare = (load.get(n) for n in ("gateway-serve", "gateway-no-deliver", "nodered-sync", "litestar-uvicorn-1w"))
    if serve and nodered:
        figures["forward_ratio"] = serve["forwarded_per_s"] / max(nodered["forwarded_per_s"], 1e-9)
    if serve and ("gateway-serve", "stored") in extra:
        accepted = extra[("gateway-serve", "stored")]["accepted"]
        figures["drained"] = serve.get("forwarded_total", 0) / max(accepted, 1)  # the kit counts forwards for at most 20 s after the load
        figures["serve_p99"] = serve["p99_ms"]
    if quiet and bare:
        figures["ingest_ratio"] = quiet["rps"] / bare["rps"]
        figures["ingest_p99"] = quiet["p99_ms"]
    if ("gateway-drain", "drain") in extra and extra[("gateway-drain", "drain")].get("rss_peak_kb"):
        figures["backlog_rss"] = extra[("gateway-drain", "drain")]["rss_peak_kb"] / 1024
    checks = [r["ok"] for r in found if r.get("kind") in ("stored", "half")]
    if checks:
        figures["counted"] = 1.0 if all(checks) else 0.0
    return figures


def passes(results: list[str]) -> int:
    """Issue #23's targets, a column per pass; met only when every pass meets it."""
    figures = [pass_figures(r) for r in results]
    head = "| target | " + " | ".join(f"pass {n}" for n in range(1, len(results) + 1)) + " | goal | met in every pass |"
    lines = ["", head, "|---|" + "---:|" * len(results) + "---|---|"]
    for label, key, goal, test in ROUND_TWO:
        values = [f.get(key) for f in figures]
        shown = ["-" if v is None else ("yes" if v == 1 else "**no**") if key == "counted" else f"{v:,.2f}" for v in values]
        met = all(v is not None and test(v) for v in values)
        lines.append(f"| {label} | " + " | ".join(shown) + f" | {goal} | {'yes' if met else '**no**'} |")
    print("\n".join(lines))
    return 0


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "stored":
        return stored(args[0], args[1], args[2])
    if command == "prefill":
        return prefill(args[0], int(args[1]))
    if command == "drain":
        return drain(args[0], args[1], int(args[2]), args[3], args[4], args[5], int(args[6]), int(args[7]))
    if command == "half":
        return half(args[0], args[1], args[2], args[3], args[4])
    if command == "summary":
        return summary(args[0])
    if command == "passes":
        return passes(args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
