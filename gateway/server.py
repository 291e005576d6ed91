"""Running the app: logging that never leaks secrets, uvicorn, graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import uvicorn
from pythonjsonlogger.json import JsonFormatter

from gateway import heap
from gateway.app import Runtime, create_app
from gateway.config import Config
from gateway.delivery import DeliveryEngine, delivery_client
from gateway.masking import mask_personal_data
from gateway.metrics import Metrics
from gateway.reload import ConfigReloader
from gateway.store import Store, open_store

SHUTDOWN_GRACE_SECONDS = 30


class PersonalDataFilter(logging.Filter):
    """Masks e-mails, CPF/CNPJ and phone numbers in every record: the gateway's own messages
    never carry them, and this keeps a library's or a future message's from slipping through."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_personal_data(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:  # a traceback quotes exception messages too
            record.exc_text = mask_personal_data(logging.Formatter().formatException(record.exc_info))
        return True


LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(log_format: str | None = None) -> None:
    """One line per record on stderr: text, or JSON objects with GATEWAY_LOG_FORMAT=json (for
    log collectors). httpx logs full URLs (with tokens) at INFO: silenced.

    GATEWAY_LOG_LEVEL=debug adds a line per event stored and per delivery made (the gateway's
    own, not its libraries'); `gateway events` shows the same history from the database."""
    handler = logging.StreamHandler(sys.stderr)
    if (log_format or os.environ.get("GATEWAY_LOG_FORMAT", "text")).lower() == "json":
        renamed = {"asctime": "time", "levelname": "level", "name": "logger"}
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields=renamed))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(PersonalDataFilter())
    # Neither format shows caller, thread or process: skip collecting them on every record
    # (the Logging HOWTO's "Optimization" section); ingest logs one line per event.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    asked = os.environ.get("GATEWAY_LOG_LEVEL", "info").strip().lower()
    level = LOG_LEVELS.get(asked, logging.INFO)
    root.setLevel(max(level, logging.INFO))  # libraries' debug lines stay off
    logging.getLogger("gateway").setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if asked not in LOG_LEVELS:
        logging.getLogger("gateway").warning("GATEWAY_LOG_LEVEL=%s is not one of %s; using info", asked, ", ".join(LOG_LEVELS))


def serve(config: Config, database_url: str, host: str, port: int, workers: int, deliver: bool = True) -> None:
    """Serve until SIGINT/SIGTERM; in-flight deliveries finish or are given back."""
    configure_logging()
    asyncio.run(_preflight(open_store(database_url)))  # a bad database URL is a message, not a traceback
    runtime = Runtime(config=config, store=open_store(database_url), concurrency=workers, deliver=deliver, config_path=config.file, database_url=database_url)
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


def work(config: Config, database_url: str, workers: int) -> None:
    """Deliver only (no HTTP), until SIGINT/SIGTERM: `gateway worker`, beside `serve --no-deliver`."""
    configure_logging()
    asyncio.run(_work(config, database_url, workers))


async def _work(config: Config, database_url: str, workers: int) -> None:
    store = open_store(database_url)
    await store.open()
    current = [config]  # swapped whole by a hot reload, as in serve: destinations, secrets, limits

    def swap(new: Config) -> None:
        current[0] = new
        heap.settle()

    reloader = ConfigReloader(config.file, lambda: current[0], swap)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    watcher = asyncio.create_task(reloader.watch())
    try:
        async with delivery_client(workers, lambda: current[0].egress_allow) as client:
            engine = DeliveryEngine(store, lambda: current[0], client, Metrics(), concurrency=workers)
            task = asyncio.create_task(engine.run())
            heap.settle()
            logging.getLogger("gateway").info("worker delivering for %s (version %s) from %s", config.file, config.version, database_url)
            await stopping.wait()
            await engine.stop(SHUTDOWN_GRACE_SECONDS - 5)
            await task
    finally:
        watcher.cancel()
        await store.close()
