"""A source's quota bucket on every backend; on PostgreSQL one bucket for every replica."""

from __future__ import annotations

import pytest

from gateway.quotas import Quota
from gateway.store import Store, open_store

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0
QUOTA = Quota(per_second=1.0, burst=2.0)


async def test_a_quota_takes_its_burst_then_waits_for_the_rate(store: Store) -> None:
    assert [await store.take_quota("source:go", QUOTA, T0) for _ in range(2)] == [0.0, 0.0]
    assert await store.take_quota("source:go", QUOTA, T0) == pytest.approx(1.0)
    assert await store.take_quota("source:outra", QUOTA, T0) == 0.0
    assert await store.take_quota("source:go", QUOTA, T0 + 1) == 0.0


async def test_replicas_on_postgresql_share_one_bucket(postgres_url: str) -> None:
    first, second = open_store(postgres_url), open_store(postgres_url)
    await first.open()
    await second.open()
    try:
        assert await first.take_quota("source:go", QUOTA, T0) == 0.0
        assert await second.take_quota("source:go", QUOTA, T0) == 0.0
        assert await first.take_quota("source:go", QUOTA, T0) > 0  # the second replica took the last token
    finally:
        await first.close()
        await second.close()
