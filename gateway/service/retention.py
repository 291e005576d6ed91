"""Retention: payloads hold personal data (LGPD), so old events are deleted automatically."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.config import Config
from gateway.store import Store, StoreUnavailable

log = logging.getLogger("gateway.ingest")

PURGE_EVERY_SECONDS = 3600.0


async def purge_periodically(store: Store, routes: Callable[[], Config], clock: Callable[[], float], every_seconds: float = PURGE_EVERY_SECONDS) -> None:
    """Purge events older than `settings.retention` now and every `every_seconds`, until cancelled."""
    while True:
        retention = routes().settings.retention
        try:
            purged = await store.purge(clock() - retention.seconds)
            if purged:
                log.info("retention: purged %d events older than %s", purged, retention)
        except StoreUnavailable as exc:
            log.error("retention purge failed: %s", exc)
        await asyncio.sleep(every_seconds)
