"""Who gets the CPU when there is not enough of it: the deliveries.

Under a flood, the HTTP process and the ingest child can take every core: each event costs
them less than its delivery costs the delivery child, so at equal shares the backlog grows for
as long as the flood lasts (bench/README.md: 455 forwarded/s while 2,077 events/s were
accepted). `gateway serve` therefore runs its HTTP process and ingest child a few nice levels
below the delivery child. With CPU to spare this changes nothing; under saturation ingest
slows a little and deliveries keep pace. Raising one's own niceness needs no privilege;
lowering it does, so a delivery child restarted after a crash (the HTTP process starts it)
runs at the HTTP process's level: fair shares again, never starved.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("gateway")

INGEST_NICENESS = 5  # CFS weights: nice 0 has ~3 times the share of nice 5


def favour_delivery(ingest_child_pid: int | None) -> None:
    """Lower this process's priority, and the ingest child's, below the delivery child's."""
    try:
        lower = min(19, os.getpriority(os.PRIO_PROCESS, 0) + INGEST_NICENESS)
        os.setpriority(os.PRIO_PROCESS, 0, lower)
        if ingest_child_pid is not None:
            os.setpriority(os.PRIO_PROCESS, ingest_child_pid, lower)
    except OSError as exc:  # not fatal: the parts then share the CPU equally
        log.warning("could not give deliveries the CPU first (nice): %s", exc)
