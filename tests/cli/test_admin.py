"""Operator commands on a real database: events, show, erase, purge, replay selection."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from gateway.store import open_store
from gateway.store.base import PENDING, AttemptResult, NewDelivery, NewEvent
from tests.conftest import Project

BODY = '{"event_id": "ORDER_CREATED", "data": {"id": "1", "user": {"email": "ana@cliente.com.br"}}}'


def seed(database: Path) -> None:
    """Two events: one old and finished, one recent with a dead delivery."""

    async def run() -> None:
        store = open_store(f"sqlite:///{database}")
        await store.open()
        old, recent = time.time() - 40 * 86400, time.time() - 60
        await store.add_event(NewEvent("old", "go", "ORDER_CREATED", BODY, old, "v1", (NewDelivery("d-old", "r", "sink", "{}", PENDING),)))
        await store.add_event(NewEvent("new", "go", "ORDER_CANCEL", BODY, recent, "v1", (NewDelivery("d-new", "r", "sink", "{}", PENDING),)))
        for delivery, outcome in (("d-old", "delivered"), ("d-new", "dead")):
            await store.claim_due(time.time(), {"sink": 10}, 30)
            await store.record_attempt(AttemptResult(delivery, time.time(), 5.0, outcome, 200 if outcome == "delivered" else 400), time.time())
        await store.close()

    asyncio.run(run())


def test_events_list_show_erase_purge_and_replay(project: Project) -> None:
    database = project.root / "data" / "gateway.db"
    seed(database)
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{database}"}
    listed = project.gateway("events", env={**env, "COLUMNS": "60"})
    assert listed.returncode == 0 and "ORDER_CANCEL" in listed.stdout and "ORDER_CREATED" in listed.stdout
    full_id = "0123456789abcdef0123456789abcdef"
    asyncio.run(_add_plain_event(database, full_id))
    assert full_id in project.gateway("events", env={**env, "COLUMNS": "60"}).stdout  # never cut, even when narrow

    shown = json.loads(project.gateway("events", "show", "new", "--json", env=env).stdout)
    assert shown["deliveries"][0]["status"] == "dead" and shown["deliveries"][0]["attempts_log"][0]["status_code"] == 400

    replayed = project.gateway("replay", "--destination", "other", env=env)
    assert "0 deliveries queued again" in replayed.stdout
    replayed = project.gateway("replay", "--since", "1h", env=env)
    assert "1 delivery queued again" in replayed.stdout

    erased = project.gateway("events", "erase", "new", env=env)
    assert erased.returncode == 0
    after = json.loads(project.gateway("events", "show", "new", "--json", env=env).stdout)
    assert after["body"] is None and after["deliveries"][0]["body"] is None
    assert "ana@cliente.com.br" not in project.gateway("events", "show", "new", env=env).stdout

    purged = project.gateway("purge", "--older-than", "30d", env=env)
    assert "purged 1 event older than 30d" in purged.stdout
    assert project.gateway("events", "show", "old", env=env).returncode == 1

    bad = project.gateway("purge", "--older-than", "30 d", env=env)
    assert bad.returncode != 0 and "has spaces" in bad.stderr + bad.stdout
    missing = project.gateway("events", "show", "nope", env=env)
    assert missing.returncode == 1 and "no event with id nope" in missing.stderr


async def _add_plain_event(database: Path, event_id: str) -> None:
    store = open_store(f"sqlite:///{database}")
    await store.open()
    await store.add_event(NewEvent(event_id, "go", "ORDER_CREATED", BODY, time.time(), "v1"))
    await store.close()


def test_replay_of_100000_dead_deliveries_runs_in_bounded_memory(tmp_path: Path) -> None:
    """Replay reads the selection page by page: its peak memory does not grow with the number
    of deliveries (100,000 bodies of 1 KB would be ~100 MB held at once)."""
    import sqlite3
    import tracemalloc

    from rich.console import Console

    from gateway.cli.admin import replay
    from gateway.store import DeliveryFilter

    database = tmp_path / "gateway.db"
    url = f"sqlite:///{database}"

    async def migrate() -> None:
        store = open_store(url)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    body, count = "x" * 1024, 100_000
    with sqlite3.connect(database) as db:
        db.executemany("INSERT INTO events (id, source, event_type, body, received_at, config_version) VALUES (?, 'go', 'ORDER_CREATED', '{}', 1, 'v1')", ((f"e{n:06d}",) for n in range(count)))
        db.executemany(
            "INSERT INTO deliveries (id, event_id, route, destination, body, status, created_at, updated_at) VALUES (?, ?, 'r', 'sink', ?, 'dead', 1, 1)",
            ((f"d{n:06d}", f"e{n:06d}", body) for n in range(count)),
        )

    async def replay_all() -> tuple[int, int]:
        store = open_store(url)
        await store.open()
        try:
            tracemalloc.start()
            replayed = await replay(store, DeliveryFilter(), Console(quiet=True))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            return replayed, peak
        finally:
            await store.close()

    replayed, peak = asyncio.run(replay_all())
    assert replayed == count
    assert peak < 10 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall() == [("pending", count)]


def test_events_show_their_delivery_statuses_and_deliveries_lists_what_needs_attention(project: Project) -> None:
    """`gateway events` used to show no delivery status: a dead or shadowed delivery was found
    only by opening every event."""
    database = project.root / "data" / "gateway.db"
    seed(database)
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{database}"}
    listed = project.gateway("events", env=env).stdout.splitlines()
    assert any(line.startswith("new ") and line.endswith("1 dead") for line in listed), listed
    assert any(line.startswith("old ") and line.endswith("1 delivered") for line in listed), listed
    dead_only = project.gateway("events", "--status", "dead", env=env).stdout
    assert "new " in dead_only and "old " not in dead_only
    assert "no events match" in project.gateway("events", "--destination", "other", env=env).stdout
    assert "old " not in project.gateway("events", "--since", "1d", env=env).stdout
    attention = project.gateway("deliveries", env=env)
    assert attention.returncode == 0
    lines = attention.stdout.splitlines()
    assert lines[0].startswith("d-new ") and "dead" in lines[0] and "event new" in lines[0] and "1 attempt " in lines[0] + " "
    assert "HTTP 400" in lines[1]
    assert "d-old" in project.gateway("deliveries", "--status", "delivered", env=env).stdout
