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
    pair normally appears once; when it does not, counts and sums add and the extremes
    combine, and ``last`` comes from the later source (sources are passed in time order).
    """
    parts = [p for p in parts if len(p.series_ids)]
    if not parts:
        return Buckets.empty()
    if len(parts) == 1:
        return parts[0]
    merged: dict[tuple[int, int], list[float]] = {}
    for part in parts:
        for i in range(len(part.series_ids)):
            key = (int(part.series_ids[i]), int(part.bucket[i]))
            row = [
                part.count[i],
                part.sum[i],
                part.min[i],
                part.max[i],
                part.last[i],
                part.p95[i] if part.p95 is not None else np.nan,
            ]
            old = merged.get(key)
            if old is None:
                merged[key] = row
            else:
                old[0] += row[0]
                old[1] += row[1]
                old[2] = min(old[2], row[2])
                old[3] = max(old[3], row[3])
                old[4] = row[4]
                old[5] = max(old[5], row[5])
    keys = sorted(merged)
    vals = np.array([merged[k] for k in keys], dtype=np.float64)
    return Buckets(
        np.array([k[0] for k in keys], np.int64),
        np.array([k[1] for k in keys], np.int64),
        vals[:, 0],
        vals[:, 1],
        vals[:, 2],
        vals[:, 3],
        vals[:, 4],
        vals[:, 5],
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
    ) -> Buckets:
        """Aggregates per step-sized bucket over [start, end) read from one resolution."""
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
