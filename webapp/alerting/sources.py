"""What each rule sees at one instant: the elements (label set + value) for which its
condition holds. Rules are evaluated in batches: series rows are loaded once per
metric, samples once per window for every rule that shares it, so a cycle costs a few
queries however many rules it holds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.db.models import Count, Q

from webapp.alerting import engine
from webapp.alerting.matchers import matches, parse_matchers
from webapp.telemetry import query
from webapp.telemetry.models import LogRecord, Node, Series
from webapp.telemetry.query import QueryError, to_datetime
from webapp.telemetry.selectors import Matcher, SelectorError, parse_selector
from webapp.telemetry.store import get_store

MAX_WINDOW_S = 6 * 3600
UP_HORIZON_WINDOWS = 10  # a series that sent data this many windows back and then stopped


class RuleError(ValueError):
    """A rule that cannot be evaluated as written; the message says why."""


@dataclass(slots=True)
class Element:
    labels: dict[str, str]
    value: float


# --- series ------------------------------------------------------------------------------
class SeriesIndex:
    """Series of the metrics some rules read, indexed so that equality matchers are set
    intersections and each regex runs once per distinct label value."""

    def __init__(self):
        self.by_metric: dict[str, list[tuple[int, dict]]] = {}
        self._postings: dict[str, dict[tuple[str, str], set[int]]] = {}
        self._labels: dict[int, dict] = {}

    def load(self, metrics: set[str]) -> None:
        missing = sorted(m for m in metrics if m not in self.by_metric)
        for name in missing:
            self.by_metric[name] = []
            self._postings[name] = defaultdict(set)
        if not missing:
            return
        rows = Series.objects.filter(metric__in=missing).values_list("id", "metric", "labels")
        for sid, metric, labels in rows.iterator(chunk_size=5000):
            self.by_metric[metric].append((sid, labels))
            self._labels[sid] = labels
            postings = self._postings[metric]
            for pair in labels.items():
                postings[pair].add(sid)

    def select(self, matchers: list[Matcher]) -> list[tuple[int, dict]]:
        name = next((m.value for m in matchers if m.name == "__name__" and m.op == "="), None)
        if name is None:
            return [(s.id, s.labels) for s in query.select_series(matchers)]
        self.load({name})
        rest = [m for m in matchers if m.name != "__name__"]
        postings = self._postings[name]
        candidates: set[int] | None = None
        for m in rest:
            if m.op == "=" and m.value != "":
                ids = postings.get((m.name, m.value), set())
                candidates = ids if candidates is None else candidates & ids
        pool = (
            self.by_metric[name]
            if candidates is None
            else [(sid, self._labels[sid]) for sid in sorted(candidates)]
        )
        checks = [m for m in rest if not (m.op == "=" and m.value != "")]
        if not checks:
            return pool
        cache: dict[tuple[int, str], bool] = {}
        out = []
        for sid, labels in pool:
            ok = True
            for i, m in enumerate(checks):
                value = labels.get(m.name, "")
                hit = cache.get((i, value))
                if hit is None:
                    hit = cache[(i, value)] = m.matches(value)
                if not hit:
                    ok = False
                    break
            if ok:
                out.append((sid, labels))
        return out


def parse_rule_selector(text: str) -> list[Matcher]:
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise RuleError(str(exc)) from None


# --- window reads --------------------------------------------------------------------------
@dataclass(slots=True)
class WindowValues:
    """Per-series aggregates over consecutive windows: arrays shaped (series, windows)."""

    index: dict[int, int]  # series id -> row
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    last: np.ndarray
    p95: np.ndarray | None
    rows_cache: dict = field(default_factory=dict)  # per shared series list

    def value(self, agg: str, window_s: float, col: int = -1) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            if agg == "avg":
                return self.sum[:, col] / self.count[:, col]
            if agg == "increase":
                return self.max[:, col] - self.min[:, col]
            if agg == "rate":
                return (self.max[:, col] - self.min[:, col]) / window_s
            if agg == "p95":
                return (self.p95 if self.p95 is not None else self.max)[:, col]
            return getattr(self, agg)[:, col]


def read_windows(ids: list[int], end_ms: int, window_ms: int, n: int, p95: bool) -> WindowValues:
    """Aggregates of each series over the ``n`` windows ending at ``end_ms``, oldest first;
    a window covers (t - window, t] as Prometheus' range selectors do."""
    index = {sid: i for i, sid in enumerate(ids)}
    shape = (len(ids), n)
    count = np.zeros(shape)
    out = {k: np.full(shape, np.nan) for k in ("sum", "min", "max", "last", "p95")}
    if ids:
        start = end_ms - n * window_ms + 1
        b = get_store().read_buckets(ids, start, end_ms + 1, window_ms, "raw", p95, True)
        rows = np.fromiter((index[int(s)] for s in b.series_ids), np.int64, len(b.series_ids))
        cols = b.bucket.astype(np.int64)
        keep = (cols >= 0) & (cols < n)
        rows, cols = rows[keep], cols[keep]
        count[rows, cols] = b.count[keep]
        for key in ("sum", "min", "max", "last"):
            out[key][rows, cols] = getattr(b, key)[keep]
        if p95 and b.p95 is not None:
            out["p95"][rows, cols] = b.p95[keep]
    return WindowValues(
        index, count, out["sum"], out["min"], out["max"], out["last"], out["p95"] if p95 else None
    )


# --- evaluation -----------------------------------------------------------------------------
def evaluate(rules, now_ms: int) -> dict[int, list[Element] | RuleError]:
    """The true elements of every rule at ``now_ms`` (or the error that stopped it)."""
    out: dict[int, list[Element] | RuleError] = {}
    index = SeriesIndex()
    plans = []
    for rule in rules:
        try:
            plans.append((rule, _plan(rule, index)))
        except (RuleError, QueryError) as exc:
            out[rule.id] = RuleError(str(exc))
    index.load(
        {
            m.value
            for _, plan in plans
            for m in plan.get("matchers", [])
            if m.name == "__name__" and m.op == "="
        }
    )
    windows: dict[tuple[int, int, bool], set[int]] = defaultdict(set)
    selected: dict[tuple, list | QueryError] = {}
    for rule, plan in plans:
        if "matchers" in plan:
            key = tuple(plan["matchers"])
            if key not in selected:  # rules that share a selector share its series
                try:
                    selected[key] = index.select(plan["matchers"])
                except QueryError as exc:
                    selected[key] = exc
            found = selected[key]
            if isinstance(found, QueryError):
                out[rule.id] = RuleError(str(found))
                continue
            plan["series"] = found
            windows[plan["read"]].update(sid for sid, _ in found)
    reads = {
        key: read_windows(sorted(ids), now_ms, key[0], key[1], key[2])
        for key, ids in windows.items()
    }
    for rule, plan in plans:
        if rule.id in out:
            continue
        try:
            if plan["how"] == "threshold":
                out[rule.id] = _threshold(rule, plan, reads[plan["read"]])
            elif plan["how"] == "absent":
                out[rule.id] = _absent(plan, reads[plan["read"]])
            elif plan["how"] == "up":
                out[rule.id] = _up(plan, reads[plan["read"]])
            elif plan["how"] == "heartbeat":
                out[rule.id] = _heartbeat(rule, plan, now_ms)
            else:
                out[rule.id] = _logs(rule, plan, now_ms)
        except (RuleError, QueryError) as exc:
            out[rule.id] = RuleError(str(exc))
    return out


def _plan(rule, index: SeriesIndex) -> dict:
    window_ms = min(rule.window_s, MAX_WINDOW_S) * 1000
    if window_ms <= 0:
        raise RuleError("the window must be at least 1 second")
    evaluator = rule.evaluator
    if evaluator == "log":
        return {"how": "log", "targets": _targets(rule.selector)}
    if evaluator == "absence":
        mode = rule.absence_mode or rule.ABSENT
        if mode == rule.HEARTBEAT:
            return {"how": "heartbeat", "targets": _targets(rule.selector)}
        matchers = parse_rule_selector(rule.selector)
        n = UP_HORIZON_WINDOWS if mode == rule.UP else 1
        return {"how": mode, "matchers": matchers, "read": (window_ms, n, False)}
    if rule.agg not in rule.AGGS:
        raise RuleError(f"unknown aggregation {rule.agg!r}")
    if rule.op not in engine.OPS:
        raise RuleError(f"unknown comparison {rule.op!r}")
    matchers = parse_rule_selector(rule.metric_selector)
    return {"how": "threshold", "matchers": matchers, "read": (window_ms, 1, rule.agg == "p95")}


def _targets(text: str) -> list[Matcher]:
    try:
        return parse_matchers(text)
    except ValueError as exc:
        raise RuleError(str(exc)) from None


def _rows(plan, values: WindowValues) -> np.ndarray:
    cache = values.rows_cache
    key = id(plan["series"])
    rows = cache.get(key)
    if rows is None:
        rows = cache[key] = np.fromiter(
            (values.index[sid] for sid, _ in plan["series"]), np.int64, len(plan["series"])
        )
    return rows


def _threshold(rule, plan, values: WindowValues) -> list[Element]:
    if not plan["series"]:
        return []
    rows = _rows(plan, values)
    v = values.value(rule.agg, rule.window_s)[rows]
    has_data = values.count[rows, -1] > 0
    op = engine.OPS[rule.op]
    with np.errstate(invalid="ignore"):
        hit = has_data & ~np.isnan(v) & op(v, rule.threshold)
    series = plan["series"]
    return [Element(series[i][1], float(v[i])) for i in np.flatnonzero(hit)]


def _absent(plan, values: WindowValues) -> list[Element]:
    if plan["series"] and values.count[_rows(plan, values), -1].sum() > 0:
        return []
    labels = {
        m.name: m.value
        for m in plan["matchers"]
        if m.op == "=" and m.name != "__name__" and m.value != ""
    }
    return [Element(labels, 1.0)]


def _up(plan, values: WindowValues) -> list[Element]:
    if not plan["series"]:
        return []
    rows = _rows(plan, values)
    now_count = values.count[rows, -1]
    last = values.last[rows, -1]
    before = values.count[rows, :-1].sum(axis=1)
    with np.errstate(invalid="ignore"):
        down = ((now_count > 0) & (last == 0)) | ((now_count == 0) & (before > 0))
    series = plan["series"]
    return [Element(series[i][1], 0.0) for i in np.flatnonzero(down)]


def node_labels(node) -> dict[str, str]:
    labels = {k: v for k, v in (node.labels or {}).items() if isinstance(v, str)}
    labels["node"] = node.name
    if node.cluster:
        labels["cluster"] = node.cluster
    if node.rack:
        labels["rack"] = node.rack
    return labels


def _heartbeat(rule, plan, now_ms: int) -> list[Element]:
    cutoff = to_datetime(now_ms - rule.window_s * 1000)
    out = []
    for node in Node.objects.filter(last_seen__isnull=False, last_seen__lt=cutoff):
        labels = node_labels(node)
        if matches(plan["targets"], labels):
            out.append(Element(labels, now_ms / 1000 - node.last_seen.timestamp()))
    return out


def log_queryset(rule):
    qs = LogRecord.objects.all()
    if rule.log_template_ids:
        qs = qs.filter(template_id__in=rule.log_template_ids)
    if rule.log_text:
        qs = qs.filter(Q(message__icontains=rule.log_text))
    if rule.log_min_severity:
        qs = qs.filter(severity__gte=rule.log_min_severity)
    return qs


LOG_FIELDS = {"node": "node__name", "instance": "instance__name"}


def _logs(rule, plan, now_ms: int) -> list[Element]:
    if not rule.log_template_ids and not rule.log_text:
        raise RuleError("a log rule needs log templates or a text to match")
    end = to_datetime(now_ms)
    qs = log_queryset(rule).filter(ts__gt=end - timedelta(seconds=rule.window_s), ts__lte=end)
    group_by = [g for g in rule.log_group_by if g in LOG_FIELDS]
    targets = plan["targets"]
    if not group_by:
        if targets:
            qs = _narrow_logs(qs, targets)
        labels: dict[str, str] = {}
        n = float(qs.count())
        return [Element(labels, n)] if engine.compare(rule.op, n, rule.threshold) else []
    fields = [LOG_FIELDS[g] for g in group_by]
    out = []
    for row in qs.values(*fields).annotate(n=Count("id")).order_by():
        labels = {g: row[LOG_FIELDS[g]] or "" for g in group_by}
        if matches(targets, labels) and engine.compare(rule.op, float(row["n"]), rule.threshold):
            out.append(Element({k: v for k, v in labels.items() if v}, float(row["n"])))
    return out


def _narrow_logs(qs, targets: list[Matcher]):
    for m in targets:
        if m.name in LOG_FIELDS and m.op == "=":
            qs = qs.filter(**{LOG_FIELDS[m.name]: m.value})
        elif m.name in LOG_FIELDS and m.op == "!=":
            qs = qs.exclude(**{LOG_FIELDS[m.name]: m.value})
        elif m.name in LOG_FIELDS:
            field = LOG_FIELDS[m.name] + "__regex"
            value = f"^(?:{m.value})$"
            qs = qs.filter(**{field: value}) if m.op == "=~" else qs.exclude(**{field: value})
    return qs


def nan_to_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value
