"""The token bucket behind a source's quota (pure logic; the HTTP side is tests/service/test_quotas.py)."""

from __future__ import annotations

from gateway.quotas import Quota, QuotaBuckets


def test_a_burst_is_taken_at_once_then_the_rate_refills_it() -> None:
    buckets, quota, now = QuotaBuckets(), Quota(per_second=2.0, burst=3.0), 1000.0
    assert [buckets.take("a", quota, now) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", quota, now) == 0.5  # one token comes back every half second
    assert buckets.take("b", quota, now) == 0.0  # another source has a bucket of its own
    assert buckets.take("a", quota, now + 0.5) == 0.0
    assert buckets.take("a", quota, now + 0.5) > 0
    assert [buckets.take("a", quota, now + 100) for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # full again, never above the burst
    assert buckets.take("a", quota, now + 100) > 0


def test_a_clock_that_goes_back_adds_nothing() -> None:
    buckets, quota = QuotaBuckets(), Quota(per_second=1.0, burst=1.0)
    assert buckets.take("a", quota, 1000.0) == 0.0
    assert buckets.take("a", quota, 990.0) == 1.0
