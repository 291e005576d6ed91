"""The ingest writer process of `gateway serve`: framing, restarts, and its life tied to serve's."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from gateway.service.child_process import Frames, Ready
from gateway.ingest import Accepted
from gateway.service.ingest_child import FromIngest, Refused, Stored, Submit
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Sink, alive

TOKEN = "token-de-teste-123"


def routes(sink: Sink) -> str:
    return f"""
    version: 1
    settings: {{egress_allow: [127.0.0.0/8]}}
    sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
    destinations:
      sink: {{type: http, url: "{sink.url()}"}}
    routes:
      - name: pedidos
        when: {{event_id: ORDER_CREATED}}
        send: {{to: sink, body: '{{"id": "{{{{ data.id }}}}"}}'}}
    """


def serve_with(project: Project, sink: Sink, **env: str) -> GatewayProcess:
    """`gateway serve` with one route that sends ORDER_CREATED events to `sink`."""
    project.routes(routes(sink))
    return GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN, **env}).start()


@pytest.fixture
def gateway(project: Project, sink: Sink) -> Iterator[GatewayProcess]:
    process = serve_with(project, sink)
    yield process
    process.kill()


def writer_pid(gateway: GatewayProcess) -> int:
    return gateway.child("gateway.service.ingest_child")


def order(number: str) -> bytes:
    event = json.loads((EVENTS / "order_created.json").read_text())
    event["data"]["id"] = number
    return json.dumps(event).encode()


def test_frames_come_back_whole_however_the_stream_is_cut() -> None:
    frames = Frames(msgspec.msgpack.Decoder(FromIngest))
    sent = [Ready("v1"), Stored(1, Accepted("a" * 32, 2, False, [("crm", "failed")])), Refused(2, "no"), Stored(3, Accepted("b" * 32, 0, True))]
    stream = b"".join(frames.frame(message) for message in sent)
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 12)))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        received = [message for piece in pieces for message in frames.feed(piece)]
        assert received == sent


def test_submit_carries_a_1_mib_body_intact() -> None:
    frames = Frames(msgspec.msgpack.Decoder(Submit))
    body = bytes(range(256)) * 4096
    (received,) = frames.feed(frames.frame(Submit(1, "go", body, 1.5)))
    assert received.body == body and received.received_at == 1.5


def test_serve_stores_events_through_its_writer_process(project: Project, sink: Sink) -> None:
    gateway = serve_with(project, sink, GATEWAY_LOG_LEVEL="debug")
    try:
        child = writer_pid(gateway)
        assert "gateway.service.ingest_child" in Path(f"/proc/{child}/cmdline").read_text()
        response = gateway.post(f"/hooks/go?token={TOKEN}", order("1"))
        assert response.status_code == 202, response.text
        assert sink.wait_for(1)[0].json() == {"id": "1"}
        assert "from go: 1 delivery" in gateway.log()  # the writer's log lines reach serve's log
    finally:
        gateway.kill()


def test_a_killed_writer_is_started_again_and_nothing_acknowledged_is_lost(gateway: GatewayProcess, sink: Sink) -> None:
    """Events posted while the writer is killed get 503 (GO sends them again) or 202; every
    202 is delivered."""
    first = writer_pid(gateway)
    acknowledged: list[str] = []
    refused: list[dict] = []
    statuses: list[int] = []
    stop = threading.Event()

    def post_continuously() -> None:
        with httpx.Client(timeout=30) as client:
            for number in range(100_000):
                if stop.is_set():
                    return
                response = client.post(gateway.url(f"/hooks/go?token={TOKEN}"), content=order(f"k{number}"))
                statuses.append(response.status_code)
                if response.status_code == 202:
                    acknowledged.append(f"k{number}")
                else:
                    refused.append({"status": response.status_code, **response.json()})

    def accepting_again() -> bool:
        """Refused at least once, then 20 posts in a row accepted."""
        return 503 in statuses and statuses[-20:] == [202] * 20 and statuses.index(503) < len(statuses) - 20

    sender = threading.Thread(target=post_continuously)
    sender.start()
    try:
        time.sleep(1.0)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not accepting_again():
            time.sleep(0.1)
    finally:
        stop.set()
        sender.join(60)
    assert accepting_again(), statuses[-30:]
    second = writer_pid(gateway)
    assert second != first and alive(second)
    assert refused, "posts during the restart should have been refused"
    assert all(r["status"] == 503 and r["error"] == "store_unavailable" and "send it again" in r["detail"] for r in refused), refused[:3]
    # An event the writer committed just before it was killed was answered 503 and is
    # delivered too (at-least-once), so wait for the acknowledged ids, not for a count.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not set(acknowledged) <= {r.json()["id"] for r in sink.received}:
        time.sleep(0.1)
    assert set(acknowledged) <= {r.json()["id"] for r in sink.received}
    assert "the ingest child exited" in gateway.log() and "running again" in gateway.log()


def test_the_children_end_with_serve_even_after_kill_9(gateway: GatewayProcess) -> None:
    """Only serve is killed, not its process group: its children see their stdin close."""
    children = [writer_pid(gateway), gateway.child("gateway.service.delivery_child")]
    assert gateway.process is not None
    os.kill(gateway.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and any(alive(child) for child in children):
        time.sleep(0.05)
    assert not any(alive(child) for child in children), "a child process outlived serve"


def test_sigterm_ends_serve_and_its_writer_cleanly(gateway: GatewayProcess) -> None:
    child = writer_pid(gateway)
    assert gateway.post(f"/hooks/go?token={TOKEN}", order("1")).status_code == 202
    assert gateway.terminate() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and alive(child):
        time.sleep(0.05)
    assert not alive(child)
    assert "Traceback" not in gateway.log()


def test_ctrl_c_to_the_process_group_does_not_drop_the_writer_first(gateway: GatewayProcess) -> None:
    """The writer ignores SIGINT and SIGTERM: serve decides when it stops, after its last answer."""
    child = writer_pid(gateway)
    os.kill(child, signal.SIGINT)
    os.kill(child, signal.SIGTERM)
    time.sleep(0.3)
    assert alive(child)
    assert gateway.post(f"/hooks/go?token={TOKEN}", order("2")).status_code == 202


def test_readyz_says_when_the_writer_is_restarting(gateway: GatewayProcess) -> None:
    os.kill(writer_pid(gateway), signal.SIGKILL)
    seen: list[tuple[int, str]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (seen and seen[-1][0] == 200 and any(code == 503 for code, _ in seen)):
        answer = httpx.get(gateway.url("/readyz"), timeout=5)
        seen.append((answer.status_code, answer.json().get("detail", "")))
        time.sleep(0.02)
    assert (503, "the ingest child is restarting") in seen, seen[:5]
    assert seen[-1][0] == 200
