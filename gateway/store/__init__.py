"""Durable storage behind one interface (`base.Store`); backends are chosen by URL.

`sqlite:///./data/gateway.db` (relative), `sqlite:////var/lib/gateway.db` (absolute), or
`postgresql://user@host:5432/dbname` for several replicas on one database.
Backends are imported only when used, so a driver is named in one place.
"""

from __future__ import annotations

from gateway.store.base import DeliveryFilter, EventQuery, NewDelivery, NewEvent, Store, StoreUnavailable

DEFAULT_DATABASE_URL = "sqlite:///./data/gateway.db"


def open_store(url: str) -> Store:
    """A (not yet opened) store for a database URL; StoreUnavailable for URLs we cannot use."""
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SQLiteStore

        return SQLiteStore(url[len("sqlite:///"):])
    if url.startswith(("postgres://", "postgresql://")):
        from gateway.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreUnavailable(f"unsupported database URL '{url}'; use sqlite:///path/to/gateway.db or postgresql://user@host:port/dbname")


async def migrate(url: str) -> None:
    """Open the database once, creating it and applying every migration it lacks (under a lock
    on PostgreSQL, so replicas starting meanwhile wait), and close it: `gateway migrate`, and
    `serve` before it starts (a bad URL or an unreachable server is a message, not a traceback)."""
    store = open_store(url)
    await store.open()
    await store.close()


__all__ = ["DEFAULT_DATABASE_URL", "DeliveryFilter", "EventQuery", "NewDelivery", "NewEvent", "Store", "StoreUnavailable", "migrate", "open_store"]
