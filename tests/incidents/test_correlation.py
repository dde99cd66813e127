from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webapp.incidents import services
from webapp.incidents.models import CorrelationRule, Incident, Signal, TimelineEntry
from webapp.mitigation.services import close_unhealthy_event, open_unhealthy_event
from webapp.telemetry.models import Instance, Node

T0 = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(minutes=30)


@pytest.fixture
def targets(db):
    a = Node.objects.create(name="node-a", cluster="eu1")
    b = Node.objects.create(name="node-b", cluster="eu1")
    vm = Instance.objects.create(name="vm-1", node=a)
    return a, b, vm


def sig(kind, sid, minutes, **kw):
    return services.record_signal(
        kind, sid, title=f"{kind} {sid}", start=T0 + timedelta(minutes=minutes), **kw
    )


def test_overlapping_signals_on_one_node_become_one_incident(targets):
    a, _, vm = targets
    sig("anomaly", 1, 0, instance=vm)  # one anomaly alone does not open (min 2 signals)
    assert not Incident.objects.exists()
    sig("anomaly", 2, 5, node=a)
    incident = Incident.objects.get()
    assert incident.signals.count() == 2 and incident.node == a
    sig("alert", "fp-1", 10, node=a)
    assert Incident.objects.count() == 1 and incident.signals.count() == 3


def test_unrelated_signals_stay_apart(targets):
    a, b, _ = targets
    sig("alert", "x", 0, node=a)
    sig("alert", "y", 1, node=b)
    assert Incident.objects.count() == 2
    sig("alert", "z", 200, node=a)  # long after the window: a new incident
    assert Incident.objects.filter(node=a).count() == 2


def test_same_signal_twice_is_one_signal(targets):
    a, _, _ = targets
    sig("alert", "fp", 0, node=a)
    sig("alert", "fp", 0, node=a, end=T0 + timedelta(minutes=5))
    assert Signal.objects.count() == 1 and Signal.objects.get().end is not None


def test_resolved_incident_reopens_when_its_signals_fire_again(targets):
    a, _, _ = targets
    sig("alert", "disk", 0, node=a)
    incident = Incident.objects.get()
    services.change_state(incident, Incident.RESOLVED)
    sig("alert", "disk-2", 20, node=a)
    incident.refresh_from_db()
    assert incident.state == Incident.OPEN and incident.reopened == 1
    assert Incident.objects.count() == 1


def test_unhealthy_events_open_incidents_through_the_mitigation_service(targets):
    a, _, _ = targets
    event, created = open_unhealthy_event(
        a, "disk", {"severity": 0.8}, source="api", external_id="ev-1"
    )
    assert created and Incident.objects.get().signals.get().kind == "unhealthy"
    again, created = open_unhealthy_event(a, "disk", {}, source="api", external_id="ev-1")
    assert not created and again == event
    close_unhealthy_event(event)
    assert Signal.objects.get().end is not None


def test_timeline_is_in_time_order_and_cannot_be_edited(targets, users):
    a, _, _ = targets
    sig("alert", "x", 0, node=a)
    incident = Incident.objects.get()
    services.change_state(incident, Incident.ACKNOWLEDGED, actor=users.operator)
    services.comment(incident, "looking at it", actor=users.operator)
    entries = list(incident.timeline.all())
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    assert [e.kind for e in entries][-2:] == ["state", "comment"]
    assert entries[-1].actor_name == "operator"
    with pytest.raises(ValueError):
        entries[-1].text = "rewritten"
        entries[-1].save()
    with pytest.raises(ValueError):
        entries[-1].delete()
    assert TimelineEntry.objects.get(pk=entries[-1].pk).text == "looking at it"


def test_merge_and_split(targets, users):
    a, b, _ = targets
    sig("alert", "x", 0, node=a)
    sig("alert", "y", 0, node=b)
    first, second = Incident.objects.order_by("id")
    services.merge(first, [second], actor=users.operator)
    second.refresh_from_db()
    assert second.merged_into == first and first.signals.count() == 2
    moved = first.signals.get(source_id="y")
    new = services.split(first, [moved.pk], actor=users.operator, title="node-b on its own")
    assert (
        new.signals.get() == moved
        and first.signals.count() == 1
        and new.title == "node-b on its own"
    )
    with pytest.raises(ValueError):
        services.split(first, list(first.signals.values_list("pk", flat=True)))


def test_rules_are_configurable(targets):
    a, _, vm = targets
    CorrelationRule.objects.all().delete()
    CorrelationRule.objects.create(
        name="each anomaly", match_on="instance", signal_kinds=["anomaly"], min_signals=1
    )
    sig("anomaly", 1, 0, instance=vm)
    assert Incident.objects.get().key == f"instance:{vm.pk}"
    sig("alert", "x", 0, node=a)  # no rule for alerts now
    assert (
        Incident.objects.count() == 1 and Signal.objects.filter(incident__isnull=True).count() == 1
    )


def test_auto_resolve_after_signals_end(targets):
    a, _, _ = targets
    sig("alert", "x", 0, node=a, end=T0 + timedelta(minutes=5))
    assert services.auto_resolve(now=T0 + timedelta(minutes=30), quiet_minutes=60) == 0
    assert services.auto_resolve(now=T0 + timedelta(minutes=90), quiet_minutes=60) == 1
    assert Incident.objects.get().state == Incident.RESOLVED


def test_an_incident_resolved_long_after_it_ended_is_not_reopened_by_new_trouble(targets):
    """Auto-resolve marks an incident resolved after a quiet hour (after a backfill, hours
    after it ended); a new signal is judged against when it ended, so it opens a new
    incident instead of reviving an old one."""
    a, _, _ = targets
    sig("alert", "old", -300, node=a, end=T0 - timedelta(minutes=290))
    old = Incident.objects.get()
    assert services.auto_resolve(now=T0) == 1
    old.refresh_from_db()
    assert old.end == T0 - timedelta(minutes=290) and old.resolved_at > old.end
    sig("alert", "new", 5, node=a)
    old.refresh_from_db()
    assert old.state == Incident.RESOLVED and old.reopened == 0
    assert Incident.objects.count() == 2
