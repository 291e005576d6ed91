"""Parts of the store interface every backend shares."""

from __future__ import annotations

import re
import time

from gateway.store.base import new_id


def test_new_ids_are_unique_hex_and_sort_by_creation_time() -> None:
    earlier = [new_id() for _ in range(1000)]
    time.sleep(0.002)
    later = new_id()
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in [*earlier, later])
    assert len(set(earlier)) == 1000
    assert max(earlier) < later
    assert abs(int(later[:12], 16) / 1000 - time.time()) < 5  # the first 12 digits are the creation time in ms
