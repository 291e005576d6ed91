"""When to try again: one backoff function, and the frozen retry policy built on it.

`backoff` is the one place the gateway works out how much longer to wait after each failure:
a delivery's next attempt (`RetryPolicy`), a failing destination's cooldown
(gateway/delivery/breaker.py) and a child process that keeps dying
(gateway/service/child_process.py). Exponential, capped, with a random jitter of up to one
first wait so that many deliveries failing together do not come back together.

The policy's defaults (20 attempts, 5 s doubling to a 1 h cap) keep trying for about 11 hours:
a receiver down overnight still gets its events. `Retry-After` can only push an attempt later,
and an absurd value is capped so one answer cannot park a delivery for days.

The schedule is stored (each delivery's next_attempt_at), not slept through in a loop, so
tenacity's retrying loop has nothing to drive here; the gateway uses it where a loop does
retry in place (restarting a child process).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gateway.destinations.base import RetrySpec

MAX_RETRY_AFTER_SECONDS = 6 * 3600.0


def backoff(failures: int, *, first: float, cap: float, jitter: float | None = None) -> float:
    """Seconds to wait after the `failures`-th failure in a row (1-based): `first` doubling
    each time, at most `cap`, plus a random jitter of up to `jitter` (default: `first`)."""
    exponential = min(cap, first * 2 ** min(max(failures, 1) - 1, 62))
    return exponential + random.uniform(0, first if jitter is None else jitter)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    attempts: int = 20
    first_seconds: float = 5.0
    max_seconds: float = 3600.0

    @classmethod
    def from_spec(cls, spec: RetrySpec) -> RetryPolicy:
        return cls(attempts=spec.attempts, first_seconds=spec.first.seconds, max_seconds=spec.max.seconds)

    def backoff(self, attempts_made: int) -> float:
        """Seconds to wait after the `attempts_made`-th failed attempt (1-based)."""
        return backoff(attempts_made, first=self.first_seconds, cap=self.max_seconds)

    def next_attempt_at(self, now: float, attempts_made: int, retry_after: float | None, capped: bool = True) -> float | None:
        """When to try again, or None when the attempts are used up. `capped=False` for a wait
        the gateway computed itself from a vendor's documented reset (HubSpot's daily limit)."""
        if attempts_made >= self.attempts:
            return None
        delay = self.backoff(attempts_made)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS) if capped else retry_after)
        return now + delay
