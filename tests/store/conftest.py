"""Every store test runs against every backend: the real SQLite file, a real PostgreSQL (a schema
of its own per test, on the server GATEWAY_TEST_POSTGRES_URL names; tests/postgres.py), and the
in-memory store that the engine's behaviour tests run on (so it must keep the same contract)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.store import Store, open_store
from gateway.store.memory import MemoryDatabase, MemoryStore

BACKENDS = ["sqlite", "postgresql", "memory"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Stores on one database: each call is another process opening the same file."""
    if request.param == "memory":
        database = MemoryDatabase()
        return lambda: MemoryStore(database)
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        return lambda: open_store(url)
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    return lambda: open_store(url)


@pytest.fixture
async def store(store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = store_factory()
    await opened.open()
    yield opened
    await opened.close()
