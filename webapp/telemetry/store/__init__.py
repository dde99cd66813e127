"""The sample store: narrow ``(series_id, ts, value)`` rows plus 1-minute and 1-hour rollups.

PostgreSQL keeps samples in day partitions written with binary COPY; SQLite keeps them in
one WITHOUT ROWID table. Callers see the same functions either way; timestamps cross
this boundary as epoch milliseconds (int64 numpy arrays).
"""

from __future__ import annotations

from django.db import connection

from webapp.telemetry.store.base import AGGREGATIONS, RESOLUTIONS, Buckets, SampleStore

__all__ = ["AGGREGATIONS", "RESOLUTIONS", "Buckets", "SampleStore", "get_store"]

_stores: dict[str, SampleStore] = {}


def get_store(vendor: str | None = None) -> SampleStore:
    vendor = vendor or connection.vendor
    store = _stores.get(vendor)
    if store is None:
        if vendor == "postgresql":
            from webapp.telemetry.store.postgres import PostgresStore

            store = PostgresStore()
        elif vendor == "sqlite":
            from webapp.telemetry.store.sqlite import SqliteStore

            store = SqliteStore()
        else:
            raise RuntimeError(f"no sample store for database vendor {vendor!r}")
        _stores[vendor] = store
    return store
