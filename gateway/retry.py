"""When to try a failed delivery again: a frozen policy object, separate from the decision.

Backoff is tenacity's exponential wait plus a random jitter of up to one first-wait (we do not
write the arithmetic again), bounded by attempts and capped per wait. The defaults (20 attempts,
5 s doubling to a 1 h cap) keep trying for about 11 hours: a receiver down overnight still gets
its events. `Retry-After` can only push an attempt later, and an
absurd value is capped so one answer cannot park a delivery for days.
"""

from __future__ import annotations

from dataclasses import dataclass

import tenacity

from gateway.destinations.base import RetrySpec

MAX_RETRY_AFTER_SECONDS = 6 * 3600.0


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
        wait = tenacity.wait_exponential(multiplier=self.first_seconds, max=self.max_seconds) + tenacity.wait_random(0, self.first_seconds)
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempts_made
        return float(wait(state))

    def next_attempt_at(self, now: float, attempts_made: int, retry_after: float | None, capped: bool = True) -> float | None:
        """When to try again, or None when the attempts are used up. `capped=False` for a wait
        the gateway computed itself from a vendor's documented reset (HubSpot's daily limit)."""
        if attempts_made >= self.attempts:
            return None
        delay = self.backoff(attempts_made)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS) if capped else retry_after)
        return now + delay
