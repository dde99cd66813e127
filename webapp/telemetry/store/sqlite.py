"""SQLite sample store for the embedded profile: one WITHOUT ROWID table per resolution.

Timestamps are epoch milliseconds. SQLite turns NaN into NULL, so NaN samples are kept
as NULL values with ``nan_kind`` saying which NaN it was (1 plain, 2 stale marker).
"""

from __future__ import annotations

import numpy as np
from django.db import connection, transaction

from ingest.types import NORMAL_NAN, STALE_NAN
from webapp.telemetry.store.base import HOUR_MS, MINUTE_MS, Buckets, SampleStore
from webapp.telemetry.store.postgres import STALE_BITS, _split_by_series

TABLES = {"raw": "telemetry_sample", "1m": "telemetry_sample_1m", "1h": "telemetry_sample_1h"}
NAN_VALUE = NORMAL_NAN


def configure_sqlite_connection(sender, connection, **kwargs):
    """WAL lets the web app read while a writer commits; FULL sync keeps answered data."""
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=20000")


class SqliteStore(SampleStore):
    vendor = "sqlite"

    def install(self, schema_editor) -> None:
        schema_editor.execute(
            "CREATE TABLE IF NOT EXISTS telemetry_sample (series_id INTEGER NOT NULL,"
            " ts INTEGER NOT NULL, value REAL, nan_kind INTEGER,"
            " PRIMARY KEY (series_id, ts)) WITHOUT ROWID"
        )
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS telemetry_sample_ts ON telemetry_sample (ts)"
        )
        for key in ("1m", "1h"):
            table = TABLES[key]
            schema_editor.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (series_id INTEGER NOT NULL,"
                " bucket INTEGER NOT NULL, count INTEGER NOT NULL, sum REAL NOT NULL,"
                " min REAL NOT NULL, max REAL NOT NULL, last REAL NOT NULL,"
                " PRIMARY KEY (series_id, bucket)) WITHOUT ROWID"
            )
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {table}_bucket ON {table} (bucket)")

    def write(self, series_ids, ts_ms, values):
        if len(series_ids) == 0:
            return 0
        values = np.asarray(values, dtype=np.float64)
        nan = np.isnan(values)
        kinds = np.where(nan, np.where(values.view(np.uint64) == STALE_BITS, 2, 1), 0)
        rows = [
            (sid, ts, None if k else v, k or None)
            for sid, ts, v, k in zip(
                np.asarray(series_ids).tolist(),
                np.asarray(ts_ms).tolist(),
                values.tolist(),
                kinds.tolist(),
                strict=True,
            )
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            before = connection.connection.total_changes
            cursor.executemany(
                "INSERT OR IGNORE INTO telemetry_sample (series_id, ts, value, nan_kind)"
                " VALUES (%s, %s, %s, %s)",
                rows,
            )
            return connection.connection.total_changes - before

    def read_raw(self, series_ids, start_ms, end_ms, keep_stale=False):
        if not series_ids:
            return {}
        marks = ",".join("%s" for _ in series_ids)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT series_id, ts, value, nan_kind FROM telemetry_sample"
                f" WHERE series_id IN ({marks}) AND ts >= %s AND ts < %s"
                f"{'' if keep_stale else ' AND (nan_kind IS NULL OR nan_kind = 1)'}"
                " ORDER BY series_id, ts",
                [*map(int, series_ids), start_ms, end_ms],
            )
            rows = cursor.fetchall()
        if not rows:
            return {}
        sids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        ts = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        values = np.fromiter(
            (r[2] if r[3] is None else (STALE_NAN if r[3] == 2 else NAN_VALUE) for r in rows),
            np.float64,
            len(rows),
        )
        return _split_by_series(sids, ts, values)

    def read_buckets(
        self, series_ids, start_ms, end_ms, step_ms, resolution, with_p95, with_last=True
    ):
        if not series_ids or end_ms <= start_ms:
            return Buckets.empty()
        marks = ",".join("%s" for _ in series_ids)
        if resolution == "raw":
            sql = (
                "SELECT series_id, (ts - %s) / %s AS b, count(value), sum(value), min(value),"
                " max(value), value, max(ts) FROM telemetry_sample"
                f" WHERE series_id IN ({marks}) AND ts >= %s AND ts < %s AND value IS NOT NULL"
                " GROUP BY 1, 2"
            )
        else:
            sql = (
                "SELECT series_id, (bucket - %s) / %s AS b, sum(count), sum(sum), min(min),"
                f" max(max), last, max(bucket) FROM {TABLES[resolution]}"
                f" WHERE series_id IN ({marks}) AND bucket >= %s AND bucket < %s GROUP BY 1, 2"
            )
        # SQLite returns the bare column (value / last) from the row holding max(ts).
        with connection.cursor() as cursor:
            cursor.execute(sql, [start_ms, step_ms, *map(int, series_ids), start_ms, end_ms])
            rows = [r[:7] for r in cursor.fetchall()]
        buckets = Buckets.from_rows(rows, with_p95=False)
        if with_p95 and len(buckets.series_ids):
            buckets.p95 = self._p95(series_ids, start_ms, end_ms, step_ms, resolution, buckets)
        return buckets

    def _p95(self, series_ids, start_ms, end_ms, step_ms, resolution, buckets) -> np.ndarray:
        marks = ",".join("%s" for _ in series_ids)
        if resolution == "raw":
            sql = (
                f"SELECT series_id, (ts - %s) / %s, value FROM telemetry_sample"
                f" WHERE series_id IN ({marks}) AND ts >= %s AND ts < %s AND value IS NOT NULL"
            )
        else:
            sql = (
                f"SELECT series_id, (bucket - %s) / %s, sum / count FROM {TABLES[resolution]}"
                f" WHERE series_id IN ({marks}) AND bucket >= %s AND bucket < %s"
            )
        groups: dict[tuple[int, int], list[float]] = {}
        with connection.cursor() as cursor:
            cursor.execute(sql, [start_ms, step_ms, *map(int, series_ids), start_ms, end_ms])
            for sid, b, v in cursor.fetchall():
                groups.setdefault((sid, b), []).append(v)
        return np.array(
            [
                np.percentile(groups[(int(s), int(b))], 95)
                for s, b in zip(buckets.series_ids, buckets.bucket, strict=True)
            ],
            dtype=np.float64,
        )

    def rollup(self, resolution, start_ms, end_ms):
        width = MINUTE_MS if resolution == "1m" else HOUR_MS
        start_ms -= start_ms % width
        end_ms -= end_ms % width
        if end_ms <= start_ms:
            return 0
        table = TABLES[resolution]
        if resolution == "1m":
            select = (
                f"SELECT series_id, (ts / {width}) * {width} AS b, count(value) AS c,"
                " sum(value) AS s, min(value) AS lo, max(value) AS hi, value AS l, max(ts)"
                " FROM telemetry_sample WHERE ts >= %s AND ts < %s AND value IS NOT NULL"
                " GROUP BY 1, 2"
            )
        else:
            select = (
                f"SELECT series_id, (bucket / {width}) * {width} AS b, sum(count) AS c,"
                " sum(sum) AS s, min(min) AS lo, max(max) AS hi, last AS l, max(bucket)"
                " FROM telemetry_sample_1m WHERE bucket >= %s AND bucket < %s GROUP BY 1, 2"
            )
        # The bare column (value / last) comes from the row holding max(ts) in SQLite.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE bucket >= %s AND bucket < %s", [start_ms, end_ms]
            )
            cursor.execute(
                f"INSERT INTO {table} (series_id, bucket, count, sum, min, max, last)"
                f" SELECT series_id, b, c, s, lo, hi, l FROM ({select})",
                [start_ms, end_ms],
            )
            return cursor.rowcount

    def drop_before(self, table, cutoff_ms):
        column = "ts" if table == "raw" else "bucket"
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {TABLES[table]} WHERE {column} < %s", [cutoff_ms])
            return cursor.rowcount

    def latest_per_series(self, since_ms):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT series_id, max(ts) FROM telemetry_sample WHERE ts >= %s GROUP BY 1",
                [since_ms],
            )
            return dict(cursor.fetchall())

    def time_bounds(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT min(ts), max(ts) FROM telemetry_sample")
            lo, hi = cursor.fetchone()
        return None if lo is None else (int(lo), int(hi))

    def count(self, table="raw"):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {TABLES[table]}")
            return int(cursor.fetchone()[0])

    def truncate(self):
        with connection.cursor() as cursor:
            for table in TABLES.values():
                cursor.execute(f"DELETE FROM {table}")
