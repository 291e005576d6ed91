"""Hostile input at the ingest endpoint: every bad token is 401, every bad body a 4xx with a
JSON reason, never a 5xx, and a valid event is accepted whatever its headers say."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, rss_bytes

TOKEN = "token-de-teste-123"
EVENT = (EVENTS / "order_created.json").read_bytes()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    project = Project(tmp_path_factory.mktemp("hostile"))
    project.routes(
        """
        version: 1
        sources: {go: {token: "${GO_WEBHOOK_TOKEN}", dedupe: false}}
        destinations: {erp: {type: http, url: "https://erp.example.com/in"}}
        routes:
          - name: tudo
            shadow: true
            when: {event_id: {exists: true}}
            send: {to: erp, body: "{{ event | tojson }}"}
        """
    )
    process = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    yield process
    process.kill()


@pytest.mark.parametrize(
    "query",
    ["", "?token=", "?token=token-de-teste", f"?token={TOKEN}x", "?token=" + "a" * 10_000, "?token=t\u043eken-de-teste-123",  # Cyrillic о
     f"?token={TOKEN}&token={TOKEN}", f"?token={TOKEN}&token=outro", "?Token=" + TOKEN, "?token=%00"],
    ids=["missing", "empty", "prefix", "longer", "10KB", "look-alike", "repeated", "repeated-different", "wrong-case-name", "nul"],
)
def test_bad_tokens_are_401(gateway: GatewayProcess, query: str) -> None:
    response = gateway.post(f"/hooks/go{query}", EVENT)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_token_in_a_bearer_header_with_a_wrong_query_token_is_refused(gateway: GatewayProcess) -> None:
    """The query string decides when present; a right header does not rescue a wrong query."""
    response = gateway.post("/hooks/go?token=errado", EVENT, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "invalid_json"),
        (b'{"event_id": "X", ' + b",".join(b'"k%d": 1' % i for i in range(120_000)) + b"}", "body_too_large"),
        (b'{"event_id": "X", "v": Infinity}', "invalid_json"),
        (b'{"event_id": "X", "v": -NaN}', "invalid_json"),
        (b'{"event_id": "caf\xe9"}', "invalid_json"),
        (b'{"\xe9', "invalid_json"),
        (b"   ", "invalid_json"),
        (b"null", "not_an_object"),
        (b'"ORDER_CREATED"', "not_an_object"),
        (b'{"event_id": ""}', "missing_event_id"),
        (b'{"event_id": ["ORDER_CREATED"]}', "missing_event_id"),
        (b'{"event_id": "X"} trailing', "invalid_json"),
    ],
    ids=["deep-array", "deep-object", "many-keys-over-limit", "infinity", "nan", "invalid-utf8", "invalid-utf8-at-end", "blank", "null", "string", "empty-id", "list-id", "trailing"],
)
def test_bad_bodies_are_4xx_with_a_reason(gateway: GatewayProcess, body: bytes, error: str) -> None:
    response = gateway.post(f"/hooks/go?token={TOKEN}", body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] == error


def test_deep_nesting_within_the_limit_is_refused_not_crashed(gateway: GatewayProcess) -> None:
    body = b'{"event_id": "X", "d": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    response = gateway.post(f"/hooks/go?token={TOKEN}", body)
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


def raw_request(gateway: GatewayProcess, head: bytes, body: bytes, read_timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=read_timeout) as connection:
        connection.sendall(head + body)
        connection.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_over_the_limit_without_content_length_is_413(gateway: GatewayProcess) -> None:
    """A chunked body that grows past 1 MiB is stopped at the limit."""
    def chunks() -> Iterator[bytes]:
        yield b'{"event_id": "X", "pad": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    response = httpx.post(gateway.url(f"/hooks/go?token={TOKEN}"), content=chunks(), timeout=30)
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"


def test_lying_content_length_is_never_a_5xx(gateway: GatewayProcess) -> None:
    short = raw_request(gateway, f"POST /hooks/go?token={TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n".encode(), EVENT)
    assert short.split(b" ", 2)[1].startswith(b"4"), short[:200]
    huge_claim = raw_request(gateway, f"POST /hooks/go?token={TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n".encode(), EVENT)
    assert huge_claim == b"" or huge_claim.split(b" ", 2)[1].startswith(b"4"), huge_claim[:200]
    assert httpx.get(gateway.url("/healthz")).status_code == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/html; charset=ISO-8859-1", "application/json; charset=utf-8"])
def test_valid_event_is_accepted_whatever_the_content_type(gateway: GatewayProcess, content_type: str | None) -> None:
    body = json.loads(EVENT)
    body["data"]["id"] = f"ct-{content_type}"
    headers = {"Content-Type": content_type} if content_type else {}
    response = gateway.post(f"/hooks/go?token={TOKEN}", json.dumps(body), headers=headers)
    assert response.status_code == 202, response.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=2048), st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=30).map(lambda v: json.dumps(v).encode())))
def test_arbitrary_bodies_never_cause_a_server_error(gateway: GatewayProcess, body: bytes) -> None:
    response = gateway.post(f"/hooks/go?token={TOKEN}", body)
    assert response.status_code < 500, response.text
    assert "error" in response.json() or response.status_code in (200, 202)


def test_memory_stays_bounded_under_hostile_bodies(gateway: GatewayProcess) -> None:
    """Twenty rounds of the heaviest bodies within and over the limit: 100,000 keys, nesting
    50,000 deep, a 40 MB chunked body. The gateway's resident memory grows by less than 64 MB."""
    assert gateway.process is not None
    many_keys = b'{"event_id": "X", ' + b",".join(b'"%d":1' % i for i in range(100_000)) + b"}"
    assert len(many_keys) < 1024 * 1024
    deep = b'{"event_id": "X", "d": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"

    def oversized() -> Iterator[bytes]:
        for _ in range(640):
            yield b"a" * 65536

    before = rss_bytes(gateway.process.pid)
    for _ in range(20):
        assert gateway.post(f"/hooks/go?token={TOKEN}", many_keys).status_code == 202  # a valid, odd event: stored
        assert gateway.post(f"/hooks/go?token={TOKEN}", deep).status_code == 400
        assert httpx.post(gateway.url(f"/hooks/go?token={TOKEN}"), content=oversized(), timeout=30).status_code == 413
    growth = rss_bytes(gateway.process.pid) - before
    assert growth < 64 * 1024 * 1024, f"grew by {growth / 1e6:.0f} MB"
