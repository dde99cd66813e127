"""Loads the routing tree, silences, maintenance windows and inhibition rules from the
database into the plain structures ``engine`` works on."""

from __future__ import annotations

import logging
from datetime import timedelta

from webapp.alerting import engine
from webapp.alerting.matchers import MatcherError, matches, parse_matchers
from webapp.alerting.models import InhibitionRule, MaintenanceWindow, Route, Silence
from webapp.telemetry.selectors import Matcher

log = logging.getLogger(__name__)


def _safe_matchers(text: str, what: str):
    try:
        return parse_matchers(text)
    except MatcherError as exc:
        # Saved through validated forms; a bad row must not stop every notification.
        log.error("ignoring %s with bad matchers %r: %s", what, text, exc)
        return None


def load_tree() -> engine.RouteNode | None:
    routes = list(Route.objects.all())
    children: dict[int | None, list[Route]] = {}
    for route in routes:
        children.setdefault(route.parent_id, []).append(route)
    roots = sorted(children.get(None, []), key=lambda r: (r.position, r.id))
    if not roots:
        return None

    def build(route: Route, parent: engine.RouteNode | None, path: str) -> engine.RouteNode:
        matchers = _safe_matchers(route.matchers, f"route {route.pk}")
        if matchers is None:
            matchers = [Matcher("__never__", "=", "x")]  # a broken route matches nothing

        def timer(seconds: int | None, inherited: str, default: str) -> int:
            if seconds is not None:
                return seconds * 1000
            return getattr(parent, inherited) if parent else engine.DEFAULT_TIMERS[default]

        if route.group_by is not None:
            group_by = tuple(route.group_by)
        else:
            group_by = parent.group_by if parent else ("alertname",)
        node = engine.RouteNode(
            id=route.pk,
            matchers=[] if parent is None else matchers,
            receiver_id=route.receiver_id or (parent.receiver_id if parent else None),
            group_by=group_by,
            group_wait_ms=timer(route.group_wait_s, "group_wait_ms", "group_wait_ms"),
            group_interval_ms=timer(
                route.group_interval_s, "group_interval_ms", "group_interval_ms"
            ),
            repeat_interval_ms=timer(route.repeat_interval_s, "repeat_interval_ms", "repeat_ms"),
            continue_matching=route.continue_matching,
            path=path,
        )
        for child in sorted(children.get(route.pk, []), key=lambda r: (r.position, r.id)):
            node.children.append(build(child, node, f"{path}/{child.pk}"))
        return node

    return build(roots[0], None, str(roots[0].pk))


def walk(node: engine.RouteNode | None, depth: int = 0):
    if node is None:
        return
    yield node, depth
    for child in node.children:
        yield from walk(child, depth + 1)


def active_silences(now) -> list[tuple[int, list]]:
    out = []
    for silence in Silence.objects.filter(starts_at__lte=now, ends_at__gt=now):
        parsed = _safe_matchers(silence.matchers, f"silence {silence.pk}")
        if parsed:
            out.append((silence.pk, parsed))
    return out


def recurrence(window: MaintenanceWindow) -> engine.Recurrence:
    return engine.Recurrence(
        weekdays=tuple(int(d) for d in window.weekdays),
        start=window.start_time,
        duration=timedelta(minutes=window.duration_minutes),
        tz=window.timezone or "UTC",
        valid_from=window.valid_from,
        valid_until=window.valid_until,
    )


def active_windows(now) -> list[tuple[int, list]]:
    out = []
    for window in MaintenanceWindow.objects.filter(enabled=True):
        parsed = _safe_matchers(window.matchers, f"maintenance window {window.pk}")
        if parsed is not None and engine.window_active(recurrence(window), now):
            out.append((window.pk, parsed))
    return out


def inhibition_rules() -> list[tuple[int, list, list, list[str]]]:
    out = []
    for rule in InhibitionRule.objects.filter(enabled=True):
        source = _safe_matchers(rule.source_matchers, f"inhibition {rule.pk}")
        target = _safe_matchers(rule.target_matchers, f"inhibition {rule.pk}")
        if source and target:
            out.append((rule.pk, source, target, list(rule.equal)))
    return out


def inhibited_by(
    labels: dict, alert_id: int, rules, sources_by_rule: dict[int, list[tuple[int, dict]]]
) -> list[int]:
    """Inhibition rule ids muting an alert: a firing source alert (not the alert itself)
    matches, and the ``equal`` labels have the same values on both."""
    hits = []
    for rule_id, _, target, equal in rules:
        if not matches(target, labels):
            continue
        for source_id, source_labels in sources_by_rule.get(rule_id, []):
            if source_id == alert_id:
                continue
            if all(source_labels.get(name, "") == labels.get(name, "") for name in equal):
                hits.append(rule_id)
                break
    return hits
