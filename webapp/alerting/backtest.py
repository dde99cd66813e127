"""Backtest: what a rule (saved or still being written) would have done over stored
history — when each of its alerts would have fired, and how many notifications the
current routing tree would have sent.

The rule's value is computed on a time grid (the evaluation interval, coarser for long
ranges) from bucket aggregates over the rolled-up store, with the same window, ``for``,
``keep_firing_for`` and grouping logic as the live engine (``engine``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from webapp.alerting import engine, routing, services, sources
from webapp.alerting.matchers import fingerprint, matches
from webapp.alerting.models import AlertRule, Receiver
from webapp.telemetry import query
from webapp.telemetry.query import QueryError, to_datetime
from webapp.telemetry.selectors import Matcher

MAX_STEPS = 3000
MAX_SERIES = 1000
MAX_LOG_ROWS = 500_000
MAX_ROLL = 2000
GRID_UNIT_MS = 15_000


@dataclass(slots=True)
class Element:
    labels: dict[str, str]
    values: np.ndarray  # the rule's value at each instant (NaN: no data)
    cond: np.ndarray  # bool: condition true at each instant


@dataclass(slots=True)
class Grid:
    times: np.ndarray  # evaluation instants, ms
    step_ms: int
    elements: list[Element] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class FiredAlert:
    labels: dict[str, str]
    periods: list[tuple[int, int | None]]
    peak: float | None
    values: np.ndarray

    @property
    def firing_ms(self) -> int:
        return sum((end or 0) - start for start, end in self.periods if end)


@dataclass(slots=True)
class BacktestResult:
    start_ms: int
    end_ms: int
    step_ms: int
    times: np.ndarray
    elements: int
    alerts: list[FiredAlert]
    notifications: int
    by_receiver: dict[str, int]
    notes: list[str]

    @property
    def step_text(self) -> str:
        from webapp.alerting.templating import humanize_duration

        return humanize_duration(self.step_ms / 1000)

    @property
    def periods(self) -> list[tuple[dict, int, int | None]]:
        rows = [(a.labels, s, e) for a in self.alerts for s, e in a.periods]
        return sorted(rows, key=lambda r: r[1])


def grid_step(rule: AlertRule, start_ms: int, end_ms: int) -> int:
    step = max(rule.interval_s * 1000, GRID_UNIT_MS)
    needed = -(-(end_ms - start_ms) // MAX_STEPS)
    if needed > step:
        step = -(-needed // GRID_UNIT_MS) * GRID_UNIT_MS
    return step


# --- the rule's value over time ---------------------------------------------------------------
def rule_values(
    rule: AlertRule, start_ms: int, end_ms: int, step_ms: int | None = None, only=None
) -> Grid:
    """Value and condition of every element of ``rule`` at each instant in the range;
    ``only`` (an alert's fingerprint and labels) keeps the one element its page charts."""
    step_ms = step_ms or grid_step(rule, start_ms, end_ms)
    window_ms = max(1, min(rule.window_s, sources.MAX_WINDOW_S)) * 1000
    k = max(1, min(MAX_ROLL, round(window_ms / step_ms)))
    grid = Grid(np.empty(0, np.int64), step_ms)
    if k * step_ms != window_ms:
        grid.notes.append(
            f"the {rule.window_s}s window is approximated by {k} step(s) of {step_ms // 1000}s"
        )
    evaluator = rule.evaluator
    if evaluator == "absence" and (rule.absence_mode or rule.ABSENT) == rule.HEARTBEAT:
        grid.notes.append(
            "heartbeat rules read each node's last-seen time, which has no history:"
            " backtest an up == 0 rule on the agent's metric (e.g. host_agent_up) instead"
        )
        return grid
    horizon = k * (sources.UP_HORIZON_WINDOWS if rule.absence_mode == rule.UP else 1)
    origin = start_ms - horizon * step_ms
    n = (end_ms - origin) // step_ms
    times = origin + (np.arange(n) + 1) * step_ms - 1
    first = int(np.searchsorted(times, start_ms))
    grid.times = times[first:]
    if evaluator == "log":
        _log_elements(rule, grid, origin, n, k, first, only)
    else:
        _metric_elements(rule, grid, origin, n, k, first, only)
    return grid


def _bucket_matrix(series, origin: int, n: int, step_ms: int, agg: str) -> np.ndarray:
    """(series, n) aggregates of ``agg`` per step, NaN where empty; column j covers
    [origin + j*step, origin + (j+1)*step), which is the window (t - step, t] of the
    instant t = origin + (j+1)*step - 1 ms it is evaluated at (rollup buckets align so)."""
    out = np.full((len(series), n), np.nan)
    if not series or n <= 0:
        return out
    results, how = query.range_query(series, origin, origin + (n - 1) * step_ms, step_ms, agg)
    scale = how["step_ms"] // step_ms if how["step_ms"] >= step_ms else 1
    for row, r in enumerate(results):
        if not len(r.ts_ms):
            continue
        cols = (r.ts_ms - origin) // step_ms
        keep = (cols >= 0) & (cols < n)
        out[row, cols[keep]] = r.values[keep]
    if scale > 1:  # rollups widened the step: spread each wide bucket over its steps
        out = _ffill(out, scale - 1)
    return out


def _roll(m: np.ndarray, k: int, how: str) -> np.ndarray:
    """Rolling aggregate over the last ``k`` columns (inclusive), NaN-aware."""
    if k <= 1:
        return m.copy()
    if how == "sum":
        filled = np.nan_to_num(m, nan=0.0)
        c = np.cumsum(filled, axis=1)
        out = c.copy()
        out[:, k:] = c[:, k:] - c[:, :-k]
        return out
    func = np.fmax if how == "max" else np.fmin
    out = m.copy()
    for shift in range(1, k):
        shifted = np.full_like(m, np.nan)
        shifted[:, shift:] = m[:, :-shift]
        out = func(out, shifted)
    return out


def _ffill(m: np.ndarray, limit: int) -> np.ndarray:
    """Carry each value forward up to ``limit`` columns (``last`` over a window)."""
    if limit <= 0:
        return m.copy()
    out = m.copy()
    for shift in range(1, limit + 1):
        shifted = np.full_like(m, np.nan)
        shifted[:, shift:] = m[:, :-shift]
        out = np.where(np.isnan(out), shifted, out)
    return out


def _select(rule: AlertRule, text: str, only):
    """The rule's series; for one alert (``only``) the selector is narrowed by the
    alert's own labels, so a fleet-wide rule's alert page reads one series."""
    matchers = sources.parse_rule_selector(text)
    if only is not None:
        _, labels = only
        skip = {"alertname", "severity", *rule.labels}
        names = {m.name for m in matchers}
        matchers += [Matcher(k, "=", v) for k, v in sorted(labels.items()) if k not in skip | names]
    try:
        found = query.select_series(matchers, limit=MAX_SERIES)
    except QueryError as exc:
        raise sources.RuleError(str(exc)) from None
    if only is not None:
        found = [s for s in found if fingerprint(services.alert_labels(rule, s.labels)) == only[0]]
    return found


def _metric_elements(rule, grid: Grid, origin: int, n: int, k: int, first: int, only) -> None:
    step = grid.step_ms
    mode = (rule.absence_mode or rule.ABSENT) if rule.evaluator == "absence" else None
    text = rule.selector if mode else rule.metric_selector
    # An absence alert stands for the whole selector, not for one of its series.
    series = _select(rule, text, None if mode == rule.ABSENT else only)
    count = _roll(_bucket_matrix(series, origin, n, step, "count"), k, "sum")
    if mode == rule.ABSENT:
        total = count.sum(axis=0, keepdims=True) if series else np.zeros((1, n))
        labels = {
            m.name: m.value
            for m in sources.parse_rule_selector(text)
            if m.op == "=" and m.name != "__name__" and m.value
        }
        cond = (total == 0)[0][first:]
        grid.elements.append(Element(labels, total[0][first:].astype(float), cond))
        return
    if mode == rule.UP:
        last = _ffill(_bucket_matrix(series, origin, n, step, "last"), k - 1)
        before = _roll(_bucket_matrix(series, origin, n, step, "count"), k * 10, "sum") - count
        with np.errstate(invalid="ignore"):
            cond = ((count > 0) & (last == 0)) | ((count == 0) & (before > 0))
        for i, s in enumerate(series):
            grid.elements.append(Element(s.labels, last[i][first:], cond[i][first:]))
        return
    values = _window_agg(rule.agg, series, origin, n, step, k, count)
    op = engine.OPS[rule.op]
    with np.errstate(invalid="ignore"):
        cond = (count > 0) & ~np.isnan(values) & op(values, rule.threshold)
    for i, s in enumerate(series):
        grid.elements.append(Element(s.labels, values[i][first:], cond[i][first:]))
    if rule.agg == "p95":
        grid.notes.append("p95 over the window is approximated by the highest per-step p95")


def _window_agg(agg, series, origin, n, step, k, count) -> np.ndarray:
    def m(a):
        return _bucket_matrix(series, origin, n, step, a)

    with np.errstate(invalid="ignore", divide="ignore"):
        if agg == "avg":
            return _roll(m("sum"), k, "sum") / count
        if agg == "sum":
            return np.where(count > 0, _roll(m("sum"), k, "sum"), np.nan)
        if agg == "count":
            return count
        if agg == "min":
            return _roll(m("min"), k, "min")
        if agg in ("max", "p95"):
            return _roll(m(agg), k, "max")
        if agg == "last":
            return _ffill(m("last"), k - 1)
        spread = _roll(m("max"), k, "max") - _roll(m("min"), k, "min")
        return spread / (k * step / 1000) if agg == "rate" else spread


def _log_elements(rule, grid: Grid, origin: int, n: int, k: int, first: int, only) -> None:
    if not rule.log_template_ids and not rule.log_text:
        raise sources.RuleError("a log rule needs log templates or a text to match")
    step = grid.step_ms
    group_by = [g for g in rule.log_group_by if g in sources.LOG_FIELDS]
    fields = [sources.LOG_FIELDS[g] for g in group_by]
    targets = sources.parse_matchers(rule.selector) if rule.selector.strip() else []
    qs = sources.log_queryset(rule).filter(
        ts__gte=to_datetime(origin), ts__lt=to_datetime(origin + n * step)
    )
    if not group_by and targets:
        qs = sources._narrow_logs(qs, targets)
    rows = list(qs.values_list("ts", *fields)[:MAX_LOG_ROWS])
    if len(rows) == MAX_LOG_ROWS:
        grid.notes.append(f"only the first {MAX_LOG_ROWS} matching log lines were counted")
    keys: dict[tuple, int] = {}
    if not group_by:
        keys[()] = 0
    cells = []
    for row in rows:
        key = tuple(v or "" for v in row[1:])
        col = (int(row[0].timestamp() * 1000) - origin) // step
        if 0 <= col < n:
            cells.append((keys.setdefault(key, len(keys)), col))
    counts = np.zeros((len(keys), n))
    if cells:
        r, c = np.array(cells).T
        np.add.at(counts, (r, c), 1)
    rolled = _roll(counts, k, "sum")
    op = engine.OPS[rule.op]
    for key, i in keys.items():
        labels = {g: v for g, v in zip(group_by, key, strict=True) if v}
        if group_by and not matches(targets, dict(zip(group_by, key, strict=True))):
            continue
        if only is not None and fingerprint(services.alert_labels(rule, labels)) != only[0]:
            continue
        values = rolled[i][first:]
        grid.elements.append(Element(labels, values, op(values, rule.threshold)))


# --- alerts and notifications ------------------------------------------------------------------
def fire(rule: AlertRule, grid: Grid) -> list[FiredAlert]:
    """Run the alert state machine over each element's condition."""
    out = []
    for el in grid.elements:
        if not el.cond.any():
            continue
        state = engine.AlertState()
        transitions = []
        for t, true, value in zip(
            grid.times.tolist(), el.cond.tolist(), el.values.tolist(), strict=True
        ):
            state, transition = engine.step(
                state,
                true,
                value,
                t,
                rule.for_s * 1000,
                rule.keep_firing_for_s * 1000,
            )
            if transition is not None:
                transitions.append((t, transition))
        found = engine.periods(transitions)
        if found:
            values = el.values[el.cond]
            peak = float(np.nanmax(values)) if np.isfinite(values).any() else None
            if rule.op in ("<", "<=") and np.isfinite(values).any():
                peak = float(np.nanmin(values))
            labels = services.alert_labels(rule, el.labels)
            out.append(FiredAlert(labels, found, peak, el.values))
    return out


def count_notifications(
    alerts: list[FiredAlert], end_ms: int
) -> tuple[int, dict[str, int], list[str]]:
    """How many notifications the current routing tree would have sent for these alerts
    (grouping, group_wait/group_interval, repeat_interval, resolved notifications)."""
    notes = []
    tree = routing.load_tree()
    if tree is None:
        notes.append("no routing tree yet: counted with default timers and no receiver")
        tree = engine.RouteNode(
            0, [], None, ("alertname",), **_defaults(), continue_matching=False, path="0"
        )
    receivers = {r.pk: r for r in Receiver.objects.all()}
    groups: dict[tuple, tuple[engine.RouteNode, list[int]]] = {}
    for i, alert in enumerate(alerts):
        for node in engine.match_routes(tree, alert.labels):
            key = (node.id, engine.group_key(node, alert.labels))
            groups.setdefault(key, (node, []))[1].append(i)
    total, by_receiver = 0, {}
    for node, members in groups.values():
        receiver = receivers.get(node.receiver_id)
        sent = simulate_group(
            node,
            [alerts[i].periods for i in members],
            end_ms,
            bool(receiver and receiver.send_resolved),
        )
        total += sent
        name = receiver.name if receiver else "(no receiver)"
        by_receiver[name] = by_receiver.get(name, 0) + sent
    return total, by_receiver, notes


def _defaults() -> dict:
    t = engine.DEFAULT_TIMERS
    return {
        "group_wait_ms": t["group_wait_ms"],
        "group_interval_ms": t["group_interval_ms"],
        "repeat_interval_ms": t["repeat_ms"],
    }


def _firing_at(periods, t: int) -> bool:
    return any(s <= t and (e is None or t < e) for s, e in periods)


def simulate_group(node: engine.RouteNode, members: list, end_ms: int, send_resolved: bool) -> int:
    """Replay one aggregation group's timers; jumps from one interesting moment (an
    alert starts or ends, a repeat falls due) to the next flush tick after it."""
    starts = sorted({s for periods in members for s, _ in periods})
    edges = sorted({t for periods in members for s, e in periods for t in (s, e) if t is not None})
    sent = 0
    created = starts[0] if starts else None
    while created is not None and created <= end_ms:
        flush = created + node.group_wait_ms
        notified, last_firing, last_resolved, last_at = False, set(), set(), None
        died_at = None
        while flush <= end_ms:
            firing = {m for m, periods in enumerate(members) if _firing_at(periods, flush)}
            resolved = last_firing - firing
            if engine.needs_update(
                notified=notified,
                last_firing=last_firing,
                last_resolved=last_resolved,
                firing=firing,
                resolved=resolved,
                unacked_firing=firing,
                last_notified_ms=last_at,
                now_ms=flush,
                repeat_ms=node.repeat_interval_ms,
                send_resolved=send_resolved,
            ):
                if firing or (resolved and send_resolved):
                    sent += 1
                notified, last_firing, last_resolved, last_at = True, firing, resolved, flush
            if not firing:
                died_at = flush
                break
            upcoming = [t for t in edges if t > flush]
            if last_at is not None:
                upcoming.append(last_at + node.repeat_interval_ms)
            target = min(upcoming) if upcoming else end_ms + 1
            gi = node.group_interval_ms
            flush += max(1, -(-(target - flush) // gi)) * gi
        if died_at is None:
            break
        # The group is gone; the next alert to start opens a new one (group_wait again).
        created = next((t for t in starts if t > died_at), None)
    return sent


def backtest(rule: AlertRule, start_ms: int, end_ms: int) -> BacktestResult:
    grid = rule_values(rule, start_ms, end_ms)
    alerts = fire(rule, grid)
    notes = list(grid.notes)
    notifications, by_receiver, more = count_notifications(alerts, end_ms)
    notes.extend(more)
    alerts.sort(key=lambda a: -a.firing_ms - (end_ms if a.periods[-1][1] is None else 0))
    return BacktestResult(
        start_ms,
        end_ms,
        grid.step_ms,
        grid.times,
        len(grid.elements),
        alerts,
        notifications,
        by_receiver,
        notes,
    )


def finite(values) -> list[float | None]:
    return [None if v is None or math.isnan(v) else float(v) for v in values]
