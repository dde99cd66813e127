"""Reading telemetry: series by matchers, range queries over raw data or rollups, logs.

Dashboards, alert rules, models and the Prometheus-compatible API all read through here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db.models import Q
from django.db.models.fields.json import KeyTransform

from ingest.types import STALE_NAN
from webapp.telemetry.models import LogRecord, Series
from webapp.telemetry.selectors import Matcher, SelectorError, parse_selector
from webapp.telemetry.services import rollup_complete_until
from webapp.telemetry.store import AGGREGATIONS, get_store
from webapp.telemetry.store.base import HOUR_MS, MINUTE_MS, Buckets, merge_buckets

MAX_SERIES = 10_000
MAX_POINTS = 11_000  # per series, as Prometheus limits query_range
LOOKBACK_MS = 5 * MINUTE_MS
FINER = {"1h": "1m", "1m": "raw"}


class QueryError(ValueError):
    """A query that cannot be answered as asked; the message says why."""


@dataclass(slots=True)
class SeriesResult:
    series: Series
    ts_ms: np.ndarray
    values: np.ndarray


# --- series ----------------------------------------------------------------------------
def select_series(matchers: list[Matcher], limit: int = MAX_SERIES) -> list[Series]:
    qs = Series.objects.all()
    post: list[Matcher] = []
    for i, m in enumerate(matchers):
        if m.op == "=" and m.value != "":
            if m.name == "__name__":
                qs = qs.filter(metric=m.value)
            else:
                alias = f"_label{i}"
                qs = qs.alias(**{alias: KeyTransform(m.name, "labels")}).filter(**{alias: m.value})
        else:
            post.append(m)
    found = []
    for s in qs.order_by("metric", "id").iterator(chunk_size=2000):
        labels = s.all_labels
        if all(m.matches(labels.get(m.name, "")) for m in post):
            found.append(s)
            if len(found) > limit:
                raise QueryError(
                    f"the selector matches more than {limit} series; add label matchers"
                )
    return found


def select(text: str, limit: int = MAX_SERIES) -> list[Series]:
    try:
        return select_series(parse_selector(text), limit)
    except SelectorError as exc:
        raise QueryError(str(exc)) from None


def label_names(series: list[Series] | None = None) -> list[str]:
    names = {"__name__"}
    rows = (s.labels for s in series) if series is not None else _all_label_sets()
    for labels in rows:
        names.update(labels)
    return sorted(names)


def label_values(name: str, series: list[Series] | None = None) -> list[str]:
    if name == "__name__":
        if series is not None:
            return sorted({s.metric for s in series})
        return list(Series.objects.order_by("metric").values_list("metric", flat=True).distinct())
    rows = (s.labels for s in series) if series is not None else _all_label_sets()
    return sorted({labels[name] for labels in rows if name in labels})


def _all_label_sets():
    return Series.objects.values_list("labels", flat=True).iterator(chunk_size=5000)


# --- range queries -----------------------------------------------------------------------
def choose_resolution(start_ms: int, end_ms: int, step_ms: int) -> str:
    span = end_ms - start_ms
    if step_ms >= HOUR_MS and span > 2 * 86_400_000:
        return "1h"
    if step_ms >= MINUTE_MS and span > 3 * HOUR_MS:
        return "1m"
    return "raw"


def aligned(start_ms: int, step_ms: int, resolution: str) -> tuple[int, int]:
    """Rollup buckets only combine exactly when query buckets are made of whole ones."""
    width = {"raw": 1, "1m": MINUTE_MS, "1h": HOUR_MS}[resolution]
    step_ms = max(width, -(-step_ms // width) * width)
    return start_ms - start_ms % width, step_ms


def range_query(
    series: list[Series], start_ms: int, end_ms: int, step_ms: int, agg: str = "avg"
) -> tuple[list[SeriesResult], dict]:
    """Aggregate each series over step-wide buckets from start through end (inclusive,
    as Prometheus evaluates a step at ``end``).

    Returns the results and how they were computed (resolution, aligned start and step).
    """
    if agg not in AGGREGATIONS:
        raise QueryError(f"agg must be one of {', '.join(AGGREGATIONS)}")
    _check_range(start_ms, end_ms, step_ms)
    resolution = choose_resolution(start_ms, end_ms, step_ms)
    start_ms, step_ms = aligned(start_ms, step_ms, resolution)
    ids = [s.id for s in series]
    want = (agg == "p95", agg == "last")
    buckets = _read(ids, start_ms, end_ms + 1, step_ms, resolution, want, rollup_complete_until())
    order = np.lexsort((buckets.bucket, buckets.series_ids))
    sids = buckets.series_ids[order]
    ts = start_ms + buckets.bucket[order] * step_ms
    values = _pick(buckets, agg)[order]
    found, first = np.unique(sids, return_index=True)
    ends = [*first[1:].tolist(), len(sids)] if len(first) else []
    bounds = dict(zip(found.tolist(), zip(first.tolist(), ends, strict=True), strict=True))
    results = []
    for s in series:
        lo, hi = bounds.get(s.id, (0, 0))
        results.append(SeriesResult(s, ts[lo:hi], values[lo:hi]))
    return results, {"resolution": resolution, "start_ms": start_ms, "step_ms": step_ms}


def _read(ids, start_ms, end_ms, step_ms, resolution, want, complete) -> Buckets:
    """``want`` = (p95, last): the costly aggregates this query needs."""
    store = get_store()
    if resolution == "raw":
        return store.read_buckets(ids, start_ms, end_ms, step_ms, "raw", *want)
    done = complete.get(resolution)
    if done is None or done <= start_ms:
        return _read(ids, start_ms, end_ms, step_ms, FINER[resolution], want, complete)
    boundary = min(end_ms, start_ms + (done - start_ms) // step_ms * step_ms)
    head = store.read_buckets(ids, start_ms, boundary, step_ms, resolution, *want)
    if boundary >= end_ms:
        return head
    tail = _read(ids, boundary, end_ms, step_ms, FINER[resolution], want, complete)
    tail.bucket = tail.bucket + (boundary - start_ms) // step_ms
    return merge_buckets([head, tail])


def _pick(b: Buckets, agg: str) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        if agg == "avg":
            return b.sum / b.count
    return {
        "min": b.min,
        "max": b.max,
        "sum": b.sum,
        "count": b.count,
        "last": b.last,
        "p95": b.p95 if b.p95 is not None else b.max,
    }[agg]


def _check_range(start_ms: int, end_ms: int, step_ms: int) -> None:
    if end_ms < start_ms:
        raise QueryError("end timestamp must not be before start time")
    if step_ms <= 0:
        raise QueryError("zero or negative query resolution step widths are not accepted")
    if (end_ms - start_ms) // step_ms > MAX_POINTS:
        raise QueryError(
            f"exceeded maximum resolution of {MAX_POINTS} points per timeseries;"
            " try decreasing the query resolution (?step=XX)"
        )


def instant_vectors(
    series: list[Series], start_ms: int, end_ms: int, step_ms: int, lookback_ms: int = LOOKBACK_MS
) -> list[SeriesResult]:
    """Prometheus query_range semantics for a plain selector: at each step t, the newest
    sample in (t - lookback, t], none after a staleness marker."""
    _check_range(start_ms, end_ms, step_ms)
    ids = [s.id for s in series]
    data = _latest_samples(ids, start_ms - lookback_ms, end_ms + 1, step_ms)
    steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    results = []
    for s in series:
        ts, vals = data.get(s.id, (np.empty(0, np.int64), np.empty(0)))
        if len(ts) == 0:
            results.append(SeriesResult(s, ts, vals))
            continue
        idx = np.searchsorted(ts, steps, side="right") - 1
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        ok &= ts[safe] > steps - lookback_ms
        picked = vals[safe]
        ok &= ~_is_stale(picked)
        results.append(SeriesResult(s, steps[ok], picked[ok]))
    return results


def _latest_samples(ids, start_ms, end_ms, step_ms):
    """Raw samples for short ranges; for long ones each 1-minute bucket's last value
    (time-stamped at the bucket's end) followed by the raw samples not rolled up yet."""
    store = get_store()
    done = rollup_complete_until().get("1m")
    if choose_resolution(start_ms, end_ms, step_ms) == "raw" or done is None or done <= start_ms:
        return store.read_raw(ids, start_ms, end_ms, keep_stale=True)
    start_ms -= start_ms % MINUTE_MS
    head = store.read_buckets(ids, start_ms, min(done, end_ms), MINUTE_MS, "1m", False)
    tail = store.read_raw(ids, min(done, end_ms), end_ms, keep_stale=True) if done < end_ms else {}
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    order = np.lexsort((head.bucket, head.series_ids))
    sids = head.series_ids[order]
    ts = start_ms + head.bucket[order] * MINUTE_MS + MINUTE_MS - 1
    vals = head.last[order]
    for sid in np.unique(sids):
        mask = sids == sid
        out[int(sid)] = (ts[mask], vals[mask])
    for sid, (t2, v2) in tail.items():
        t1, v1 = out.get(sid, (np.empty(0, np.int64), np.empty(0)))
        out[sid] = (np.concatenate([t1, t2]), np.concatenate([v1, v2]))
    return out


def reporting_nodes(instance_id: int, start_ms: int, end_ms: int) -> dict[int, int]:
    """{node id: newest sample time} of the nodes that sent the instance's series in
    [start, end): more than one while a stale exporter still reports it after a move."""
    node_of = dict(
        Series.objects.filter(instance_id=instance_id, node__isnull=False).values_list(
            "id", "node_id"
        )
    )
    out: dict[int, int] = {}
    for sid, (ts, _) in get_store().read_raw(list(node_of), start_ms, end_ms).items():
        if len(ts):
            node_id = node_of[sid]
            out[node_id] = max(out.get(node_id, 0), int(ts[-1]))
    return out


_STALE_BITS = np.frombuffer(np.float64(STALE_NAN).tobytes(), dtype=np.uint64)[0]


def _is_stale(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint64) == _STALE_BITS


# --- logs --------------------------------------------------------------------------------
def search_logs(
    *,
    start: datetime,
    end: datetime,
    node_ids: list[int] | None = None,
    instance_ids: list[int] | None = None,
    min_severity: int | None = None,
    template_ids: list[int] | None = None,
    text: str | None = None,
    limit: int = 200,
    before_id: int | None = None,
):
    qs = LogRecord.objects.filter(ts__gte=start, ts__lt=end)
    if node_ids:
        qs = qs.filter(node_id__in=node_ids)
    if instance_ids:
        qs = qs.filter(instance_id__in=instance_ids)
    if min_severity:
        qs = qs.filter(severity__gte=min_severity)
    if template_ids:
        qs = qs.filter(template_id__in=template_ids)
    if text:
        qs = qs.filter(Q(message__icontains=text))
    if before_id:
        qs = qs.filter(id__lt=before_id)
    return list(
        qs.select_related("node", "instance", "template").order_by("-ts", "-id")[: max(1, limit)]
    )


def format_value(value: float) -> str:
    """Prometheus' JSON spelling of sample values."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def to_datetime(ms: int) -> datetime:
    from webapp.telemetry.store.postgres import ms_to_dt

    return ms_to_dt(ms)
