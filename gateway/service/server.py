"""Running the service: `gateway serve` (uvicorn, graceful shutdown on SIGTERM) and
`gateway worker` (delivery only, beside `serve --no-deliver`)."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvicorn
import uvloop

import gateway.tracing as tracing
from gateway.admin.tokens import NO_ADMIN_TOKENS, AdminTokens
from gateway.config import Config
from gateway.masking import remember_secrets, without_password
from gateway.service.app import MAX_INGESTS_IN_FLIGHT, create_app
from gateway.service.delivery_service import DeliveryService
from gateway.service.logs import configure_logging
from gateway.service.reload import RoutesInForce, watch_routes
from gateway.service.topology import Runtime, choose_topology
from gateway.store import migrate, open_store

SHUTDOWN_GRACE_SECONDS = 30


def serve(config: Config, database_url: str, host: str, port: int, workers: int, deliver: bool = True, admin_tokens: AdminTokens = NO_ADMIN_TOKENS) -> None:
    """Serve until SIGINT/SIGTERM; in-flight deliveries finish or are given back."""
    configure_logging()
    tracing.setup("serve")
    asyncio.run(migrate(database_url))  # a bad database URL is a message, not a traceback
    store = open_store(database_url)
    runtime = Runtime(
        config=config, store=store, topology=choose_topology(config, store, deliver), concurrency=workers, watch=True, admin_tokens=admin_tokens
    )
    remember_secrets(admin_tokens.secrets())  # masked in every log line
    console = f"console at /console{_shop_tokens(admin_tokens)}" if admin_tokens else "admin API and console off (no GATEWAY_ADMIN_TOKEN)"
    logging.getLogger("gateway").info("config %s (version %s), database %s, listening on %s:%d, %s", config.file, config.version, without_password(database_url), host, port, console)
    try:
        _run_uvicorn(runtime, host, port)
    finally:
        tracing.shutdown()  # the spans still buffered are exported


def _run_uvicorn(runtime: Runtime, host: str, port: int) -> None:
    uvicorn.run(
        create_app(runtime),
        host=host,
        port=port,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is trusted only from sources' trusted_proxies (app.py)
        log_config=None,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        # The app answers a JSON 503 past MAX_INGESTS_IN_FLIGHT; this bounds everything else
        # (connections that send nothing, other paths), with uvicorn's own plain 503.
        limit_concurrency=2 * MAX_INGESTS_IN_FLIGHT,
        server_header=False,
    )


def _shop_tokens(tokens: AdminTokens) -> str:
    return f" (admin tokens of shops: {', '.join(sorted(tokens.shops))})" if tokens.shops else ""


def work(config: Config, database_url: str, workers: int) -> None:
    """Deliver only (no HTTP), until SIGINT/SIGTERM: `gateway worker`, beside `serve --no-deliver`."""
    configure_logging()
    tracing.setup("worker")
    try:
        uvloop.run(_work(config, database_url, workers))
    finally:
        tracing.shutdown()


async def _work(config: Config, database_url: str, workers: int) -> None:
    store = open_store(database_url)
    await store.open()
    routes = RoutesInForce(config)  # swapped whole by a hot reload, as in serve: destinations, secrets, limits
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    watcher = watch_routes(config.file, routes, routes.swap)
    try:
        async with DeliveryService(store, routes, concurrency=workers, stop_grace_seconds=SHUTDOWN_GRACE_SECONDS - 5):
            logging.getLogger("gateway").info("worker delivering for %s (version %s) from %s", config.file, config.version, database_url)
            await stopping.wait()
    finally:
        watcher.cancel()
        await store.close()
