"""Grouping timers, routing with continue, inhibition, silences, maintenance windows,
acknowledgement and resolved notifications, over stored alerts (no network)."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from tests.alerting.conftest import T0, at, make_rule
from webapp.alerting import dispatch, services
from webapp.alerting.models import (
    AlertEvent,
    AlertInstance,
    InhibitionRule,
    MaintenanceWindow,
    Notification,
    Receiver,
    Route,
)
from webapp.alerting.sources import Element

pytestmark = pytest.mark.django_db
S = 1000


def fire(rule, t_ms: int, *label_sets: dict, value: float = 1.0) -> None:
    """Evaluate ``rule`` at ``t_ms`` as if exactly these label sets matched."""
    rule.refresh_from_db()
    results = {rule.id: [Element(dict(labels), value) for labels in label_sets]}
    services.apply_evaluation([rule], results, at(t_ms))


def tick(t_ms: int) -> list[Notification]:
    """One dispatch cycle; returns the notifications it made."""
    before = set(Notification.objects.values_list("id", flat=True))
    dispatch.dispatch(at(t_ms))
    return list(Notification.objects.exclude(id__in=before).order_by("id"))


def nodes(n: Notification, status: str | None = None) -> list[str]:
    return sorted(
        a["labels"].get("node", "")
        for a in n.payload["alerts"]
        if status is None or a["status"] == status
    )


@pytest.fixture
def hook(db):
    return Receiver.objects.create(name="hook", kind="webhook", config={"url": "http://x"})


@pytest.fixture
def root(hook):
    return Route.objects.create(
        name="root",
        receiver=hook,
        group_by=["alertname"],
        group_wait_s=30,
        group_interval_s=300,
        repeat_interval_s=3600,
    )


def test_group_wait_group_interval_and_repeat(root):
    rule = make_rule()
    fire(rule, T0, {"node": "n1"})
    assert tick(T0) == []  # the group waits group_wait for more alerts
    fire(rule, T0 + 10 * S, {"node": "n1"}, {"node": "n2"})
    assert tick(T0 + 10 * S) == []
    [first] = tick(T0 + 30 * S)
    assert nodes(first) == ["n1", "n2"] and first.alert_status == "firing"
    assert first.payload["groupLabels"] == {"alertname": "HighValue"}
    fire(rule, T0 + 60 * S, {"node": "n1"}, {"node": "n2"}, {"node": "n3"})
    assert tick(T0 + 60 * S) == []  # a new alert waits for the next group_interval
    [second] = tick(T0 + 330 * S)
    assert nodes(second) == ["n1", "n2", "n3"]
    assert tick(T0 + 630 * S) == []  # nothing changed, repeat not due
    assert tick(T0 + 3630 * S) == []
    [repeat] = tick(T0 + 3930 * S)  # 3600 s after the last notification
    assert nodes(repeat) == ["n1", "n2", "n3"]
    fire(rule, T0 + 4000 * S, {"node": "n1"}, {"node": "n3"})
    [resolved] = tick(T0 + 4230 * S)
    assert nodes(resolved, "resolved") == ["n2"] and nodes(resolved, "firing") == ["n1", "n3"]
    assert resolved.alert_status == "firing"
    fire(rule, T0 + 4300 * S)
    [done] = tick(T0 + 4530 * S)
    assert done.alert_status == "resolved" and nodes(done) == ["n1", "n3"]
    assert tick(T0 + 4830 * S) == []
    keys = list(Notification.objects.values_list("dedup_key", flat=True))
    assert len(keys) == len(set(keys)) == 5


def test_resolved_before_group_wait_sends_nothing_and_send_resolved_off(root, hook):
    rule = make_rule()
    fire(rule, T0, {"node": "n1"})
    tick(T0)
    fire(rule, T0 + 10 * S)
    assert tick(T0 + 30 * S) == []
    hook.send_resolved = False
    hook.save()
    fire(rule, T0 + 100 * S, {"node": "n1"})
    tick(T0 + 100 * S)
    assert len(tick(T0 + 130 * S)) == 1
    fire(rule, T0 + 200 * S)
    assert tick(T0 + 430 * S) == []  # no resolved notification for this receiver


def test_routing_tree_with_continue_and_group_by(root, hook):
    pager = Receiver.objects.create(name="pager", kind="webhook", config={"url": "http://p"})
    Route.objects.create(
        parent=root,
        position=0,
        matchers='severity="critical"',
        receiver=pager,
        group_by=["alertname", "node"],
        group_wait_s=0,
        continue_matching=True,
    )
    Route.objects.create(parent=root, position=1, matchers='team="db"', group_wait_s=0)
    critical = make_rule(name="Down", severity="critical", labels={"team": "db"})
    fire(critical, T0, {"node": "n1"}, {"node": "n2"})
    sent = tick(T0)
    by_receiver = sorted((n.receiver_name, tuple(nodes(n))) for n in sent)
    assert by_receiver == [("hook", ("n1", "n2")), ("pager", ("n1",)), ("pager", ("n2",))]


def test_inhibition_mutes_targets_with_equal_labels(root):
    InhibitionRule.objects.create(
        source_matchers='severity="critical"', target_matchers='severity="warning"', equal=["node"]
    )
    down = make_rule(name="NodeDown", severity="critical")
    slow = make_rule(name="Slow", severity="warning")
    fire(down, T0, {"node": "n1"})
    fire(slow, T0, {"node": "n1"}, {"node": "n2"})
    tick(T0)
    sent = tick(T0 + 30 * S)
    slow_note = next(n for n in sent if n.payload["groupLabels"]["alertname"] == "Slow")
    assert nodes(slow_note) == ["n2"]
    muted = AlertInstance.objects.get(rule=slow, labels__node="n1")
    assert muted.inhibited_by and muted.events.filter(kind=AlertEvent.INHIBITED).exists()
    fire(down, T0 + 60 * S)  # the source resolves: the target is notified
    [again] = [n for n in tick(T0 + 330 * S) if n.payload["groupLabels"]["alertname"] == "Slow"]
    assert nodes(again) == ["n1", "n2"]
    assert muted.events.filter(kind=AlertEvent.UNINHIBITED).exists()


def test_silences_mute_until_they_expire(root, users):
    rule = make_rule()
    silence = services.create_silence(
        'node="n1"', at(T0 - 60 * S), at(T0 + 600 * S), "planned disk swap", users.operator
    )
    fire(rule, T0, {"node": "n1"}, {"node": "n2"})
    tick(T0)
    [first] = tick(T0 + 30 * S)
    assert nodes(first) == ["n2"]
    alert = AlertInstance.objects.get(labels__node="n1")
    assert alert.silenced_by == [silence.pk]
    assert alert.events.filter(kind=AlertEvent.SILENCED).exists()
    assert tick(T0 + 330 * S) == []
    [after] = tick(T0 + 630 * S)  # the silence ended at 600 s by itself
    assert nodes(after) == ["n1", "n2"]
    alert.refresh_from_db()
    assert alert.silenced_by == [] and alert.events.filter(kind=AlertEvent.UNSILENCED).exists()


def test_maintenance_windows_mute_matching_alerts(root):
    start = at(T0 - 600 * S)
    MaintenanceWindow.objects.create(
        name="patching",
        matchers='node="n1"',
        weekdays=list(range(7)),
        start_time=time(start.hour, start.minute),
        duration_minutes=60,
    )
    rule = make_rule()
    fire(rule, T0, {"node": "n1"}, {"node": "n2"})
    tick(T0)
    [sent] = tick(T0 + 30 * S)
    assert nodes(sent) == ["n2"]
    assert AlertInstance.objects.get(labels__node="n1").muted_by


def test_acknowledgement_mutes_repeats_and_expires_on_resolve(root, users):
    rule = make_rule()
    fire(rule, T0, {"node": "n1"})
    tick(T0)
    assert len(tick(T0 + 30 * S)) == 1
    alert = AlertInstance.objects.get()
    services.acknowledge(alert, users.operator, "looking", now=at(T0 + 60 * S))
    assert tick(T0 + 3630 * S) == [] and tick(T0 + 7230 * S) == []  # no repeats
    fire(rule, T0 + 7300 * S, {"node": "n1"}, {"node": "n2"})
    [new] = tick(T0 + 7530 * S)  # a new alert in the group is still news
    assert nodes(new) == ["n1", "n2"]
    fire(rule, T0 + 7600 * S, {"node": "n2"})  # n1 resolves: its acknowledgement ends
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.acknowledged_at is None
    resolved = alert.events.get(kind=AlertEvent.RESOLVED)
    assert resolved.detail == {"acknowledgement_ended": "operator"}
    [note] = tick(T0 + 7830 * S)
    assert nodes(note, "resolved") == ["n1"]
    fire(rule, T0 + 7900 * S, {"node": "n1"}, {"node": "n2"})
    alert.refresh_from_db()
    assert alert.state == "firing" and alert.acknowledged_at is None  # a new episode
    kinds = list(alert.events.order_by("at", "id").values_list("kind", flat=True))
    assert kinds == ["firing", "acknowledged", "resolved", "firing"]
    with pytest.raises(ValueError, match="already acknowledged"):
        services.acknowledge(alert, users.operator)
        services.acknowledge(alert, users.operator)


def test_without_a_routing_tree_alerts_are_kept_but_nobody_is_notified(db):
    rule = make_rule()
    fire(rule, T0, {"node": "n1"})
    assert dispatch.dispatch(at(T0 + 60 * S))["notifications"] == 0
    assert AlertInstance.objects.get().state == "firing"


def test_notifications_expire_and_never_resend(root):
    from webapp.alerting import delivery

    rule = make_rule()
    fire(rule, T0, {"node": "n1"})
    tick(T0)
    [n] = tick(T0 + 30 * S)
    n.status = Notification.SENT
    n.save()
    assert delivery.deliver(n.pk, at(T0 + 40 * S)) == "sent"
    assert n.expires_at - n.created_at == timedelta(hours=24)
