"""The delivery service, assembled in exactly one place.

Whatever process delivers (the HTTP process for an app built in code, the delivery child of
`gateway serve`, `gateway worker`), it runs the same parts built the same way: the one shared
HTTP client (its connections checked by the egress guard allowed *now*), the engine following
the routes in force, the engine's metrics, and the garbage collector settled once all of it
exists. `DeliveryService` is that assembly; nothing else in gateway/ constructs an engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType


from gateway.config import Config
from gateway.delivery.client import DeliveryClient, delivery_client
from gateway.delivery.engine import DeliveryEngine
from gateway.delivery.metrics import DeliveryMetrics
from gateway.service import gc_freeze
from gateway.store import Store

STOP_GRACE_SECONDS = 25.0  # in-flight deliveries get this long at shutdown; the rest are given back


class DeliveryService:
    """`async with DeliveryService(...)`: delivering until the block ends. `routes` gives the
    config in force at each moment (a hot reload swaps it whole)."""

    def __init__(
        self,
        store: Store,
        routes: Callable[[], Config],
        *,
        concurrency: int = 32,
        metrics: DeliveryMetrics | None = None,
        clock: Callable[[], float] = time.time,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
    ) -> None:
        self.store = store
        self.routes = routes
        self.concurrency = concurrency
        self.metrics = metrics or DeliveryMetrics()
        self.clock = clock
        self.stop_grace_seconds = stop_grace_seconds
        self.engine: DeliveryEngine | None = None
        self._client: DeliveryClient | None = None
        self._running: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """New deliveries were stored: the engine looks now."""
        if self.engine is not None:
            self.engine.notify()

    async def __aenter__(self) -> DeliveryService:
        self._client = delivery_client(lambda: self.routes().egress_allow)
        await self._client.__aenter__()
        self.engine = DeliveryEngine(self.store, self.routes, self._client, self.metrics, concurrency=self.concurrency, clock=self.clock)
        await self.store.clear_stops()  # starting again means trying a stopped (410) address again
        await self.store.subscribe(self.engine.notify)  # work stored by other replicas wakes it too
        self._running = asyncio.create_task(self.engine.run())
        gc_freeze.settle()  # what start-up built stays: out of the collector's way
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        """In-flight deliveries finish for a while; the rest are given back to the store."""
        try:
            if self.engine is not None:
                await self.engine.stop(self.stop_grace_seconds)
            if self._running is not None:
                await self._running
        finally:
            if self._client is not None:
                await self._client.__aexit__(kind, error, trace)
