"""The cyclic garbage collector, kept off the hot path.

A process of `gateway serve` holds tens of thousands of long-lived objects: Litestar's app,
the routes and their compiled templates. Python's full collection walks them all: ~20 ms,
several times a minute under load, and every request in flight waits for it (a full
collection in the HTTP process or the ingest child was most of ingest's p99 at saturation,
bench/README.md). `gc.freeze()` moves what exists after start-up out of the collector's reach,
so full collections only walk what is new.

Frozen objects are never collected, so the routes a reload replaces would stay in memory for
good: `settle` unfreezes first, collects once (one pause per reload), and freezes again.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what is garbage now, then freeze everything that is left (after start-up, and
    after each routes reload)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
