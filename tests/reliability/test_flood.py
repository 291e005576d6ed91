"""A flood the store cannot keep up with: the HTTP process holds at most MAX_INGESTS_IN_FLIGHT
events, answers the rest 503 at once (GO sends them again), and its memory stays flat; every
202 is stored."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sqlite3

import httpx
import pytest

from gateway.service.app import MAX_INGESTS_IN_FLIGHT
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, rss_bytes

pytestmark = pytest.mark.slow
TOKEN = "token-de-teste-123"
FLOOD = MAX_INGESTS_IN_FLIGHT + 400


async def flood(url: str, first_id: int, answers: list[httpx.Response]) -> None:
    """FLOOD requests at once, each a new order, on as many connections."""
    body = json.loads((EVENTS / "order_created.json").read_text())
    limits = httpx.Limits(max_connections=FLOOD, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def one(number: int) -> None:
            body["data"]["id"] = str(number)
            answers.append(await client.post(url, content=json.dumps(body)))

        await asyncio.gather(*(one(first_id + n) for n in range(FLOOD)))


def test_a_flood_is_bounded_answered_503_beyond_the_bound_and_loses_nothing(project: Project) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * FLOOD:  # two ends of each connection in this machine, plus room
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * FLOOD), hard))
    project.routes(
        f"""
        version: 1
        sources: {{go: {{token: {TOKEN}, dedupe: false}}}}
        routes: []
        """
    )
    gateway = GatewayProcess(project.root).start()
    try:
        ingest_child = gateway.child("gateway.service.ingest_child")
        url = gateway.url(f"/hooks/go?token={TOKEN}")
        rss = [rss_bytes(gateway.process.pid)]  # type: ignore[union-attr]
        for round_number in range(2):  # the second flood finds the memory the first one left
            answers: list[httpx.Response] = []
            os.kill(ingest_child, signal.SIGSTOP)  # the store stops keeping up
            try:
                loop = asyncio.new_event_loop()
                flooding = loop.create_task(flood(url, round_number * FLOOD, answers))
                loop.run_until_complete(asyncio.wait_for(_until(lambda: len(answers) >= FLOOD - MAX_INGESTS_IN_FLIGHT), 60))
                refused = [a for a in answers if a.status_code == 503]
                assert len(refused) == FLOOD - MAX_INGESTS_IN_FLIGHT, [a.status_code for a in answers][:10]
                assert refused[0].json()["error"] == "busy" and refused[0].headers["retry-after"] == "1"
                rss.append(rss_bytes(gateway.process.pid))  # type: ignore[union-attr]
            finally:
                os.kill(ingest_child, signal.SIGCONT)
            loop.run_until_complete(asyncio.wait_for(flooding, 120))
            loop.close()
            statuses = sorted({a.status_code for a in answers})
            assert statuses == [202, 503], statuses
            assert sum(a.status_code == 202 for a in answers) == MAX_INGESTS_IN_FLIGHT
        with sqlite3.connect(project.root / "data" / "gateway.db") as db:
            assert db.execute("SELECT count(*) FROM events").fetchone() == (2 * MAX_INGESTS_IN_FLIGHT,)
        assert rss[2] - rss[1] < 15 * 1024 * 1024, [f"{r / 1e6:.0f} MB" for r in rss]  # flat: the second flood grew nothing much
        assert rss[1] - rss[0] < 60 * 1024 * 1024, [f"{r / 1e6:.0f} MB" for r in rss]
    finally:
        gateway.kill()


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.05)
