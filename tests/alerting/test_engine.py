"""The alerting semantics as pure functions: state machine, routing, dedup, windows,
templates and matchers."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from webapp.alerting import engine, templating
from webapp.alerting.engine import FIRING, INACTIVE, PENDING, RESOLVED, AlertState
from webapp.alerting.matchers import MatcherError, fingerprint, matches, parse_matchers

S = 1000


def run(conds: list[bool], for_ms=0, keep_ms=0, step=60 * S):
    state, out = AlertState(), []
    for i, c in enumerate(conds):
        state, transition = engine.step(state, c, 1.0 if c else None, i * step, for_ms, keep_ms)
        out.append((state.state, transition))
    return out


def test_for_holds_pending_until_the_duration_has_passed():
    got = run([True, True, True, False], for_ms=120 * S)
    assert got == [
        (PENDING, PENDING),
        (PENDING, None),
        (FIRING, FIRING),
        (RESOLVED, RESOLVED),
    ]


def test_a_pending_alert_that_clears_never_fires():
    assert run([True, False, True], for_ms=120 * S) == [
        (PENDING, PENDING),
        (INACTIVE, "cleared"),
        (PENDING, PENDING),
    ]


def test_keep_firing_for_stops_flapping():
    flapping = [True, False, True, False, False, False]
    plain = [s for s, _ in run(flapping)]
    assert plain == [FIRING, RESOLVED, FIRING, RESOLVED, RESOLVED, RESOLVED]
    held = run(flapping, keep_ms=120 * S)
    assert [s for s, _ in held] == [FIRING, FIRING, FIRING, FIRING, FIRING, RESOLVED]
    assert [t for _, t in held if t] == [FIRING, RESOLVED]


def test_compare_never_matches_nan():
    assert engine.compare(">", 2, 1) and not engine.compare(">", float("nan"), 1)
    assert engine.compare("!=", 1, 2) and engine.compare("<=", 1, 1)


def node(id, matchers="", children=(), cont=False, group_by=("alertname",), receiver=1):
    return engine.RouteNode(
        id=id,
        matchers=parse_matchers(matchers),
        receiver_id=receiver,
        group_by=tuple(group_by),
        group_wait_ms=30 * S,
        group_interval_ms=300 * S,
        repeat_interval_ms=3600 * S,
        continue_matching=cont,
        children=list(children),
        path=str(id),
    )


def test_routing_first_match_wins_unless_continue():
    tree = node(
        1,
        children=[
            node(2, 'severity="critical"', cont=True),
            node(3, 'team="db"'),
            node(4, 'team=~"db|infra"'),
        ],
    )
    ids = lambda labels: [n.id for n in engine.match_routes(tree, labels)]  # noqa: E731
    assert ids({"severity": "critical", "team": "db"}) == [2, 3]
    assert ids({"severity": "warning", "team": "db"}) == [3]
    assert ids({"team": "infra"}) == [4]
    assert ids({"team": "web"}) == [1]  # nothing below matched: the root takes it
    nested = node(1, children=[node(2, 'team="db"', children=[node(5, 'severity="info"')])])
    assert [n.id for n in engine.match_routes(nested, {"team": "db"})] == [2]
    assert [n.id for n in engine.match_routes(nested, {"team": "db", "severity": "info"})] == [5]


def test_group_keys_follow_group_by():
    by_node = node(1, group_by=("alertname", "node"))
    a = {"alertname": "X", "node": "n1", "vm": "a"}
    b = {"alertname": "X", "node": "n1", "vm": "b"}
    c = {"alertname": "X", "node": "n2", "vm": "c"}
    assert engine.group_key(by_node, a) == engine.group_key(by_node, b)
    assert engine.group_key(by_node, a) != engine.group_key(by_node, c)
    assert engine.group_labels(by_node, a) == {"alertname": "X", "node": "n1"}
    everything = node(1, group_by=("...",))
    assert engine.group_key(everything, a) != engine.group_key(everything, b)


def decide(**kw):
    base = {
        "notified": True,
        "last_firing": {1},
        "last_resolved": set(),
        "firing": {1},
        "resolved": set(),
        "unacked_firing": {1},
        "last_notified_ms": 0,
        "now_ms": 60 * S,
        "repeat_ms": 3600 * S,
        "send_resolved": True,
    }
    base.update(kw)
    return engine.needs_update(**base)


def test_dedup_decisions_match_alertmanager():
    assert decide(notified=False, last_firing=set()) is True
    assert decide(notified=False, last_firing=set(), firing=set()) is False
    assert decide() is False  # nothing changed, repeat not due
    assert decide(now_ms=3600 * S) is True  # repeat interval passed
    assert decide(firing={1, 2}, unacked_firing={1, 2}) is True  # a new alert
    assert decide(firing=set(), unacked_firing=set(), resolved={1}) is True  # all resolved
    assert decide(firing={2}, last_firing={1, 2}, resolved={1}) is True  # one resolved
    assert decide(firing={2}, last_firing={1, 2}, resolved={1}, send_resolved=False) is False
    # acknowledged: no repeats while it fires
    assert decide(now_ms=7200 * S, unacked_firing=set()) is False


def test_maintenance_window_recurrence_across_midnight_and_time_zones():
    sunday_late = engine.Recurrence((6,), time(23, 0), timedelta(hours=2), "UTC")
    assert engine.window_active(sunday_late, datetime(2026, 3, 1, 23, 30, tzinfo=UTC))  # Sun
    assert engine.window_active(sunday_late, datetime(2026, 3, 2, 0, 30, tzinfo=UTC))  # Mon
    assert not engine.window_active(sunday_late, datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    assert not engine.window_active(sunday_late, datetime(2026, 3, 7, 23, 30, tzinfo=UTC))
    berlin = engine.Recurrence(tuple(range(7)), time(2, 0), timedelta(minutes=30), "Europe/Berlin")
    assert engine.window_active(berlin, datetime(2026, 1, 15, 1, 10, tzinfo=UTC))  # 02:10 CET
    assert not engine.window_active(berlin, datetime(2026, 1, 15, 2, 10, tzinfo=UTC))
    bounded = engine.Recurrence(
        tuple(range(7)),
        time(0, 0),
        timedelta(hours=24),
        "UTC",
        valid_until=datetime(2026, 1, 1).date(),
    )
    assert not engine.window_active(bounded, datetime(2026, 1, 2, 12, tzinfo=UTC))


def test_firing_periods_from_transitions():
    assert engine.periods([(1, PENDING), (2, FIRING), (5, RESOLVED), (7, FIRING)]) == [
        (2, 5),
        (7, None),
    ]


def test_templates_render_values_and_labels_only():
    context = {"labels": {"node": "n1"}, "value": 0.9234, "threshold": 0.9, "rule": "R"}
    text = "{{ $labels.node }} at {{ $value | humanizePercentage }} > {{ $threshold }}"
    assert templating.render(text, context) == "n1 at 92.34% > 0.9"
    assert templating.render('{{ $value | printf "%.1f" }}', context) == "0.9"
    assert templating.render("{{ $value | humanize }}", {"value": 1234567.0}) == "1.235M"
    assert templating.render("{{ $labels.missing }}!", context) == "!"
    for bad in ("{{ .Labels.node }}", "{{ $value | exec }}", "{{ $value "):
        with pytest.raises(templating.TemplateError):
            templating.check(bad)


def test_matchers_parse_with_or_without_braces():
    m = parse_matchers('{severity="critical", node=~"n[12]"}')
    assert matches(m, {"severity": "critical", "node": "n2"})
    assert not matches(m, {"severity": "critical", "node": "n3"})
    assert parse_matchers("") == []
    assert matches(parse_matchers('team=""'), {"node": "n1"})  # absent label matches ""
    with pytest.raises(MatcherError):
        parse_matchers('team=""', require_one=True)
    with pytest.raises(MatcherError):
        parse_matchers("node=n1")
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
