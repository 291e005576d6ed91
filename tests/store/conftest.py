"""Every store test runs against every backend, on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.store import Store, open_store

BACKENDS = ["sqlite"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    return lambda: open_store(url)


@pytest.fixture
async def store(store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = store_factory()
    await opened.open()
    yield opened
    await opened.close()
