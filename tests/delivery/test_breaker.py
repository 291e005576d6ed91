"""The circuit breaker: pure logic."""

from __future__ import annotations

from gateway.delivery.breaker import CircuitBreaker
from gateway.destinations.base import Outcome


def test_circuit_opens_after_consecutive_transient_failures_and_backs_off_longer() -> None:
    breaker = CircuitBreaker(threshold=3, base_cooldown=10, max_cooldown=25)
    retry, ok = Outcome("retry"), Outcome("delivered")
    assert [breaker.record(retry, 0) for _ in range(3)] == [False, False, True]
    assert breaker.is_open(5) and not breaker.is_open(10)
    assert [breaker.record(retry, 10) for _ in range(3)][-1] is True
    assert breaker.open_until == 30  # 10 s, then 20 s
    for _ in range(3):
        breaker.record(retry, 30)
    assert breaker.open_until == 55  # capped at 25 s
    breaker.record(ok, 60)
    assert (breaker.failures, breaker.opened) == (0, 0)


def test_permanent_failures_do_not_open_the_circuit() -> None:
    breaker = CircuitBreaker(threshold=2)
    assert not any(breaker.record(Outcome("dead"), 0) for _ in range(10))
