"""The PostgreSQL server the tests use: GATEWAY_TEST_POSTGRES_URL, by default the developers'
and CI's server at 127.0.0.1:5432 (trust auth, database `test`; `.ci/run` starts it when it is
down). A test gets a schema of its own, so tests never see each other's rows. When no server
answers, the test fails and says what to do: it is never skipped."""

from __future__ import annotations

import contextlib
import os
import urllib.parse
import uuid
from collections.abc import Iterator

import psycopg
import pytest

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("GATEWAY_TEST_POSTGRES_URL", DEFAULT_URL)


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A database URL whose connections use a new, empty schema; dropped afterwards."""
    base = server_url()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"no PostgreSQL at {base} ({exc}). Start one (Debian: apt-get install postgresql, then "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or point "
            "GATEWAY_TEST_POSTGRES_URL at a server where this user may create schemas",
            pytrace=False,
        )
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            separator = "&" if "?" in base else "?"
            yield f"{base}{separator}options={urllib.parse.quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
