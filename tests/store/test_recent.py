"""The remembered dedupe window's own rules (pure logic; the database side is in test_store.py)."""

from __future__ import annotations

import math

from gateway.store.recent import MARGIN_SECONDS, RecentKeys, digest

T0 = 1_700_000_000.0


def loaded(limit: int = 1000, window: float = 600) -> RecentKeys:
    recent = RecentKeys(limit)
    recent.longest_window = window
    recent.reset(T0 - window, [], high_water=0)
    return recent


def test_a_key_is_found_only_inside_the_window_asked() -> None:
    recent = loaded()
    recent.extend([("go", "k", T0)])
    assert recent.stored_since(digest("go", "k"), T0 - 600) == T0
    assert recent.stored_since(digest("go", "k"), T0 + 1) is None
    assert recent.stored_since(digest("other", "k"), T0 - 600) is None  # keys are per source


def test_nothing_is_covered_before_the_first_load() -> None:
    recent = RecentKeys()
    assert recent.high_water is None and not recent.covers(T0)
    recent.reset(T0, [("go", "k", T0 + 1)], high_water=7)
    assert recent.covers(T0) and not recent.covers(T0 - 1)
    assert recent.high_water == 7 and len(recent) == 1


def test_what_a_transaction_stored_is_remembered_only_once_it_commits() -> None:
    recent = loaded()
    recent.stage([(digest("go", "a"), T0)], high_water=5, now=T0)
    assert recent.stored_since(digest("go", "a"), T0 - 600) is None
    recent.discard()
    recent.commit()
    assert recent.stored_since(digest("go", "a"), T0 - 600) is None and recent.high_water == 0
    recent.stage([(digest("go", "b"), T0)], high_water=6, now=T0)
    recent.commit()
    assert recent.stored_since(digest("go", "b"), T0 - 600) == T0 and recent.high_water == 6


def test_keys_no_window_reaches_are_forgotten() -> None:
    recent = loaded(window=600)
    recent.extend([("go", f"k{n}", T0 + n * 100) for n in range(10)])  # T0 .. T0+900
    recent.trim(T0 + 900)
    cutoff = T0 + 900 - 600 - MARGIN_SECONDS
    kept = [n for n in range(10) if recent.stored_since(digest("go", f"k{n}"), 0) is not None]
    assert kept == [n for n in range(10) if T0 + n * 100 >= cutoff]
    assert recent.covered_since == cutoff  # and what is older is no longer claimed


def test_a_key_stored_again_moves_to_the_newest_end() -> None:
    recent = loaded(window=600)
    recent.extend([("go", "old", T0), ("go", "other", T0 + 10)])
    recent.add(digest("go", "old"), T0 + 700)  # stored again once its window had passed
    recent.trim(T0 + 700)
    assert recent.stored_since(digest("go", "old"), T0 + 100) == T0 + 700
    assert recent.stored_since(digest("go", "other"), 0) is None


def test_past_the_limit_the_oldest_go_and_the_time_they_covered_is_no_longer_claimed() -> None:
    recent = loaded(limit=3, window=600)
    recent.extend([("go", f"k{n}", T0 + n) for n in range(5)])
    recent.trim(T0 + 5)
    assert len(recent) == 3 and recent.overflowed
    assert recent.stored_since(digest("go", "k1"), 0) is None
    assert recent.covered_since == math.nextafter(T0 + 1, math.inf)
    assert not recent.covers(T0 + 1) and recent.covers(T0 + 2)
