"""The console's pages with 1,000,000 stored events (issues #17 and #26: each under 300 ms).

Fills a SQLite database through the store (1,000,000 events over the last 7 days, each with one
delivery: 90% delivered, 8% dead, 2% failed), starts a real `gateway serve --no-deliver` on it
with an admin token, logs in as a browser would and times each page and filter, and the admin
API's JSON beside them. Each timing is checked for what it claims: the first page lists 50
events, a search by `data.code` finds exactly the one event that has it (the middle one, through
the code index), a text search's first page reads one window (100,000 events) and says how far
back it read, and following its pages finds that same event; the database holds every event.

    .venv/bin/python bench/bench_console.py [--events 1000000] [--repeat 20]
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
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import free_port, wait_up  # noqa: E402

from gateway.store.base import DEAD, DELIVERED, FAILED, NewDelivery, NewEvent, new_id  # noqa: E402
from gateway.store.sqlite import SQLiteStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOKEN = "token-do-benchmark-0123456789"
ROUTES = """
version: 1
sources: {go: {}}
destinations:
  crm: {type: http, url: "https://crm.example.com/pedidos"}
routes:
  - name: pedidos
    when: {event_id: [ORDER_CREATED, ORDER_CANCEL]}
    send: {to: crm, body: '{"pedido": "{{ data.code }}"}'}
"""


async def fill(database: Path, count: int) -> str:
    """Store `count` events; the data.code of one in the middle (the search target)."""
    store = SQLiteStore(str(database))
    await store.open()
    sample = json.loads((REPO / "examples" / "events" / "order_created.json").read_text())
    now, wanted = time.time(), ""
    batch: list[NewEvent] = []
    for n in range(count):
        event_type = "ORDER_CANCEL" if n % 10 == 0 else "ORDER_CREATED"
        code = f"{n:010d}"
        body = json.dumps({**sample, "event_id": event_type, "data": {**sample["data"], "id": str(n), "code": code}})
        status = DEAD if n % 100 < 8 else FAILED if n % 100 < 10 else DELIVERED
        received = now - 7 * 86400 * (count - n) / count
        delivery = NewDelivery(new_id(), "pedidos", "crm", '{"pedido": "x"}', status, "HTTP 400" if status == DEAD else None)
        batch.append(NewEvent(new_id(), "go", event_type, body, received, "v1", (delivery,), code=code))
        if n == count // 2:
            wanted = code
        if len(batch) == 1000:
            await asyncio.gather(*(store.add_event(e) for e in batch))
            batch = []
    await asyncio.gather(*(store.add_event(e) for e in batch))
    await store.close()
    return wanted


def timed(client: httpx.Client, path: str, repeat: int) -> tuple[list[float], str]:
    client.get(path)  # warm the page (templates compiled, SQLite pages cached), as a person's second look
    durations, text = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        durations.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        text = answer.text
    return durations, text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "routes.yaml").write_text(ROUTES)
        (root / "data").mkdir()
        database = root / "data" / "gateway.db"
        started = time.monotonic()
        code = asyncio.run(fill(database, args.events))
        stored = sqlite3.connect(database).execute("SELECT count(*) FROM events").fetchone()[0]
        assert stored == args.events, (stored, args.events)
        print(f"stored {stored:,} events in {time.monotonic() - started:.0f} s")
        port = free_port()
        env = {**os.environ, "GATEWAY_ADMIN_TOKEN": TOKEN}
        command = [sys.executable, "-m", "gateway", "serve", "--no-deliver", "--port", str(port), "--db", f"sqlite:///{database}"]
        server = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_up(f"http://127.0.0.1:{port}/readyz")
            report(port, code, args.repeat)
        finally:
            server.terminate()
            server.wait(timeout=40)


def report(port: int, code: str, repeat: int) -> None:
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as browser:
        assert browser.post("/console/login", data={"token": TOKEN}).status_code == 303
        first_page, text = timed(browser, "/console/events", repeat)
        rows = text.count("data-event-id=")
        assert rows == 50, rows
        oldest_shown = text.rsplit('data-event-id="', 1)[1].split('"', 1)[0]
        pages = {
            "events page (newest 50)": (first_page, rows),
            "next page (before=...)": _rows(browser, f"/console/events?before={oldest_shown}", repeat),
            "by type ORDER_CANCEL": _rows(browser, "/console/events?event_type=ORDER_CANCEL", repeat),
            "by status dead": _rows(browser, "/console/events?status=dead", repeat),
            "by data.code (1 match)": _rows(browser, f"/console/events?code={code}", repeat, expect=1),
            "text search, first page (one window)": _first_window(browser, f"/console/events?q=%22code%22:%20%22{code}%22", repeat),
            "text search, every page to its 1 match": _whole_search(browser, f"/console/events?q=%22code%22:%20%22{code}%22", repeat),
            "overview": (timed(browser, "/console", repeat)[0], None),
            "failures (dead, grouped)": (timed(browser, "/console/deliveries?status=dead", repeat)[0], None),
            "routes (24 h match counts)": (timed(browser, "/console/routes", repeat)[0], None),
        }
    with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        durations, text = timed(api, "/admin/api/events", repeat)
        pages["admin API /admin/api/events (JSON)"] = (durations, len(json.loads(text)["events"]))
    print(f"\n| page, with {repeat} requests each | rows | median ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|")
    for name, (durations, shown) in pages.items():
        ordered = sorted(durations)
        p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
        print(f"| {name} | {'' if shown is None else shown} | {statistics.median(ordered):.1f} | {p95:.1f} | {ordered[-1]:.1f} |")


def _first_window(client: httpx.Client, path: str, repeat: int) -> tuple[list[float], int]:
    """A text search's first page: one window read; the page says how far back (or holds the match)."""
    durations, text = timed(client, path, repeat)
    rows = text.count("data-event-id=")
    assert rows == 1 or 'id="searched-to"' in text, (path, rows)
    return durations, rows


def _whole_search(client: httpx.Client, path: str, repeat: int) -> tuple[list[float], str]:
    """Follow `next` from the first page until the match shows: the time of the whole search,
    and how many pages (windows) it took."""
    durations, pages = [], 0
    for _ in range(max(1, repeat // 5)):
        started, target, pages = time.perf_counter(), path, 0
        while True:
            text = client.get(target).text
            pages += 1
            if "data-event-id=" in text or pages > 100:
                break
            target = text.split('class="button" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        durations.append((time.perf_counter() - started) * 1000)
        assert text.count("data-event-id=") == 1, (target, pages)
    return durations, f"1 (page {pages})"


def _rows(client: httpx.Client, path: str, repeat: int, expect: int = 50) -> tuple[list[float], int]:
    durations, text = timed(client, path, repeat)
    rows = text.count("data-event-id=")
    assert rows == expect, (path, rows, expect)
    return durations, rows


if __name__ == "__main__":
    main()
