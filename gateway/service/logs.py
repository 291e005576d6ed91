"""Logging: one line per record on stderr (text or JSON), never a secret or personal data.

Every process of the gateway (the HTTP process, its children, `gateway worker`) calls
`configure_logging` first, so all of them log in the same shape and through the same mask.
"""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

from gateway.masking import scrub


class PersonalDataFilter(logging.Filter):
    """Masks secrets (every one the process loaded) and e-mails, CPF/CNPJ and phone numbers in
    every record: the gateway's own messages never carry them, and this keeps a library's, a
    traceback's or a future message's from slipping through."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = scrub(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:  # a traceback quotes exception messages too
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
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
