"""When no answer comes, the failure keeps its own name: connection refused, DNS failure, TLS
error, timeout. Each is provoked for real on 127.0.0.1 (a closed port, a name that does not
resolve, a self-signed certificate, a server that accepts and never answers) and read back from
the stored `last_error`, the metrics, and the console."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from gateway.admin.console import template_filters
from gateway.config import load_config
from gateway.delivery.client import delivery_client
from gateway.delivery.engine import DeliveryEngine
from gateway.delivery.metrics import DeliveryMetrics
from gateway.ingest import accept
from gateway.store.base import DeliveryRow
from gateway.store.memory import MemoryStore
from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, free_port

pytestmark = pytest.mark.anyio
ADMIN_TOKEN = "token-admin-de-teste-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def closed_port() -> int:
    """A port nothing listens on: bound once to find it free, then closed."""
    return free_port()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers (nor closes them) until the test ends."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_all() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_all, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    for connection in accepted:
        connection.close()
    server.close()


@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 whose certificate nobody signed."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def routes(url: str) -> str:
    return f"""
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: t0ken-de-teste, dedupe: false}}}}
destinations:
  destino: {{type: http, url: "{url}", timeout: 1s, retry: {{attempts: 3, first: 10s, max: 1h}}}}
routes:
  - name: tudo
    when: {{event_id: {{exists: true}}}}
    send: {{to: destino, body: '{{"id": "{{{{ data.id }}}}"}}'}}
"""


@asynccontextmanager
async def one_attempt(tmp_path: Path, url: str) -> AsyncIterator[tuple[DeliveryRow, str]]:
    """Store one event for `url`, make its first attempt; the delivery and the metrics."""
    (tmp_path / "routes.yaml").write_text(routes(url))
    config = load_config(tmp_path / "routes.yaml", {})
    store, metrics = MemoryStore(), DeliveryMetrics()
    await store.open()
    body = (EVENTS / "order_created.json").read_bytes()
    event_id = (await accept(config, store, "go", body, json.loads(body), 1_700_000_000.0)).id
    async with delivery_client(lambda: config.egress_allow) as client:
        engine = DeliveryEngine(store, lambda: config, client, metrics, concurrency=4, clock=lambda: 1_700_000_000.0)
        assert await engine.deliver_due() == 1
        await engine.stop(grace_seconds=10)
    stored = await store.get_event(event_id)
    assert stored is not None
    yield stored.deliveries[0], metrics.render().decode()
    await store.close()


def assert_named(delivery: DeliveryRow, metrics: str, name: str, failure: str) -> None:
    assert delivery.status == "pending" and delivery.attempts == 1  # retried later: every one of these is transient
    assert delivery.last_error is not None and delivery.last_error.startswith(f"{name}: "), delivery.last_error
    assert delivery.attempt_log[0].error == delivery.last_error
    assert f'gateway_delivery_failures_total{{destination="destino",failure="{failure}",tenant=""}} 1.0' in metrics
    assert metrics.count("gateway_delivery_failures_total{") == 1  # one name, not two


async def test_a_closed_port_is_connection_refused(tmp_path: Path) -> None:
    port = closed_port()
    async with one_attempt(tmp_path, f"http://127.0.0.1:{port}/in") as (delivery, metrics):
        assert_named(delivery, metrics, "connection refused", "connection_refused")
        assert f"127.0.0.1:{port}" in (delivery.last_error or "")


async def test_a_name_that_does_not_resolve_is_a_dns_failure(tmp_path: Path) -> None:
    async with one_attempt(tmp_path, "http://crm-que-nao-existe.invalid/in") as (delivery, metrics):
        assert_named(delivery, metrics, "DNS failure", "dns_failure")
        assert "crm-que-nao-existe.invalid does not resolve" in (delivery.last_error or "")


async def test_a_self_signed_certificate_is_a_tls_error(tmp_path: Path, self_signed_server: int) -> None:
    async with one_attempt(tmp_path, f"https://127.0.0.1:{self_signed_server}/in") as (delivery, metrics):
        assert_named(delivery, metrics, "TLS error", "tls_error")
        assert "self-signed certificate" in (delivery.last_error or "") or "self signed certificate" in (delivery.last_error or "")


async def test_a_server_that_never_answers_is_a_timeout(tmp_path: Path, silent_server: int) -> None:
    async with one_attempt(tmp_path, f"http://127.0.0.1:{silent_server}/in") as (delivery, metrics):
        assert_named(delivery, metrics, "timeout", "timeout")
        assert delivery.attempt_log[0].duration_ms < 2500  # the destination's 1 s, not the default 10 s


def test_the_console_names_each_failure_in_portuguese() -> None:
    failure_pt = template_filters()["failure_pt"]
    assert failure_pt("connection refused: nothing accepts connections at 127.0.0.1:9") == "Conexão recusada"
    assert failure_pt("DNS failure: the name x.invalid does not resolve") == "Endereço não encontrado (DNS)"
    assert failure_pt("TLS error: the certificate of 127.0.0.1:443 is not trusted") == "Erro de certificado (TLS)"
    assert failure_pt("timeout: no complete answer within 1 s; gave up after 3 attempts") == "Sem resposta a tempo"
    assert failure_pt("HTTP 400: campo inválido") == "" and failure_pt(None) == ""


def test_a_refused_connection_is_named_in_serve_metrics_and_console(tmp_path: Path) -> None:
    """Through `gateway serve`: last_error in the admin API, the metric, the console's event page."""
    Project(tmp_path).routes(routes(f"http://127.0.0.1:{closed_port()}/in"))
    gateway = GatewayProcess(tmp_path, {"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}).start()
    try:
        answer = gateway.post("/hooks/go?token=t0ken-de-teste", (EVENTS / "order_created.json").read_bytes())
        assert answer.status_code == 202
        event_id = answer.json()["id"]
        with httpx.Client(base_url=gateway.url(""), timeout=10) as client:
            delivery: dict[str, object] = {}
            for _ in range(100):  # the first attempt is at once; bounded wait for its record
                delivery = client.get(f"/admin/api/events/{event_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()["deliveries"][0]
                if delivery["attempts"]:
                    break
                threading.Event().wait(0.1)
            assert str(delivery["last_error"]).startswith("connection refused: nothing accepts connections at 127.0.0.1:")
            metrics = client.get("/metrics").text
            assert 'gateway_delivery_failures_total{destination="destino",failure="connection_refused",tenant=""} 1.0' in metrics
            assert client.post("/console/login", data={"token": ADMIN_TOKEN}).status_code == 303
            page = client.get(f"/console/events/{event_id}").text
            assert '<strong class="failure">Conexão recusada</strong>' in page
    finally:
        gateway.terminate()
