"""The circuit breaker: a destination that keeps failing is backed off as a whole."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.delivery.retry import backoff
from gateway.destinations.base import Outcome


@dataclass
class CircuitBreaker:
    """Per destination: opens after `threshold` transient failures in a row."""

    threshold: int = 5
    base_cooldown: float = 10.0
    max_cooldown: float = 600.0
    failures: int = 0
    opened: int = 0
    open_until: float = 0.0

    def is_open(self, now: float) -> bool:
        return now < self.open_until

    def record(self, outcome: Outcome, now: float) -> bool:
        """Update with an attempt's outcome; True when this opened the circuit."""
        if outcome.kind != "retry":
            self.failures = 0
            self.opened = 0
            return False
        self.failures += 1
        if self.failures < self.threshold:
            return False
        self.opened += 1
        self.failures = 0
        self.open_until = now + backoff(self.opened, first=self.base_cooldown, cap=self.max_cooldown, jitter=0)
        return True
