"""Several replicas on one PostgreSQL database (issue #15): none is a single point of failure."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Received, Sink
from tests.reliability.test_crash import routes  # one destination at the sink, short retries

pytestmark = pytest.mark.slow
TOKEN = "token-de-teste-123"
EVENTS_POSTED = 3000
HOLD_SECONDS = 0.01  # each delivery stays at the receiver this long: overlaps would show


def start_replicas(project: Project, database: str, count: int) -> list[GatewayProcess]:
    replicas = []
    for number in range(count):
        replica = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}, workers=16)
        replica.database = database
        replica.log_path = project.root / f"replica-{number}.log"
        replicas.append(replica.start())
    return replicas


def test_three_replicas_one_killed_midway_lose_nothing_and_never_send_twice_at_once(project: Project, postgres_url: str) -> None:
    """3,000 events spread over three replicas; one is killed -9 a third of the way in. Every
    event a replica acknowledged reaches the receiver; duplicates are counted and reported; no
    delivery is ever in flight twice at the same time (at the receiver and in the attempts)."""
    sink = Sink(lambda request, count: (200, {}, b"ok", HOLD_SECONDS))
    project.routes(routes(sink))
    replicas = start_replicas(project, postgres_url, 3)
    template = json.loads((EVENTS / "order_created.json").read_text())
    acknowledged: set[str] = set()
    lock = threading.Lock()
    
    clients = [httpx.Client(base_url=replica.url(""), timeout=30, limits=httpx.Limits(max_connections=16)) for replica in replicas]

    def post(number: int) -> None:
        if number == EVENTS_POSTED // 3:
            replicas[2].kill()  # mid-flood, mid-delivery: its claims stay behind it
        body = {**template, "data": {**template["data"], "id": f"pedido-{number}"}}
        try:
            response = clients[number % 3].post(f"/hooks/go?token={TOKEN}", json=body)
        except httpx.HTTPError:
            return  # not acknowledged: GO would send it again
        if response.status_code == 202:
            with lock:
                acknowledged.add(f"pedido-{number}")

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(post, range(EVENTS_POSTED)))
        posting = time.monotonic() - started
        assert len(acknowledged) > EVENTS_POSTED // 2
        deadline = time.monotonic() + 120  # the killed replica's claims come back after their lease (2 s + 15 s)
        while time.monotonic() < deadline and not acknowledged <= {r.json()["id"] for r in list(sink.received)}:
            time.sleep(0.25)
        received = list(sink.received)
        waiting = time.monotonic() - started - posting
    finally:
        for client in clients:
            client.close()
        for replica in replicas:
            replica.kill()
        sink.close()
    arrived = Counter(r.json()["id"] for r in received)
    lost = acknowledged - set(arrived)
    assert not lost, f"{len(lost)} acknowledged events never arrived, e.g. {sorted(lost)[:5]}"
    duplicates = {order: n for order, n in arrived.items() if n > 1}
    print(f"{len(acknowledged)} acknowledged in {posting:.1f} s, all {len(arrived)} arrived {waiting:.1f} s later, {sum(duplicates.values()) - len(duplicates)} duplicate arrivals")
    assert_never_twice_at_once(received)
    assert_attempts_never_overlap(postgres_url)


def assert_never_twice_at_once(received: list[Received]) -> None:
    """The same Idempotency-Key never arrives while an earlier request with it is still open."""
    by_key: dict[str, list[float]] = defaultdict(list)
    for request in received:
        by_key[request.headers["idempotency-key"]].append(request.at)
    for key, arrivals in by_key.items():
        arrivals.sort()
        for earlier, later in itertools.pairwise(arrivals):
            assert later - earlier >= HOLD_SECONDS * 0.9, f"delivery {key} arrived twice {later - earlier:.4f} s apart"


def assert_attempts_never_overlap(database: str) -> None:
    with psycopg.connect(database) as db:
        rows = db.execute("SELECT delivery_id, started_at, duration_ms FROM attempts ORDER BY delivery_id, started_at").fetchall()
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for delivery, started, duration_ms in rows:
        intervals[delivery].append((started, started + duration_ms / 1000))
    for delivery, spans in intervals.items():
        for (_, first_end), (second_start, _) in itertools.pairwise(spans):
            assert second_start >= first_end - 0.001, f"delivery {delivery} had two attempts at once"


def test_a_rate_limit_holds_for_the_cluster_while_three_replicas_drain_a_backlog(project: Project, postgres_url: str) -> None:
    """`rate: 5/s` with three replicas draining 40 stored deliveries: 5 a second on average for
    the cluster (not 15), never more than 10 in any one-second window. The bucket starts full,
    as a token bucket does: the first 5 go at once, the other 35 at 5 a second."""
    sink = Sink()
    project.routes(routes(sink).replace("concurrency: 8}", "concurrency: 8, rate: 5/s}"))
    storing = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN})
    storing.database, storing.start_args = postgres_url, ["--no-deliver"]
    storing.log_path = project.root / "storing.log"
    storing.start()
    template = json.loads((EVENTS / "order_created.json").read_text())
    try:
        for number in range(40):
            body = {**template, "data": {**template["data"], "id": f"pedido-{number}"}}
            assert storing.post(f"/hooks/go?token={TOKEN}", json.dumps(body)).status_code == 202
    finally:
        storing.terminate()
    replicas = start_replicas(project, postgres_url, 3)
    try:
        arrivals = sorted(r.at for r in sink.wait_for(40, timeout=60))
    finally:
        for replica in replicas:
            replica.kill()
        sink.close()
    average = (len(arrivals) - 5) / (arrivals[-1] - arrivals[0])  # after the first full bucket
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1) for start in arrivals)
    print(f"40 deliveries in {arrivals[-1] - arrivals[0]:.1f} s: {average:.2f}/s on average, at most {busiest} in one second")
    assert average <= 5 * 1.1 and busiest <= 10


def test_the_same_go_body_posted_to_two_replicas_at_the_same_instant_is_stored_once(project: Project, postgres_url: str) -> None:
    """GO (or a load balancer's retry) sends one event to two replicas at once: one 202, one
    "duplicate" naming the same stored event, twenty times over."""
    sink = Sink()
    project.routes(routes(sink))
    replicas = start_replicas(project, postgres_url, 2)
    template = json.loads((EVENTS / "order_created.json").read_text())
    try:
        with ThreadPoolExecutor(2) as pool:
            for number in range(20):
                body = json.dumps({**template, "data": {**template["data"], "id": f"pedido-{number}"}})
                barrier = threading.Barrier(2)

                def post(replica: GatewayProcess, body: str = body, barrier: threading.Barrier = barrier) -> httpx.Response:
                    barrier.wait(5)
                    return replica.post(f"/hooks/go?token={TOKEN}", body)

                answers = list(pool.map(post, replicas))
                assert sorted(a.status_code for a in answers) == [200, 202], [a.text for a in answers]
                assert answers[0].json()["id"] == answers[1].json()["id"]
                assert sorted(a.json()["duplicate"] for a in answers) == [False, True]
    finally:
        for replica in replicas:
            replica.kill()
        sink.close()
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 20
