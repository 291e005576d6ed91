"""Parts of the store interface every backend shares."""

from __future__ import annotations

import os
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


def test_a_forked_process_draws_other_ids_than_its_parent() -> None:
    """The random part comes from `random`'s generator, which Python reseeds in a forked child;
    a child repeating its parent's sequence would repeat its ids within the same millisecond."""
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(writing, "".join(new_id()[12:] for _ in range(10)).encode())
        os._exit(0)
    os.close(writing)
    os.waitpid(child, 0)
    with os.fdopen(reading) as pipe:
        in_child = pipe.read()
    in_parent = "".join(new_id()[12:] for _ in range(10))
    assert len(in_child) == 200
    assert in_child != in_parent
