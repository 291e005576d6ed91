"""The dedupe window, remembered: which (source, key) pairs were stored recently.

Looking each batch's keys up in the database, and keeping an index of keys that are hashes
(every insert landing on a random page of it), cost the ingest child 6-10% of its CPU and a
quarter of its p99 on a filled database (bench/README.md). Remembering the window costs about
100 bytes per keyed event inside it (tracemalloc, 100,000 keys).

The database stays the truth: the backend loads this from it, tells it what it stores, reads
what other processes stored since, and confirms in the database every key found here (an
event purged or erased since is no original). This class itself touches no database, so its
rules are tested on their own.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

MAX_REMEMBERED = 500_000  # ~50 MB; more than 800 keyed events/s for ten minutes goes past it
MARGIN_SECONDS = 60.0  # kept beyond the longest window, for events whose clock lags a little


def digest(source: str, key: str) -> bytes:
    """16 bytes for any key: a key can be a long rendered template, and a collision at 128
    bits is out of reach (a false duplicate would lose an event)."""
    return hashlib.blake2b(f"{source}\0{key}".encode("utf-8", "surrogatepass"), digest_size=16).digest()


class RecentKeys:
    """When each remembered key was last stored.

    Invariant: every event with a dedupe key received at or after `covered_since`, among the
    rows up to `high_water`, is here (the latest per key). Entries are kept in the order they
    were stored, which is received time give or take a clock tick, so the oldest go first.
    """

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self.limit = limit
        self.covered_since = math.inf  # nothing is covered until the first load
        self.high_water: int | None = None  # newest row (rowid) taken into account; None = never loaded
        self.longest_window = 0.0
        self.overflowed = False  # entries were dropped to stay under `limit`, not because they aged
        self._stored_at: dict[bytes, float] = {}
        self._staged: tuple[list[tuple[bytes, float]], int | None, float] | None = None

    def __len__(self) -> int:
        return len(self._stored_at)

    def reset(self, since: float, rows: Iterable[tuple[str, str, float]], high_water: int) -> None:
        """Replace everything with `rows` (source, key, received_at), every keyed event since `since`."""
        self._stored_at.clear()
        self.covered_since = since
        self.overflowed = False
        self.high_water = high_water
        self.extend(rows)

    def extend(self, rows: Iterable[tuple[str, str, float]]) -> None:
        for source, key, received_at in rows:
            self.add(digest(source, key), received_at)

    def add(self, key: bytes, received_at: float) -> None:
        self._stored_at.pop(key, None)  # re-added at the end: the order stays by time
        self._stored_at[key] = received_at

    def stage(self, entries: list[tuple[bytes, float]], high_water: int | None, now: float) -> None:
        """What a transaction stored, to remember once it commits (`commit`) or not (`discard`):
        a key remembered for an event that was rolled back would answer its resend "duplicate"."""
        self._staged = (entries, high_water, now)

    def commit(self) -> None:
        if self._staged is None:
            return
        entries, high_water, now = self._staged
        self._staged = None
        for key, received_at in entries:
            self.add(key, received_at)
        if high_water is not None:
            self.high_water = high_water
        self.trim(now)

    def discard(self) -> None:
        self._staged = None

    def stored_since(self, key: bytes, since: float) -> float | None:
        """When `key` was stored at or after `since`, if it was and that time is covered."""
        stored_at = self._stored_at.get(key)
        return stored_at if stored_at is not None and stored_at >= since else None

    def covers(self, since: float) -> bool:
        return since >= self.covered_since

    def trim(self, now: float) -> None:
        """Forget what no window can reach any more, and the oldest past `limit`."""
        cutoff = now - self.longest_window - MARGIN_SECONDS
        entries = self._stored_at
        while entries:
            oldest = next(iter(entries))
            stored_at = entries[oldest]
            if stored_at >= cutoff and len(entries) <= self.limit:
                break
            del entries[oldest]
            if stored_at >= cutoff:  # dropped for room: what is older than the next one is no longer covered
                self.overflowed = True
                cutoff = max(cutoff, math.nextafter(stored_at, math.inf))
        self.covered_since = max(self.covered_since, cutoff)
