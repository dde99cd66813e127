"""PostgreSQL sample store: day partitions, binary COPY in and out, BRIN on time."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import numpy as np
import psycopg
from django.db import IntegrityError, connection, transaction

from webapp.telemetry.store.base import (
    HOUR_MS,
    MINUTE_MS,
    Buckets,
    SampleStore,
    group_buckets,
)

# Binary COPY: timestamptz is int64 microseconds since 2000-01-01 UTC.
PG_EPOCH_MS = 946_684_800_000
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
ROW_DTYPE = np.dtype(
    [
        ("nfields", ">i2"),
        ("len_sid", ">i4"),
        ("sid", ">i8"),
        ("len_ts", ">i4"),
        ("ts", ">i8"),
        ("len_v", ">i4"),
        ("v", ">f8"),
    ]
)
STALE_BITS = np.uint64(0x7FF0000000000002)

TABLES = {
    "raw": ("telemetry_sample", "ts", "day"),
    "1m": ("telemetry_sample_1m", "bucket", "day"),
    "1h": ("telemetry_sample_1h", "bucket", "month"),
}


# Timestamps from user input are clamped to what datetime and PostgreSQL can hold.
MIN_MS, MAX_MS = 0, 253_402_300_799_000  # 1970-01-01 .. 9999-12-31


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(min(max(ms, MIN_MS), MAX_MS) / 1000, tz=UTC)


def encode_copy(series_ids: np.ndarray, ts_ms: np.ndarray, values: np.ndarray) -> bytes:
    rows = np.empty(len(series_ids), dtype=ROW_DTYPE)
    rows["nfields"] = 3
    rows["len_sid"] = 8
    rows["sid"] = series_ids
    rows["len_ts"] = 8
    rows["ts"] = (np.asarray(ts_ms, dtype=np.int64) - PG_EPOCH_MS) * 1000
    rows["len_v"] = 8
    # Reinterpret, not convert, so NaN payloads (Prometheus' stale marker) survive.
    rows["v"] = np.asarray(values, dtype=np.float64).view(np.uint64).byteswap().view(">f8")
    return COPY_HEADER + rows.tobytes() + COPY_TRAILER


def _period_start(day: date, period: str) -> date:
    return day.replace(day=1) if period == "month" else day


def _period_end(start: date, period: str) -> date:
    if period == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


def _partition_name(table: str, start: date, period: str) -> str:
    return f"{table}_p{start:%Y%m}" if period == "month" else f"{table}_p{start:%Y%m%d}"


class PostgresStore(SampleStore):
    vendor = "postgresql"

    def __init__(self):
        self._known_partitions: set[str] = set()
        self._lock = threading.Lock()

    # --- schema -----------------------------------------------------------------------
    def install(self, schema_editor) -> None:
        run = schema_editor.execute
        run(
            "CREATE TABLE IF NOT EXISTS telemetry_sample ("
            " series_id bigint NOT NULL, ts timestamptz NOT NULL, value double precision NOT NULL,"
            " PRIMARY KEY (series_id, ts)) PARTITION BY RANGE (ts)"
        )
        run(
            "CREATE INDEX IF NOT EXISTS telemetry_sample_ts_brin"
            " ON telemetry_sample USING brin (ts)"
        )
        for key in ("1m", "1h"):
            table = TABLES[key][0]
            run(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                " series_id bigint NOT NULL, bucket timestamptz NOT NULL,"
                " count integer NOT NULL, sum double precision NOT NULL,"
                " min double precision NOT NULL, max double precision NOT NULL,"
                " last double precision NOT NULL,"
                " PRIMARY KEY (series_id, bucket)) PARTITION BY RANGE (bucket)"
            )
            run(f"CREATE INDEX IF NOT EXISTS {table}_bucket_brin ON {table} USING brin (bucket)")

    def ensure_partitions(self, resolution: str, start_ms: int, end_ms: int) -> None:
        table, _, period = TABLES[resolution]
        day = ms_to_dt(start_ms).date()
        last = ms_to_dt(max(start_ms, end_ms)).date()
        wanted = []
        while day <= last:
            start = _period_start(day, period)
            name = _partition_name(table, start, period)
            if name not in self._known_partitions:
                wanted.append((name, start))
            day = _period_end(start, period)
        for name, start in wanted:
            self._create_partition(table, name, start, _period_end(start, period))

    def _create_partition(self, table: str, name: str, start: date, end: date) -> None:
        with self._lock:
            if name in self._known_partitions:
                return
            sql = (
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                f"FOR VALUES FROM ('{start.isoformat()} 00:00:00+00') "
                f"TO ('{end.isoformat()} 00:00:00+00')"
            )
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(sql)
            except (psycopg.errors.DuplicateTable, IntegrityError, psycopg.errors.UniqueViolation):
                pass  # another process created it at the same moment
            except Exception as exc:
                # Two sessions racing on CREATE ... IF NOT EXISTS may also fail on the
                # catalog's unique index; accept it when the partition now exists.
                if not self._partition_exists(name):
                    raise exc
            self._known_partitions.add(name)

    def _partition_exists(self, name: str) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
            return bool(cursor.fetchone()[0])

    def partitions(self, resolution: str) -> list[tuple[str, datetime, datetime]]:
        table = TABLES[resolution][0]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid"
                " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
                [table],
            )
            found = []
            for name, bound in cursor.fetchall():
                # FOR VALUES FROM ('2026-11-29 00:00:00+00') TO ('2026-11-30 00:00:00+00')
                parts = bound.split("'")
                lo = datetime.fromisoformat(parts[1]).astimezone(UTC)
                hi = datetime.fromisoformat(parts[3]).astimezone(UTC)
                found.append((name, lo, hi))
        return sorted(found, key=lambda p: p[1])

    # --- write ------------------------------------------------------------------------
    def write(self, series_ids: np.ndarray, ts_ms: np.ndarray, values: np.ndarray) -> int:
        if len(series_ids) == 0:
            return 0
        payload = encode_copy(series_ids, ts_ms, values)
        self.ensure_partitions("raw", int(ts_ms.min()), int(ts_ms.max()))
        try:
            return self._copy_in(payload, len(series_ids))
        except psycopg.errors.CheckViolation:
            # "no partition found": a partition we remembered was rolled back (an outer
            # transaction failed) or dropped by retention. Forget and create again.
            self._known_partitions.clear()
            self.ensure_partitions("raw", int(ts_ms.min()), int(ts_ms.max()))
            return self._copy_in(payload, len(series_ids))

    def _copy_in(self, payload: bytes, n: int) -> int:
        with transaction.atomic(), connection.cursor() as cursor:
            try:
                with (
                    transaction.atomic(),
                    cursor.copy(
                        "COPY telemetry_sample (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
                    ) as copy,
                ):
                    copy.write(payload)
                return n
            except (psycopg.errors.UniqueViolation, IntegrityError):
                pass
            # Some rows exist already (a client retried): stage and skip the duplicates.
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS telltale_sample_stage"
                " (series_id bigint, ts timestamptz, value double precision) ON COMMIT DELETE ROWS"
            )
            with cursor.copy(
                "COPY telltale_sample_stage (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(payload)
            cursor.execute(
                "INSERT INTO telemetry_sample (series_id, ts, value)"
                " SELECT series_id, ts, value FROM telltale_sample_stage"
                " ON CONFLICT (series_id, ts) DO NOTHING"
            )
            return cursor.rowcount

    # --- read -------------------------------------------------------------------------
    def read_raw(self, series_ids, start_ms, end_ms, keep_stale=False):
        if not series_ids:
            return {}
        # One row of three byteas instead of a COPY row per sample (psycopg hands a COPY
        # to Python row by row, half the time of a fleet's model windows); sorted here,
        # which is also cheaper than asking PostgreSQL to.
        sids, ts, values = self._columns(
            [
                ("series_id", "int8"),
                ("(date_part('epoch', ts) * 1000)::int8", "int8"),
                ("value", "float8"),  # float8send keeps a staleness marker's bits
            ],
            "telemetry_sample WHERE series_id = ANY(%(ids)s) AND ts >= %(start)s AND ts < %(end)s",
            series_ids,
            start_ms,
            end_ms,
        )
        order = np.lexsort((ts, sids))
        sids, ts, values = sids[order], ts[order], values[order]
        if not keep_stale:
            keep = values.view(np.uint64) != STALE_BITS
            sids, ts, values = sids[keep], ts[keep], values[keep]
        return _split_by_series(sids, ts, values)

    def _columns(self, columns, source: str, series_ids, start_ms: int, end_ms: int):
        """Read ``columns`` ((sql expression, "int8" or "float8") pairs) of the rows of
        ``source`` as numpy arrays. Each column comes back as one bytea of big-endian
        values (every aggregate of one query sees the rows in the same order), which
        numpy reads without creating a Python object per value."""
        select = ", ".join(f"string_agg({kind}send({expr}), ''::bytea)" for expr, kind in columns)
        params = {
            "ids": list(map(int, series_ids)),
            "start": ms_to_dt(start_ms),
            "end": ms_to_dt(end_ms),
        }
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(f"SELECT {select} FROM {source}", params, binary=True)
            row = cursor.fetchone()
        return [
            np.frombuffer(blob or b"", dtype=">i8" if kind == "int8" else ">f8").astype(
                np.int64 if kind == "int8" else np.float64
            )
            for blob, (_, kind) in zip(row, columns, strict=True)
        ]

    def _buckets_in_numpy(self, series_ids, start_ms, end_ms, step_ms, resolution) -> Buckets:
        connection.ensure_connection()
        where = "WHERE series_id = ANY(%(ids)s) AND {t} >= %(start)s AND {t} < %(end)s"
        if resolution == "raw":
            sids, ts, values = self._columns(
                [
                    ("series_id", "int8"),
                    ("(date_part('epoch', ts) * 1000)::int8", "int8"),
                    ("value", "float8"),
                ],
                "telemetry_sample " + where.format(t="ts") + " AND value <> 'NaN'",
                series_ids,
                start_ms,
                end_ms,
            )
            count = np.ones(len(sids))
            return group_buckets(sids, ts, start_ms, step_ms, count, values, values, values, values)
        sids, ts, count, total, low, high, last = self._columns(
            [
                ("series_id", "int8"),
                ("(date_part('epoch', bucket) * 1000)::int8", "int8"),
                ("count::float8", "float8"),
                ("sum", "float8"),
                ("min", "float8"),
                ("max", "float8"),
                ("last", "float8"),
            ],
            f"{TABLES[resolution][0]} " + where.format(t="bucket"),
            series_ids,
            start_ms,
            end_ms,
        )
        return group_buckets(sids, ts, start_ms, step_ms, count, total, low, high, last)

    def read_buckets(
        self, series_ids, start_ms, end_ms, step_ms, resolution, with_p95, with_last=True
    ):
        if not series_ids or end_ms <= start_ms:
            return Buckets.empty()
        if not with_p95:
            return self._buckets_in_numpy(series_ids, start_ms, end_ms, step_ms, resolution)
        if resolution == "raw":
            source = (
                "SELECT series_id, date_bin(%(stride)s, ts, %(origin)s) AS b, count(*) AS c,"
                " sum(value) AS s, min(value) AS lo, max(value) AS hi,"
                " {last} AS last{p95}"
                " FROM telemetry_sample WHERE series_id = ANY(%(ids)s)"
                " AND ts >= %(start)s AND ts < %(end)s AND value <> 'NaN' GROUP BY 1, 2"
            ).format(
                last="(array_agg(value ORDER BY ts DESC))[1]" if with_last else "NULL::float8",
                p95=", percentile_cont(0.95) WITHIN GROUP (ORDER BY value) AS p"
                if with_p95
                else "",
            )
        else:
            table = TABLES[resolution][0]
            source = (
                "SELECT series_id, date_bin(%(stride)s, bucket, %(origin)s) AS b,"
                " sum(count)::float8 AS c, sum(sum) AS s, min(min) AS lo, max(max) AS hi,"
                " {last} AS last{p95}"
                f" FROM {table} WHERE series_id = ANY(%(ids)s)"
                " AND bucket >= %(start)s AND bucket < %(end)s GROUP BY 1, 2"
            ).format(
                last="(array_agg(last ORDER BY bucket DESC))[1]" if with_last else "NULL::float8",
                p95=", percentile_cont(0.95) WITHIN GROUP (ORDER BY sum / count) AS p"
                if with_p95
                else "",
            )
        sql = (
            "SELECT series_id, ((extract(epoch FROM b) * 1000)::bigint - %(start_ms)s)"
            " / %(step)s, c, s, lo, hi, last" + (", p" if with_p95 else "") + f" FROM ({source}) q"
        )
        params = {
            "stride": timedelta(milliseconds=step_ms),
            "origin": ms_to_dt(start_ms),
            "ids": list(map(int, series_ids)),
            "start": ms_to_dt(start_ms),
            "end": ms_to_dt(end_ms),
            "start_ms": start_ms,
            "step": step_ms,
        }
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        return Buckets.from_rows(rows, with_p95)

    # --- maintenance ------------------------------------------------------------------
    def rollup(self, resolution, start_ms, end_ms):
        width = MINUTE_MS if resolution == "1m" else HOUR_MS
        start_ms -= start_ms % width
        end_ms -= end_ms % width
        if end_ms <= start_ms:
            return 0
        self.ensure_partitions(resolution, start_ms, end_ms - 1)
        table = TABLES[resolution][0]
        if resolution == "1m":
            select = (
                "SELECT series_id, date_bin('1 minute', ts, 'epoch'::timestamptz), count(*),"
                " sum(value), min(value), max(value), (array_agg(value ORDER BY ts DESC))[1]"
                " FROM telemetry_sample WHERE ts >= %(start)s AND ts < %(end)s"
                " AND value <> 'NaN' GROUP BY 1, 2"
            )
        else:
            select = (
                "SELECT series_id, date_bin('1 hour', bucket, 'epoch'::timestamptz), sum(count),"
                " sum(sum), min(min), max(max), (array_agg(last ORDER BY bucket DESC))[1]"
                " FROM telemetry_sample_1m WHERE bucket >= %(start)s AND bucket < %(end)s"
                " GROUP BY 1, 2"
            )
        params = {"start": ms_to_dt(start_ms), "end": ms_to_dt(end_ms)}
        with transaction.atomic(), connection.cursor() as cursor:
            # Recompute whole buckets so running twice, or after late data, gives one answer.
            cursor.execute(
                f"DELETE FROM {table} WHERE bucket >= %(start)s AND bucket < %(end)s", params
            )
            cursor.execute(
                f"INSERT INTO {table} (series_id, bucket, count, sum, min, max, last) {select}",
                params,
            )
            return cursor.rowcount

    def drop_before(self, table, cutoff_ms):
        cutoff = ms_to_dt(cutoff_ms)
        dropped = 0
        for name, _, hi in self.partitions(table):
            if hi <= cutoff:
                with connection.cursor() as cursor:
                    cursor.execute(f"DROP TABLE IF EXISTS {name}")
                self._known_partitions.discard(name)
                dropped += 1
        return dropped

    def latest_per_series(self, since_ms):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT series_id, (extract(epoch FROM max(ts)) * 1000)::bigint"
                " FROM telemetry_sample WHERE ts >= %s GROUP BY 1",
                [ms_to_dt(since_ms)],
            )
            return dict(cursor.fetchall())

    def time_bounds(self):
        parts = self.partitions("raw")
        if not parts:
            return None
        with connection.cursor() as cursor:
            lo = hi = None
            for name, _, _ in parts:
                cursor.execute(f"SELECT min(ts) FROM {name}")
                lo = cursor.fetchone()[0]
                if lo is not None:
                    break
            for name, _, _ in reversed(parts):
                cursor.execute(f"SELECT max(ts) FROM {name}")
                hi = cursor.fetchone()[0]
                if hi is not None:
                    break
        if lo is None or hi is None:
            return None
        return int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)

    def count(self, table="raw"):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {TABLES[table][0]}")
            return int(cursor.fetchone()[0])

    def truncate(self):
        with connection.cursor() as cursor:
            for table, _, _ in TABLES.values():
                cursor.execute(f"TRUNCATE {table}")


def _split_by_series(sids: np.ndarray, ts: np.ndarray, values: np.ndarray):
    """Rows sorted by series -> {series_id: (ts_ms, values)}."""
    out = {}
    if len(sids) == 0:
        return out
    edges = np.flatnonzero(np.diff(sids)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(sids)]))
    for a, b in zip(starts, ends, strict=True):
        out[int(sids[a])] = (ts[a:b], values[a:b])
    return out
