"""Retry policy: exponential backoff with jitter, bounded attempts, Retry-After honoured and capped."""

from __future__ import annotations

from gateway.delivery.retry import MAX_RETRY_AFTER_SECONDS, RetryPolicy


def test_backoff_grows_exponentially_to_the_cap() -> None:
    policy = RetryPolicy(attempts=20, first_seconds=5, max_seconds=3600)
    for attempt in range(1, 20):
        wait = policy.backoff(attempt)
        base = min(3600, 5 * 2 ** (attempt - 1))
        assert base <= wait <= base + 5  # plus up to one first-wait of jitter


def test_default_schedule_spans_about_eleven_hours() -> None:
    """The defaults keep a delivery alive through a receiver's night-long outage."""
    policy = RetryPolicy()
    total = sum(policy.backoff(n) for n in range(1, policy.attempts))
    assert 10 * 3600 < total < 12 * 3600


def test_no_next_attempt_when_attempts_are_used_up() -> None:
    policy = RetryPolicy(attempts=3, first_seconds=1, max_seconds=10)
    assert policy.next_attempt_at(100.0, 2, None) is not None
    assert policy.next_attempt_at(100.0, 3, None) is None


def test_retry_after_only_delays_and_is_capped() -> None:
    policy = RetryPolicy(attempts=5, first_seconds=1, max_seconds=10)
    assert policy.next_attempt_at(100.0, 1, 30) == 130.0
    assert 101.0 <= policy.next_attempt_at(100.0, 1, 0) <= 102.0  # 0 does not mean "hammer"
    assert policy.next_attempt_at(100.0, 1, 86400 * 30) == 100.0 + MAX_RETRY_AFTER_SECONDS


def test_a_vendors_documented_reset_is_not_capped() -> None:
    """HubSpot's daily limit resets at midnight: up to a day away, and waited for in full."""
    policy = RetryPolicy(attempts=5, first_seconds=1, max_seconds=10)
    assert policy.next_attempt_at(100.0, 1, 20 * 3600, capped=False) == 100.0 + 20 * 3600
