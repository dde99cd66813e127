"""Rule evaluation over synthetic series: for, keep_firing_for, one alert per series,
every kind of rule, idempotency and claiming."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.alerting.conftest import MIN, T0, at, evaluate, every, make_rule, states, write
from webapp.alerting import evaluation
from webapp.alerting.models import AlertEvent, AlertInstance, AlertRule

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_nodes(store):
    """n1 is high from minute 5 to 12 and again 14 to 15 (a flap); n2 stays low."""

    def n1(t):
        m = (t - T0) // MIN
        return 0.9 if 5 <= m < 12 or m == 14 else 0.1

    write("test_metric", {"node": "n1"}, every(T0, T0 + 30 * MIN, n1))
    write("test_metric", {"node": "n2"}, every(T0, T0 + 30 * MIN, 0.2))


def test_for_then_fire_then_resolve_one_alert_per_series(two_nodes):
    rule = make_rule(for_s=120)
    timeline = {}
    for m in range(4, 17):
        evaluate(T0 + m * MIN, rule)
        timeline[m] = states(rule).get("n1", "inactive")
    assert timeline[4] == "inactive"
    assert timeline[6] == "pending"
    assert timeline[7] == "pending"
    assert timeline[8] == "firing"  # pending since minute 6 (window avg), for 2 min
    assert timeline[12] == "firing"
    assert timeline[13] == "resolved"
    assert timeline[15] == "pending"  # the flap at minute 14 does not fire: for holds it
    assert timeline[16] == "inactive"
    assert "n2" not in states(rule)
    alert = rule.alerts.get()
    assert alert.labels == {
        "alertname": "HighValue",
        "severity": "warning",
        "node": "n1",
    }
    kinds = list(alert.events.order_by("at", "id").values_list("kind", flat=True))
    assert kinds == ["pending", "firing", "resolved", "pending", "cleared"]
    assert alert.annotations["summary"].startswith("n1 at 0.")


def test_keep_firing_for_rides_out_a_flap(two_nodes):
    rule = make_rule(keep_firing_for_s=180)
    got = {}
    for m in range(6, 20):
        evaluate(T0 + m * MIN, rule)
        got[m] = states(rule)["n1"]
    # False from minute 13 (window) on, briefly true at 15, false after: one episode.
    assert all(got[m] == "firing" for m in range(6, 18)), got
    assert got[19] == "resolved"
    assert list(rule.alerts.get().events.values_list("kind", flat=True)).count("firing") == 1


def test_evaluating_the_same_instant_twice_changes_nothing(two_nodes):
    rule = make_rule()
    evaluate(T0 + 6 * MIN, rule)
    before = AlertEvent.objects.count()
    assert evaluate(T0 + 6 * MIN, rule)["rules"] == 0  # already evaluated at this instant
    assert evaluate(T0 + 5 * MIN, rule)["rules"] == 0  # nor at an earlier one
    assert AlertEvent.objects.count() == before


def test_claiming_moves_the_slot_so_two_ticks_do_not_both_evaluate(db):
    due = make_rule(next_eval_at=at(T0), interval_s=30)
    later = make_rule(name="Later", next_eval_at=at(T0 + 10 * MIN))
    make_rule(name="Off", enabled=False)
    assert evaluation.claim_due_rules(at(T0 + MIN)) == [due.pk]
    assert evaluation.claim_due_rules(at(T0 + MIN)) == []
    due.refresh_from_db()
    assert due.next_eval_at == at(T0 + MIN) + timedelta(seconds=30)
    assert later.pk not in evaluation.claim_due_rules(at(T0 + MIN + 30_000))


def test_rule_errors_are_recorded_and_alerts_keep_their_state(two_nodes):
    rule = make_rule()
    evaluate(T0 + 6 * MIN, rule)
    assert states(rule)["n1"] == "firing"
    AlertRule.objects.filter(pk=rule.pk).update(selector="rate(x[5m])")
    rule.refresh_from_db()
    evaluate(T0 + 20 * MIN, rule)
    rule.refresh_from_db()
    assert "only plain series selectors" in rule.last_error
    assert states(rule)["n1"] == "firing"


def test_aggregations_and_comparisons(store):
    write("lat", {"svc": "a"}, [(T0 + i * 15_000, v) for i, v in enumerate([1, 2, 3, 10])])
    end = T0 + 59_000
    cases = [
        ("avg", ">", 3.9, True),
        ("avg", ">", 4.1, False),
        ("max", ">=", 10, True),
        ("min", "<", 1.5, True),
        ("last", "==", 10, True),
        ("sum", ">", 15.5, True),
        ("count", "==", 4, True),
        ("increase", ">=", 9, True),
        ("p95", ">", 8, True),
    ]
    for i, (agg, op, threshold, fires) in enumerate(cases):
        rule = make_rule(name=f"R{i}", selector="lat", agg=agg, op=op, threshold=threshold)
        evaluate(end, rule)
        assert bool(rule.alerts.filter(state="firing").exists()) is fires, (agg, op, threshold)


def test_anomaly_and_interference_rules_read_the_score_series(store):
    """An anomaly rule reads the scores of windows the model alarmed on: b's score is high
    but under the alarm level in force (its alarm series is 0), so it does not page."""
    for vm, node, score, alarm in (("a", "n1", 91.0, 91.0), ("b", "n2", 85.0, 0.0)):
        labels = {"level": "vm", "node": node, "vm": vm}
        write("telltale_anomaly_score", labels, every(T0, T0 + 5 * MIN, score))
        write("telltale_anomaly_alarm", labels, every(T0, T0 + 5 * MIN, alarm))
    # c is predicted slowed too, but extrapolated: only its plain P is written.
    for vm, p, trusted in (("a", 0.55, True), ("c", 0.95, True), ("d", 0.4, False)):
        names = ["telltale_interference_p"] + (
            ["telltale_interference_p_trusted"] if trusted else []
        )
        for name in names:
            write(name, {"node": "n1", "vm": vm}, every(T0, T0 + 5 * MIN, p))
    anomaly = make_rule(
        name="ContextAnomaly",
        kind=AlertRule.ANOMALY,
        selector='level="vm"',
        agg="max",
        op=">=",
        threshold=80,
    )
    interference = make_rule(
        name="Interference", kind=AlertRule.INTERFERENCE, selector="", op="<", threshold=0.7
    )
    assert anomaly.metric_selector == 'telltale_anomaly_alarm{level="vm"}'
    evaluate(T0 + 4 * MIN, anomaly, interference)
    assert [a.labels["vm"] for a in anomaly.alerts.filter(state="firing")] == ["a"]
    assert [a.labels["vm"] for a in interference.alerts.filter(state="firing")] == ["a"]


def test_the_seeded_anomaly_rule_pages_whenever_the_model_alarms_whatever_the_score(store):
    """Instance anomalies scored 60-74 in the demo: a fixed score of 80 never paged them."""
    from django.core.management import call_command

    for vm, alarm in (("a", 64.0), ("b", 0.0)):
        labels = {"level": "vm", "node": "n1", "vm": vm}
        write("telltale_anomaly_score", labels, every(T0, T0 + 5 * MIN, 70.0))
        write("telltale_anomaly_alarm", labels, every(T0, T0 + 5 * MIN, alarm))
    call_command("alerting_seed")
    seeded = AlertRule.objects.get(name="ContextAnomaly")
    evaluate(T0 + 4 * MIN, seeded)
    assert [a.labels["vm"] for a in seeded.alerts.filter(state="firing")] == ["a"]


def test_log_pattern_rate_per_node(db):
    from ingest.types import LogBatch, LogEntry
    from webapp.telemetry import writer

    entries = [
        LogEntry(ts_ns=(T0 + i * 1000) * 10**6, message=f"disk error on sda{i % 2}", node="n1")
        for i in range(6)
    ] + [LogEntry(ts_ns=(T0 + 2000) * 10**6, message="disk error on sdb", node="n2")]
    entries.append(LogEntry(ts_ns=(T0 + 3000) * 10**6, message="all good", node="n2"))
    writer.write_logs(LogBatch(entries=entries), source="test", client="t", batch_digest=b"x")
    rule = make_rule(
        name="DiskErrors",
        kind=AlertRule.LOG,
        selector="",
        log_text="disk error",
        log_group_by=["node"],
        window_s=300,
        op=">=",
        threshold=3,
    )
    evaluate(T0 + MIN, rule)
    firing = rule.alerts.get(state="firing")
    assert firing.labels["node"] == "n1" and firing.value == 6
    total = make_rule(
        name="AnyDiskError",
        kind=AlertRule.LOG,
        selector="",
        log_text="DISK ERROR",
        window_s=300,
        op=">",
        threshold=6,
    )
    evaluate(T0 + MIN, total)
    assert total.alerts.get().value == 7


def test_absence_no_data_up_zero_and_heartbeat(store):
    from webapp.telemetry.models import Node

    write("host_agent_up", {"node": "n1"}, every(T0, T0 + 10 * MIN, 1.0))
    write("host_agent_up", {"node": "n2"}, every(T0, T0 + 4 * MIN, 1.0))  # goes silent
    write("host_agent_up", {"node": "n3"}, every(T0, T0 + 10 * MIN, 0.0))  # reports down
    up = make_rule(
        name="AgentDown",
        kind=AlertRule.ABSENCE,
        absence_mode=AlertRule.UP,
        selector="host_agent_up",
        window_s=120,
    )
    absent = make_rule(
        name="NoBackups",
        kind=AlertRule.ABSENCE,
        absence_mode=AlertRule.ABSENT,
        selector='backup_ok{job="nightly"}',
        window_s=600,
    )
    evaluate(T0 + 9 * MIN, up, absent)
    assert sorted(a.labels["node"] for a in up.alerts.filter(state="firing")) == ["n2", "n3"]
    assert absent.alerts.get().labels["job"] == "nightly"

    Node.objects.filter(name="n1").update(last_seen=at(T0 + 9 * MIN))
    Node.objects.filter(name="n2").update(last_seen=at(T0 + 4 * MIN), cluster="eu1")
    heartbeat = make_rule(
        name="HeartbeatMissed",
        kind=AlertRule.ABSENCE,
        absence_mode=AlertRule.HEARTBEAT,
        selector='cluster="eu1"',
        window_s=120,
    )
    evaluate(T0 + 9 * MIN, heartbeat)
    alert = heartbeat.alerts.get()
    assert alert.labels["node"] == "n2" and alert.value == pytest.approx(300)


def test_unhealthy_rule_opens_and_closes_an_unhealthy_event(store):
    from webapp.mitigation.models import UnhealthyEvent

    write("host_ecc_errors_total", {"node": "n7"}, every(T0, T0 + 3 * MIN, lambda t: 0.0))
    write(
        "host_ecc_errors_total",
        {"node": "n7"},
        every(T0 + 3 * MIN, T0 + 6 * MIN, lambda t: (t - T0 - 3 * MIN) / 1000),
    )
    rule = make_rule(
        name="EccErrors",
        kind=AlertRule.UNHEALTHY,
        selector="host_ecc_errors_total",
        agg="increase",
        window_s=120,
        op=">",
        threshold=10,
        fault_category="memory",
    )
    evaluate(T0 + 5 * MIN, rule)
    alert = rule.alerts.get(state="firing")
    event = UnhealthyEvent.objects.get()
    assert alert.unhealthy_event == event
    assert (event.node.name, event.fault_category, event.source) == ("n7", "memory", "alert")
    evaluate(T0 + 10 * MIN, rule)
    event.refresh_from_db()
    assert event.status == UnhealthyEvent.CLOSED and event.end == at(T0 + 10 * MIN)


def test_disabling_a_rule_resolves_its_alerts(two_nodes, users):
    from webapp.alerting import services

    rule = make_rule()
    evaluate(T0 + 6 * MIN, rule)
    rule.enabled = False
    services.save_config(rule, users.admin)
    alert = AlertInstance.objects.get(rule=rule)
    assert alert.state == "resolved"
    assert alert.events.latest("id").detail["reason"] == "rule disabled"


def test_a_failing_mitigation_hook_never_blocks_the_alert_and_is_retried(store, monkeypatch):
    from webapp.mitigation import services as mitigation
    from webapp.mitigation.models import UnhealthyEvent

    write("host_agent_up", {"node": "n4"}, every(T0, T0 + 10 * MIN, 0.0))
    rule = make_rule(
        name="AgentDown",
        kind=AlertRule.UNHEALTHY,
        absence_mode=AlertRule.UP,
        selector="host_agent_up",
        window_s=120,
        fault_category="host_agent",
    )
    real = mitigation.open_unhealthy_event

    def broken(*args, **kwargs):
        raise RuntimeError("mitigation is down")

    monkeypatch.setattr(mitigation, "open_unhealthy_event", broken)
    evaluate(T0 + 5 * MIN, rule)
    alert = rule.alerts.get()
    assert alert.state == "firing" and alert.unhealthy_event is None
    monkeypatch.setattr(mitigation, "open_unhealthy_event", real)
    evaluate(T0 + 6 * MIN, rule)
    alert.refresh_from_db()
    event = UnhealthyEvent.objects.get()
    assert alert.unhealthy_event == event and event.fault_category == "host_agent"
    assert event.start == alert.fired_at


def test_two_workers_running_the_same_cycle_evaluate_each_rule_once(transactional_db, clean_store):
    import threading

    from django.db import connection

    write("test_metric", {"node": "n1"}, every(T0, T0 + 10 * MIN, 0.9))
    rules = [make_rule(name=f"R{i}", next_eval_at=at(T0)) for i in range(20)]
    errors = []

    def race(job):
        def worker():
            try:
                job()
            except Exception as exc:  # surfaced below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors

    race(lambda: evaluation.run_cycle(at(T0 + 5 * MIN)))  # both claim: one gets the rules
    assert AlertInstance.objects.count() == len(rules)
    assert AlertEvent.objects.filter(kind="firing").count() == len(rules)
    # Past the claim (a manual "evaluate now" racing the beat): still once per instant.
    ids = [r.pk for r in rules]
    AlertInstance.objects.update(value=0.5)
    race(lambda: evaluation.evaluate_rules(ids, at(T0 + 6 * MIN)))
    assert AlertEvent.objects.count() == len(rules)
    assert set(AlertRule.objects.values_list("last_eval_at", flat=True)) == {at(T0 + 6 * MIN)}


def test_firing_episodes_become_incident_signals(
    two_nodes, monkeypatch, django_capture_on_commit_callbacks
):
    from webapp.alerting import incidents_feed
    from webapp.incidents.models import Signal
    from workers import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.feed_incidents, "delay", queued.extend)
    rule = make_rule(severity="critical")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        evaluate(T0 + 6 * MIN, rule)
        assert queued == []  # queued only once the evaluation commits
    assert len(callbacks) == 1
    alert = rule.alerts.get()
    assert queued == [alert.pk]
    assert incidents_feed.feed(queued) == 1
    signal = Signal.objects.get(kind="alert")
    assert signal.source_id == f"{alert.pk}:{int(alert.fired_at.timestamp() * 1000)}"
    assert signal.severity == "critical" and signal.end is None
    assert signal.title.startswith("HighValue: n1 at 0.")
    assert signal.details["url"].endswith(f"/alerts/{alert.pk}/")
    evaluate(T0 + 13 * MIN, rule)
    incidents_feed.feed([alert.pk])
    signal.refresh_from_db()
    assert signal.end == at(T0 + 13 * MIN)
