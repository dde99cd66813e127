"""Backtest: the live engine's semantics replayed over stored history."""

from __future__ import annotations

import time

import pytest

from tests.alerting.conftest import MIN, every, make_rule, write
from webapp.alerting import backtest, engine
from webapp.alerting.models import AlertRule, Receiver, Route

HOUR = 3_600_000
S = 1000


def route(wait=30, interval=300, repeat=3600):
    return engine.RouteNode(1, [], 1, ("alertname",), wait * S, interval * S, repeat * S, path="1")


def test_group_simulation_counts_like_the_dispatcher():
    one = [[(0, 1000 * S)]]
    # first notification after group_wait, resolved one at the first tick after the end
    assert backtest.simulate_group(route(), one, 10_000 * S, True) == 2
    assert backtest.simulate_group(route(), one, 10_000 * S, False) == 1
    # firing for 2 h: the repeat interval adds one
    assert backtest.simulate_group(route(), [[(0, 2 * HOUR)]], 3 * HOUR, True) == 3
    # two alerts starting within group_wait share one notification
    both = [[(0, 1000 * S)], [(10 * S, 1000 * S)]]
    assert backtest.simulate_group(route(), both, 10_000 * S, True) == 2
    # an alert that fires and resolves inside group_wait is never sent
    assert backtest.simulate_group(route(), [[(0, 10 * S)]], 10_000 * S, True) == 0
    # the group dies when empty; a later episode opens a new group
    apart = [[(0, 100 * S), (5000 * S, 5100 * S)]]
    assert backtest.simulate_group(route(), apart, 10_000 * S, True) == 4


@pytest.fixture
def history(store):
    """Five hours of one series per node: n1 spikes in hours 1 and 3, n2 stays calm."""
    now = int(time.time() * 1000) // MIN * MIN
    start = now - 5 * HOUR

    def n1(t):
        return 0.95 if (t - start) // HOUR in (1, 3) else 0.1

    write("cpu", {"node": "n1"}, every(start, now, n1, 60_000))
    write("cpu", {"node": "n2"}, every(start, now, 0.3, 60_000))
    return start, now


@pytest.mark.django_db
def test_backtest_finds_the_firing_periods_and_counts_notifications(history):
    start, now = history
    hook = Receiver.objects.create(name="hook", kind="webhook", config={"url": "http://x"})
    Route.objects.create(
        name="root", receiver=hook, group_by=["alertname"], group_wait_s=30,
        group_interval_s=300, repeat_interval_s=4 * 3600,
    )  # fmt: skip
    rule = make_rule(selector="cpu", window_s=300, threshold=0.8, for_s=600, interval_s=60)
    result = backtest.backtest(rule, start, now)
    assert [a.labels["node"] for a in result.alerts] == ["n1"]
    periods = result.alerts[0].periods
    assert len(periods) == 2
    for (fired, resolved), hour in zip(periods, (1, 3), strict=True):
        # avg over 5 min is above 0.8 from 4 min into the hour; for holds it 10 min more
        assert 14 * MIN <= fired - (start + hour * HOUR) <= 15 * MIN
        assert 0 <= resolved - (start + (hour + 1) * HOUR) <= MIN
    assert result.notifications == 4 and result.by_receiver == {"hook": 4}
    # keep_firing_for long enough to bridge the calm hour merges the two episodes
    merged = make_rule(name="Merged", selector="cpu", window_s=300, threshold=0.8,
                       keep_firing_for_s=2 * 3600)  # fmt: skip
    assert len(backtest.backtest(merged, start, now).alerts[0].periods) == 1


@pytest.mark.django_db
def test_backtest_of_an_absence_rule_and_a_heartbeat_rule(history):
    start, now = history
    write("job_ok", {"job": "nightly"}, every(start, start + HOUR, 1.0, 60_000))
    rule = make_rule(
        name="NoJob", kind=AlertRule.ABSENCE, absence_mode=AlertRule.ABSENT,
        selector='job_ok{job="nightly"}', window_s=600,
    )  # fmt: skip
    result = backtest.backtest(rule, start, now)
    [alert] = result.alerts
    assert alert.labels["job"] == "nightly"
    assert abs(alert.periods[0][0] - (start + HOUR + 10 * MIN)) <= 2 * MIN
    assert alert.periods[0][1] is None
    heartbeat = make_rule(
        name="Hb", kind=AlertRule.ABSENCE, absence_mode=AlertRule.HEARTBEAT, selector=""
    )
    result = backtest.backtest(heartbeat, start, now)
    assert result.alerts == [] and "no history" in result.notes[0]


@pytest.mark.django_db
def test_backtest_of_a_log_rule(db):
    from ingest.types import LogBatch, LogEntry
    from webapp.telemetry import writer

    now = int(time.time() * 1000) // MIN * MIN
    burst = now - 2 * HOUR
    entries = [
        LogEntry(ts_ns=(burst + i * 5000) * 10**6, message="OOM killed process", node="n1")
        for i in range(30)
    ]
    writer.write_logs(LogBatch(entries=entries), source="t", client="t", batch_digest=b"bt")
    rule = make_rule(
        name="Oom", kind=AlertRule.LOG, selector='node="n1"', log_text="oom killed",
        log_group_by=["node"], window_s=300, op=">=", threshold=10,
    )  # fmt: skip
    result = backtest.backtest(rule, now - 4 * HOUR, now)
    [alert] = result.alerts
    assert alert.labels["node"] == "n1" and len(alert.periods) == 1
    assert burst <= alert.periods[0][0] <= burst + 10 * MIN
    assert max(v for v in alert.values if v == v) == 30


@pytest.mark.django_db
def test_backtest_agrees_with_the_live_engine(store):
    from tests.alerting.conftest import at, evaluate

    now = int(time.time() * 1000) // MIN * MIN
    start = now - HOUR
    pattern = [0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.2]  # 5-minute blocks

    def value(t):
        return pattern[((t - start) // (5 * MIN)) % len(pattern)]

    write("flappy", {"node": "n1"}, every(start - 10 * MIN, now, value, 15_000))
    rule = make_rule(
        # 0.52: no window's average can equal it, so float summation order cannot matter
        selector="flappy",
        window_s=120,
        threshold=0.52,
        for_s=120,
        keep_firing_for_s=300,
    )
    result = backtest.backtest(rule, start, now)
    for t in result.times.tolist():
        evaluate(t, rule)
    events = rule.alerts.get().events.order_by("at", "id")
    live = engine.periods((int(e.at.timestamp() * 1000), e.kind) for e in events)
    assert live == result.alerts[0].periods
    assert len(live) >= 2
    rule.refresh_from_db()
    assert rule.last_eval_at == at(result.times[-1])
