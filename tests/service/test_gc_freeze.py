"""heap.settle: what exists is frozen out of the collector's way, and what a reload replaced
is still collected (pure logic of the gc module, no server)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.service import gc_freeze


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture(autouse=True)
def _unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_what_exists_is_frozen() -> None:
    kept = Node()
    gc_freeze.settle()
    assert gc.get_freeze_count() > 0
    assert not any(obj is kept for obj in gc.get_objects())  # a full collection no longer walks it


def test_cycles_frozen_before_a_reload_are_collected_by_the_next_settle() -> None:
    old_routes = Node()
    gone = weakref.ref(old_routes)
    gc_freeze.settle()
    del old_routes  # the reload replaced them; frozen, a collection alone would keep them
    gc.collect()
    assert gone() is not None
    gc_freeze.settle()
    assert gone() is None
