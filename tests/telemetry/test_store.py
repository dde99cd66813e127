"""The sample store on the configured database: exactly-once writes, NaN fidelity,
bucket aggregation, rollups (incl. late data) and retention."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from ingest.types import STALE_NAN, is_stale_marker
from webapp.telemetry import services
from webapp.telemetry.models import RollupDirtyRange
from webapp.telemetry.store.base import DAY_MS, HOUR_MS, MINUTE_MS

NOW = int(time.time() * 1000) // HOUR_MS * HOUR_MS  # an hour boundary, recent


def _arrays(points):
    sids, ts, vals = zip(*points, strict=True)
    return np.array(sids, np.int64), np.array(ts, np.int64), np.array(vals, np.float64)


def test_write_is_exactly_once(store):
    sids, ts, vals = _arrays([(1, NOW + i * 1000, float(i)) for i in range(100)])
    assert store.write(sids, ts, vals) == 100
    assert store.write(sids, ts, vals) == 0  # a retried request stores nothing twice
    more = _arrays([(1, NOW + i * 1000, float(i)) for i in range(50, 150)])
    assert store.write(*more) == 50
    assert store.count() == 150


def test_nan_inf_and_staleness_markers_survive(store):
    sids, ts, vals = _arrays(
        [
            (7, NOW, math.nan),
            (7, NOW + 1000, math.inf),
            (7, NOW + 2000, -math.inf),
            (7, NOW + 3000, STALE_NAN),
        ]
    )
    store.write(sids, ts, vals)
    t, v = store.read_raw([7], NOW - 1, NOW + 10_000)[7]
    assert t.tolist() == [NOW, NOW + 1000, NOW + 2000]
    assert math.isnan(v[0]) and v[1] == math.inf and v[2] == -math.inf
    t, v = store.read_raw([7], NOW - 1, NOW + 10_000, keep_stale=True)[7]
    assert len(t) == 4 and is_stale_marker(float(v[3])) and not is_stale_marker(float(v[0]))


def test_read_raw_is_sorted_and_split_by_series(store):
    rng = np.random.default_rng(1)
    points = [
        (sid, NOW + int(i) * 15_000, float(rng.normal()))
        for sid in (3, 1, 2)
        for i in rng.permutation(40)
    ]
    store.write(*_arrays(points))
    data = store.read_raw([1, 2, 3, 99], NOW, NOW + 40 * 15_000)
    assert sorted(data) == [1, 2, 3]
    for t, _ in data.values():
        assert len(t) == 40 and np.all(np.diff(t) > 0)


@pytest.mark.parametrize("resolution", ["raw", "1m"])
def test_bucket_aggregates_match_numpy(store, resolution):
    rng = np.random.default_rng(2)
    values = rng.normal(50, 10, size=240)  # 1 hour at 15 s
    ts = NOW - HOUR_MS + np.arange(240) * 15_000
    store.write(np.full(240, 5, np.int64), ts.astype(np.int64), values)
    if resolution == "1m":
        store.rollup("1m", NOW - HOUR_MS, NOW)
    step = 10 * MINUTE_MS
    b = store.read_buckets([5], NOW - HOUR_MS, NOW, step, resolution, with_p95=True)
    order = np.argsort(b.bucket)
    assert b.bucket[order].tolist() == list(range(6))
    chunks = values.reshape(6, 40)
    assert np.allclose(b.count[order], 40)
    assert np.allclose(b.sum[order] / b.count[order], chunks.mean(axis=1))
    assert np.allclose(b.min[order], chunks.min(axis=1))
    assert np.allclose(b.max[order], chunks.max(axis=1))
    assert np.allclose(b.last[order], chunks[:, -1])
    if resolution == "raw":
        assert np.allclose(b.p95[order], np.percentile(chunks, 95, axis=1))
    else:  # over per-minute averages, as documented
        minute_means = values.reshape(60, 4).mean(axis=1).reshape(6, 10)
        assert np.allclose(b.p95[order], np.percentile(minute_means, 95, axis=1))


def test_rollups_are_idempotent_and_exclude_nan(store):
    ts = (NOW - 2 * HOUR_MS + np.arange(480) * 15_000).astype(np.int64)
    vals = np.ones(480)
    vals[0] = math.nan
    store.write(np.full(480, 9, np.int64), ts, vals)
    first = store.rollup("1m", NOW - 2 * HOUR_MS, NOW)
    assert first == 120 and store.rollup("1m", NOW - 2 * HOUR_MS, NOW) == 120
    assert store.count("1m") == 120
    b = store.read_buckets([9], NOW - 2 * HOUR_MS, NOW, HOUR_MS, "1m", False)
    assert sorted(b.count.tolist()) == [239.0, 240.0]  # the NaN sample is not counted
    assert store.rollup("1h", NOW - 2 * HOUR_MS, NOW) == 2


def test_run_rollups_catches_up_and_redoes_late_data(store):
    ts = (NOW - 3 * HOUR_MS + np.arange(720) * 15_000).astype(np.int64)
    store.write(np.full(720, 11, np.int64), ts, np.full(720, 2.0))
    done = services.run_rollups(now_ms=NOW + 5 * MINUTE_MS)
    assert done["1m"] == 180 and done["1h"] == 3
    # A late sample into an hour that was already rolled up.
    from webapp.telemetry.writer import write_samples

    write_samples(
        np.array([11], np.int64),
        np.array([NOW - 2 * HOUR_MS + 7_500], np.int64),
        np.array([1002.0]),
    )
    assert RollupDirtyRange.objects.exists()
    services.run_rollups(now_ms=NOW + 6 * MINUTE_MS)
    assert not RollupDirtyRange.objects.exists()
    b = store.read_buckets([11], NOW - 3 * HOUR_MS, NOW, HOUR_MS, "1h", False)
    assert max(b.max.tolist()) == 1002.0
    assert sum(b.count.tolist()) == 721


def test_retention_drops_old_data(store, settings):
    settings.TELLTALE_RETENTION_DAYS = 2
    old = NOW - 5 * DAY_MS
    store.write(np.array([1, 1], np.int64), np.array([old, NOW], np.int64), np.array([1.0, 2.0]))
    removed = services.apply_retention(now_ms=NOW + 1000)
    assert removed["raw"] >= 1
    assert store.count() == 1
    assert store.read_raw([1], old - 1, NOW + 1)[1][0].tolist() == [NOW]
