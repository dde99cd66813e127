"""What every sample store offers, and the numpy helpers they share."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
RESOLUTIONS = {"raw": 0, "1m": MINUTE_MS, "1h": HOUR_MS}
AGGREGATIONS = ("avg", "min", "max", "sum", "count", "p95", "last")


@dataclass(slots=True)
class Buckets:
    """Partial aggregates per (series, bucket index) that can be merged across sources."""

    series_ids: np.ndarray  # int64
    bucket: np.ndarray  # int64 bucket index from the query start
    count: np.ndarray  # float64
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    last: np.ndarray
    p95: np.ndarray | None = None

    @classmethod
    def empty(cls) -> Buckets:
        z = np.empty(0, dtype=np.float64)
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), z, z, z, z, z, None)

    @classmethod
    def from_rows(cls, rows: list[tuple], with_p95: bool) -> Buckets:
        if not rows:
            return cls.empty()
        cols = list(zip(*rows, strict=True))
        f = [np.asarray(c, dtype=np.float64) for c in cols[2:7]]
        p95 = np.asarray(cols[7], dtype=np.float64) if with_p95 else None
        return cls(np.asarray(cols[0], np.int64), np.asarray(cols[1], np.int64), *f, p95)


def merge_buckets(parts: list[Buckets]) -> Buckets:
    """Combine partial aggregates from several sources (e.g. rollup + raw tail).

    Sources cover disjoint time ranges split on a bucket boundary, so a (series, bucket)
    pair normally appears once; when it does not, counts and sums add, the extremes
    combine and ``last`` comes from the later source (parts are passed in time order).
    """
    parts = [p for p in parts if len(p.series_ids)]
    if not parts:
        return Buckets.empty()
    if len(parts) == 1:
        return parts[0]

    def cat(name):
        return np.concatenate([getattr(p, name) for p in parts])

    sids, bucket = cat("series_ids"), cat("bucket")
    p95 = np.concatenate(
        [p.p95 if p.p95 is not None else np.full(len(p.series_ids), np.nan) for p in parts]
    )
    order = np.lexsort((bucket, sids))  # stable: keeps part order within a key
    sids, bucket, p95 = sids[order], bucket[order], p95[order]
    count, total = cat("count")[order], cat("sum")[order]
    low, high, last = cat("min")[order], cat("max")[order], cat("last")[order]
    new_key = np.ones(len(sids), dtype=bool)
    new_key[1:] = (sids[1:] != sids[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(new_key)
    ends = np.append(starts[1:], len(sids)) - 1
    with np.errstate(invalid="ignore"):
        return Buckets(
            sids[starts],
            bucket[starts],
            np.add.reduceat(count, starts),
            np.add.reduceat(total, starts),
            np.fmin.reduceat(low, starts),
            np.fmax.reduceat(high, starts),
            last[ends],
            np.fmax.reduceat(p95, starts),
        )


def group_buckets(sids, ts_ms, start_ms, step_ms, count, total, low, high, last) -> Buckets:
    """Aggregate per-row partials into (series, step bucket) groups with numpy;
    ``last`` is the value of the newest row in each group."""
    if len(sids) == 0:
        return Buckets.empty()
    bucket = (ts_ms - start_ms) // step_ms
    order = np.lexsort((ts_ms, bucket, sids))
    sids, bucket = sids[order], bucket[order]
    new_key = np.ones(len(sids), dtype=bool)
    new_key[1:] = (sids[1:] != sids[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(new_key)
    ends = np.append(starts[1:], len(sids)) - 1
    return Buckets(
        sids[starts],
        bucket[starts],
        np.add.reduceat(count[order], starts),
        np.add.reduceat(total[order], starts),
        np.minimum.reduceat(low[order], starts),
        np.maximum.reduceat(high[order], starts),
        last[order][ends],
        None,
    )


class SampleStore(abc.ABC):
    """Interface; see postgres.py and sqlite.py."""

    vendor = ""

    @abc.abstractmethod
    def install(self, schema_editor) -> None: ...

    @abc.abstractmethod
    def write(self, series_ids: np.ndarray, ts_ms: np.ndarray, values: np.ndarray) -> int:
        """Store samples once: rows already present (same series and ts) are skipped.
        Returns how many rows were new."""
        ...

    @abc.abstractmethod
    def read_raw(
        self, series_ids: list[int], start_ms: int, end_ms: int, keep_stale: bool = False
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Samples in [start, end) sorted by time, NaNs included; staleness markers only
        with ``keep_stale``."""
        ...

    @abc.abstractmethod
    def read_buckets(
        self,
        series_ids: list[int],
        start_ms: int,
        end_ms: int,
        step_ms: int,
        resolution: str,
        with_p95: bool,
        with_last: bool = True,
    ) -> Buckets:
        """Aggregates per step-sized bucket over [start, end) read from one resolution.
        ``last`` costs a sort per bucket on PostgreSQL; skip it when nobody reads it."""
        ...

    @abc.abstractmethod
    def rollup(self, resolution: str, start_ms: int, end_ms: int) -> int:
        """(Re)compute rollup buckets of ``resolution`` in [start, end); returns rows written."""
        ...

    @abc.abstractmethod
    def drop_before(self, table: str, cutoff_ms: int) -> int: ...

    @abc.abstractmethod
    def latest_per_series(self, since_ms: int) -> dict[int, int]:
        """Newest sample time per series written since ``since_ms``."""
        ...

    @abc.abstractmethod
    def time_bounds(self) -> tuple[int, int] | None: ...

    @abc.abstractmethod
    def count(self, table: str = "raw") -> int: ...

    @abc.abstractmethod
    def truncate(self) -> None:
        """Delete every sample and rollup (tests, demo reset)."""
        ...


def bucket_start_ms(start_ms: int, step_ms: int, bucket: np.ndarray) -> np.ndarray:
    return start_ms + bucket.astype(np.int64) * step_ms
