"""Durable storage behind one interface (`base.Store`); backends are chosen by URL.

`sqlite:///./data/gateway.db` (relative) or `sqlite:////var/lib/gateway.db` (absolute).
Backends are imported only when used, so a driver is named in one place.
"""

from __future__ import annotations

from gateway.store.base import DeliveryFilter, NewDelivery, NewEvent, Store, StoreUnavailable

DEFAULT_DATABASE_URL = "sqlite:///./data/gateway.db"


def open_store(url: str) -> Store:
    """A (not yet opened) store for a database URL; StoreUnavailable for URLs we cannot use."""
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SQLiteStore

        return SQLiteStore(url[len("sqlite:///"):])
    if url.startswith(("postgres://", "postgresql://")):
        raise StoreUnavailable("the PostgreSQL backend is not available yet; use a sqlite:/// URL")
    raise StoreUnavailable(f"unsupported database URL '{url}'; use sqlite:///path/to/gateway.db")


__all__ = ["DEFAULT_DATABASE_URL", "DeliveryFilter", "NewDelivery", "NewEvent", "Store", "StoreUnavailable", "open_store"]
