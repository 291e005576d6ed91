"""Quotas at ingest: a token bucket per source (`quota: {rate: 20/s, burst: 40}`).

Past its quota a source's events are answered 429 with Retry-After before anything is read or
stored; GO sends them again later. One shop's flood then costs the others nothing at ingest.
The bucket lives where the events arrive: in the HTTP process on one node (SQLite), in the
database for several replicas (PostgreSQL), so a quota holds for the whole cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Quota:
    per_second: float  # the refill rate
    burst: float  # the bucket's size: events accepted at once after a quiet while
    text: str = ""  # as routes.yaml writes the rate, for messages: "20/s"


def refill(tokens: float, updated_at: float, now: float, quota: Quota) -> float:
    """The tokens a bucket holds at `now` (never more than its burst)."""
    return min(quota.burst, tokens + max(0.0, now - updated_at) * quota.per_second)


def wait_for_one(available: float, quota: Quota) -> float:
    """Seconds until a bucket holding `available` (< 1) tokens has one again."""
    return max(0.0, (1.0 - available) / quota.per_second)


@dataclass
class QuotaBuckets:
    """The buckets of one process: (tokens, updated_at) per key."""

    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str, quota: Quota, now: float) -> float:
        """Take one token: 0.0 when taken, else the seconds until one is available."""
        tokens, updated_at = self.buckets.get(key, (quota.burst, now))
        available = refill(tokens, updated_at, now, quota)
        if available >= 1.0:
            self.buckets[key] = (available - 1.0, max(updated_at, now))
            return 0.0
        self.buckets[key] = (available, max(updated_at, now))
        return wait_for_one(available, quota)
