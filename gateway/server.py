"""Running the app: logging that never leaks secrets, uvicorn, graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys

import uvicorn

from gateway.app import Runtime, create_app
from gateway.config import Config
from gateway.store import Store, open_store

SHUTDOWN_GRACE_SECONDS = 30


def configure_logging() -> None:
    """One line per record on stderr. httpx logs full URLs (with tokens) at INFO: silenced."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve(config: Config, database_url: str, host: str, port: int, workers: int) -> None:
    """Serve until SIGINT/SIGTERM; in-flight deliveries finish or are given back."""
    configure_logging()
    asyncio.run(_preflight(open_store(database_url)))  # a bad database URL is a message, not a traceback
    runtime = Runtime(config=config, store=open_store(database_url), concurrency=workers)
    logging.getLogger("gateway").info("config %s (version %s), database %s, listening on %s:%d", config.file, config.version, database_url, host, port)
    uvicorn.run(
        create_app(runtime),
        host=host,
        port=port,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is trusted only from sources' trusted_proxies (app.py)
        log_config=None,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        server_header=False,
    )


async def _preflight(store: Store) -> None:
    await store.open()
    await store.close()
