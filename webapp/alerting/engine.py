"""The alerting semantics as plain functions over plain data (no Django): the alert
state machine, Alertmanager's routing and "does this group need a notification", and
recurring maintenance windows. Live evaluation, dispatch and the backtest all call these,
so a backtest shows what the live engine would have done.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from webapp.telemetry.selectors import Matcher

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
OPS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
ALL_LABELS = "..."


# --- alert state machine ---------------------------------------------------------------
@dataclass(slots=True)
class AlertState:
    state: str = INACTIVE
    active_at: int | None = None  # ms: condition true since (this episode)
    fired_at: int | None = None
    last_true_at: int | None = None
    resolved_at: int | None = None
    value: float | None = None
    keep_since: int | None = None  # first evaluation false while kept firing


def step(
    prev: AlertState, true: bool, value: float | None, t: int, for_ms: int, keep_ms: int
) -> tuple[AlertState, str | None]:
    """The next state of one alert evaluated at ``t`` and the transition that happened
    (pending, firing, cleared, resolved) or None."""
    if true:
        if prev.state in (INACTIVE, RESOLVED):
            if for_ms <= 0:
                return AlertState(FIRING, t, t, t, None, value), FIRING
            return AlertState(PENDING, t, None, t, None, value), PENDING
        if prev.state == PENDING:
            if t - prev.active_at >= for_ms:
                return replace(prev, state=FIRING, fired_at=t, last_true_at=t, value=value), FIRING
            return replace(prev, last_true_at=t, value=value), None
        return replace(prev, last_true_at=t, value=value, keep_since=None), None
    if prev.state == PENDING:
        return AlertState(INACTIVE, value=prev.value), "cleared"
    if prev.state == FIRING:
        # keep_firing_for (hysteresis, so a flapping condition does not flap the alert),
        # counted as Prometheus does from the first evaluation that found it false.
        since = prev.keep_since if prev.keep_since is not None else t
        if keep_ms > 0 and t - since < keep_ms:
            return replace(prev, keep_since=since), None
        return replace(prev, state=RESOLVED, resolved_at=t, keep_since=None), RESOLVED
    return prev, None


def compare(op: str, value: float, threshold: float) -> bool:
    return value == value and OPS[op](value, threshold)  # NaN never matches


# --- routing ---------------------------------------------------------------------------
@dataclass(slots=True)
class RouteNode:
    """A route with its inherited settings already resolved."""

    id: int
    matchers: list[Matcher]
    receiver_id: int | None
    group_by: tuple[str, ...]
    group_wait_ms: int
    group_interval_ms: int
    repeat_interval_ms: int
    continue_matching: bool = False
    children: list[RouteNode] = field(default_factory=list)
    path: str = ""


DEFAULT_TIMERS = {"group_wait_ms": 30_000, "group_interval_ms": 300_000, "repeat_ms": 4 * 3600_000}


def match_routes(route: RouteNode, labels: dict[str, str]) -> list[RouteNode]:
    """Alertmanager's depth-first match: the deepest matching routes; siblings after a
    match are tried only when the matching one says ``continue``."""
    if not all(m.matches(labels.get(m.name, "")) for m in route.matchers):
        return []
    found: list[RouteNode] = []
    for child in route.children:
        sub = match_routes(child, labels)
        if sub:
            found.extend(sub)
            if not child.continue_matching:
                break
    return found or [route]


def group_labels(route: RouteNode, labels: dict[str, str]) -> dict[str, str]:
    if ALL_LABELS in route.group_by:
        return dict(labels)
    return {name: labels[name] for name in route.group_by if name in labels}


def group_key(route: RouteNode, labels: dict[str, str]) -> str:
    """Alertmanager's group key: the route's path plus the group label values."""
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(group_labels(route, labels).items()))
    return f"{route.path}:{{{inner}}}"


# --- notification decision -------------------------------------------------------------
def needs_update(
    *,
    notified: bool,
    last_firing: set,
    last_resolved: set,
    firing: set,
    resolved: set,
    unacked_firing: set,
    last_notified_ms: int | None,
    now_ms: int,
    repeat_ms: int,
    send_resolved: bool,
) -> bool:
    """Alertmanager's dedup stage, plus acknowledgement: an acknowledged alert is not
    a reason to repeat (until it resolves, when the acknowledgement ends)."""
    if not notified:
        return bool(firing)
    if not firing <= last_firing:
        return True
    if not firing:
        # Everything resolved (or was muted): tell the receiver if it knew of anything.
        return bool(last_firing)
    if send_resolved and not resolved <= last_resolved:
        return True
    if not unacked_firing:
        return False
    return last_notified_ms is None or now_ms - last_notified_ms >= repeat_ms


# --- maintenance windows ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Recurrence:
    weekdays: tuple[int, ...]
    start: time
    duration: timedelta
    tz: str = "UTC"
    valid_from: object = None  # date | None
    valid_until: object = None


def window_active(rec: Recurrence, now: datetime) -> bool:
    """True when ``now`` falls in an occurrence; one that starts late on Sunday and runs
    past midnight still counts on Monday."""
    local = now.astimezone(ZoneInfo(rec.tz))
    days = max(1, -(-int(rec.duration.total_seconds()) // 86400) + 1)
    for back in range(days):
        day = local.date() - timedelta(days=back)
        if day.weekday() not in rec.weekdays:
            continue
        if rec.valid_from and day < rec.valid_from:
            continue
        if rec.valid_until and day > rec.valid_until:
            continue
        begin = datetime.combine(day, rec.start, tzinfo=ZoneInfo(rec.tz))
        if begin <= local < begin + rec.duration:
            return True
    return False


def periods(transitions: Iterable[tuple[int, str]]) -> list[tuple[int, int | None]]:
    """Firing periods (start, end or None while still firing) from (t, transition) pairs."""
    out: list[tuple[int, int | None]] = []
    start = None
    for t, kind in transitions:
        if kind == FIRING:
            start = t
        elif kind == RESOLVED and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, None))
    return out
