"""Where the service's parts run, decided in one place, and starting and stopping them.

| topology               | ingest (route, render, store) | delivery                        | used by                              |
|------------------------|-------------------------------|---------------------------------|--------------------------------------|
| `IN_PROCESS`           | the HTTP process              | the HTTP process                | an app built in code, `:memory:`     |
| `IN_PROCESS_NO_DELIVER`| the HTTP process              | elsewhere (`gateway worker`)    | the same, with `--no-deliver`        |
| `CHILDREN`             | the ingest child              | the delivery child              | `gateway serve` on SQLite            |
| `CHILD_NO_DELIVER`     | the ingest child              | elsewhere (`gateway worker`)    | `gateway serve --no-deliver`         |
| `SHARED_DATABASE`      | the HTTP process              | the delivery child              | `gateway serve` on PostgreSQL        |
| `SHARED_DATABASE_NO_DELIVER` | the HTTP process        | elsewhere (`gateway worker`)    | the same, with `--no-deliver`        |

Children need what another process can open: the routes' bytes (a config loaded from files)
and a database on disk. SQLite has one writer at a time, so its events go through the one
ingest child; PostgreSQL takes writes from every process of every replica at once, so there
the HTTP process stores them itself. `choose_topology` is the only place that decides;
`running` starts the chosen parts, retention and hot reload for the app's lifespan and stops
them afterwards. The HTTP app (app.py) only talks to the two parts, through `IngestPart` and
`DeliveryPart`.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.admin.tokens import NO_ADMIN_TOKENS, AdminTokens
from gateway.alerts.monitor import AlertMonitor
from gateway.config import Config, ConfigFiles
from gateway.delivery.metrics import DeliveryMetrics
from gateway.ingest import Accepted, accept
from gateway.service import gc_freeze, priority
from gateway.service.delivery_child import DeliveryProcess
from gateway.service.delivery_service import DeliveryService
from gateway.service.ingest_child import IngestProcess
from gateway.service.metrics import Metrics
from gateway.service.reload import watch_routes
from gateway.service.retention import purge_periodically
from gateway.store import Store


class Topology(enum.Enum):
    IN_PROCESS = "in-process"
    IN_PROCESS_NO_DELIVER = "in-process, no delivery"
    CHILDREN = "children"
    CHILD_NO_DELIVER = "ingest child, no delivery"
    SHARED_DATABASE = "ingest here, delivery child"
    SHARED_DATABASE_NO_DELIVER = "ingest here, no delivery"

    @property
    def ingest_in_child(self) -> bool:
        return self in (Topology.CHILDREN, Topology.CHILD_NO_DELIVER)

    @property
    def delivery_in_child(self) -> bool:
        return self in (Topology.CHILDREN, Topology.SHARED_DATABASE)

    @property
    def delivers(self) -> bool:
        return self in (Topology.IN_PROCESS, Topology.CHILDREN, Topology.SHARED_DATABASE)


def choose_topology(config: Config, store: Store, deliver: bool = True) -> Topology:
    """Children when they can open the same routes and database as this process; else here.
    Where several processes may write at once (PostgreSQL), ingest stays in the HTTP process:
    there is no single writer to go through."""
    separate = config.files is not None and store.url is not None
    if separate and store.many_writers:
        return Topology.SHARED_DATABASE if deliver else Topology.SHARED_DATABASE_NO_DELIVER
    if separate:
        return Topology.CHILDREN if deliver else Topology.CHILD_NO_DELIVER
    return Topology.IN_PROCESS if deliver else Topology.IN_PROCESS_NO_DELIVER


# --------------------------------------------------------------------------- the parts


class IngestPart(Protocol):
    """Routes, renders and stores events; StoreUnavailable when that cannot be done now.
    `event` is `body` parsed; a part in another process parses `body` again instead."""

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def configure(self, files: ConfigFiles) -> None: ...

    async def ingest(self, source: str, body: bytes, event: dict[str, Any], received_at: float, token: str | None = None, trace: str | None = None) -> Accepted: ...


class DeliveryPart(Protocol):
    """Sends what ingest stored."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def configure(self, files: ConfigFiles) -> None: ...

    def wake(self, stored: Accepted) -> None:
        """An event was stored: send its deliveries, count those never to be sent."""

    async def scrape(self) -> bytes | None:
        """The delivery metrics kept elsewhere, or None when they are this process's own."""


@dataclass
class IngestHere:
    """Ingest in this process and event loop, with the routes in force per event."""

    routes: Callable[[], Config]
    store: Store
    ready: bool = True

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def configure(self, files: ConfigFiles) -> None:
        pass  # reads `routes()` for each event

    async def ingest(self, source: str, body: bytes, event: dict[str, Any], received_at: float, token: str | None = None, trace: str | None = None) -> Accepted:
        return await accept(self.routes(), self.store, source, body, event, received_at, token, trace)


@dataclass
class DeliveryHere:
    """The delivery service in this process."""

    service: DeliveryService
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def start(self) -> None:
        await self._stack.enter_async_context(self.service)

    async def stop(self) -> None:
        await self._stack.aclose()

    def configure(self, files: ConfigFiles) -> None:
        pass  # the service reads `routes()` for each claim

    def wake(self, stored: Accepted) -> None:
        self.service.metrics.count_not_sent(stored.not_sent)
        if stored.deliveries:
            self.service.notify()

    async def scrape(self) -> bytes | None:
        return None


@dataclass
class DeliveryElsewhere:
    """Another process delivers (`gateway worker`, same database): it finds the work itself."""

    metrics: DeliveryMetrics

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def configure(self, files: ConfigFiles) -> None:
        pass

    def wake(self, stored: Accepted) -> None:
        self.metrics.count_not_sent(stored.not_sent)

    async def scrape(self) -> bytes | None:
        return None


# --------------------------------------------------------------------------- the runtime


@dataclass
class Runtime:
    """What the app works with. `config` is replaced whole when routes.yaml is reloaded;
    `ingest` and `delivery` are the parts the topology chose, set by `running`."""

    config: Config
    store: Store
    topology: Topology = Topology.IN_PROCESS
    metrics: Metrics = field(default_factory=Metrics)
    concurrency: int = 32
    watch: bool = False  # follow edits of routes.yaml (and SIGHUP)
    clock: Callable[[], float] = time.time
    ingest: IngestPart | None = None
    delivery: DeliveryPart | None = None
    ingesting: int = 0  # events handed to `ingest` and not yet stored (app.py bounds it)
    admin_tokens: AdminTokens = NO_ADMIN_TOKENS  # the gateway's and the shops': the admin API and console are off without any
    refused_edit: tuple[float, list[str], list[str]] | None = None  # when the last edit was refused, why, and whose (shops; [] = all of it)

    def files(self) -> ConfigFiles:
        """The routes in force, as bytes: what a child is handed at each start."""
        assert self.config.files is not None
        return self.config.files

    async def delivery_metrics(self) -> bytes:
        """The delivery engine's metrics, from the process that runs it."""
        scraped = await self.delivery.scrape() if self.delivery is not None else None
        return scraped if scraped is not None else self.metrics.delivery.render()

    def refused_problems(self) -> tuple[str, ...]:
        """The problems of the last refused edit of the routes, while it stays refused."""
        return tuple(self.refused_edit[1]) if self.refused_edit else ()


def _parts(runtime: Runtime) -> tuple[IngestPart, DeliveryPart]:
    topology = runtime.topology
    database_url = runtime.store.url  # children open the same database
    if topology.ingest_in_child:
        assert database_url is not None
        ingest: IngestPart = IngestProcess(runtime.files, database_url)
    else:
        ingest = IngestHere(lambda: runtime.config, runtime.store)
    if topology.delivery_in_child:
        delivery: DeliveryPart = DeliveryProcess(runtime.files, database_url or "", runtime.concurrency)
    elif topology is Topology.IN_PROCESS:
        service = DeliveryService(runtime.store, lambda: runtime.config, concurrency=runtime.concurrency, metrics=runtime.metrics.delivery, clock=runtime.clock)
        delivery = DeliveryHere(service)
    else:
        delivery = DeliveryElsewhere(runtime.metrics.delivery)
    return ingest, delivery


def _swap(runtime: Runtime, new: Config) -> None:
    """A reload was checked: the new routes are in force from the next event on."""
    runtime.config = new
    runtime.refused_edit = None
    runtime.metrics.reloads.labels("applied").inc()
    if new.files is not None:
        for part in (runtime.ingest, runtime.delivery):  # before the next event goes down a child's pipe
            if part is not None:
                part.configure(new.files)
    gc_freeze.settle()  # the replaced routes are collected, the new ones frozen


@asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[None]:
    """The store open, the parts started, retention and hot reload running; all stopped after."""
    await runtime.store.open()
    runtime.ingest, runtime.delivery = _parts(runtime)
    started: list[IngestPart | DeliveryPart] = []
    background: list[asyncio.Task[None]] = []
    try:
        for part in (runtime.ingest, runtime.delivery):
            await part.start()
            started.append(part)
        if runtime.topology.delivery_in_child:
            priority.favour_delivery(runtime.ingest.pid if isinstance(runtime.ingest, IngestProcess) else None)
        background.append(asyncio.create_task(purge_periodically(runtime.store, lambda: runtime.config, runtime.clock)))
        monitor = AlertMonitor(runtime.store, lambda: runtime.config, runtime.delivery_metrics, runtime.refused_problems, runtime.clock)
        background.append(asyncio.create_task(monitor.run()))
        if runtime.watch:
            def refused(problems: list[str], tenants: list[str]) -> None:
                runtime.refused_edit = (runtime.clock(), problems, tenants) if problems else None
                if problems:
                    runtime.metrics.reloads.labels("refused").inc()

            background.append(watch_routes(runtime.config.file, lambda: runtime.config, lambda new: _swap(runtime, new), refused))
        gc_freeze.settle()  # what start-up built stays: out of the collector's way
        yield
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*(part.stop() for part in reversed(started)))  # requests in flight have had their answers
        await runtime.store.close()
