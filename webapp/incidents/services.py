"""State changes of incidents: signals in, correlation, states, people's actions, timeline.

Every change writes a timeline entry in the same transaction, so the timeline is the
complete, append-only history of the incident.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from webapp.incidents.models import (
    LABELS,
    SIGNAL_KINDS,
    CorrelationRule,
    Incident,
    Signal,
    TimelineEntry,
)

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
STATE_ORDER = [Incident.OPEN, Incident.ACKNOWLEDGED, Incident.MITIGATED, Incident.RESOLVED]
LABEL_KEYS = {key for key, _ in LABELS}


def _actor_name(actor) -> str:
    return actor.get_username() if getattr(actor, "pk", None) else "telltale"


def add_timeline(
    incident: Incident, kind: str, text: str, actor=None, data=None, at=None
) -> TimelineEntry:
    return TimelineEntry.objects.create(
        incident=incident,
        kind=kind,
        text=text,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=_actor_name(actor),
        data=data or {},
        at=at or timezone.now(),
    )


# --- signals and correlation ----------------------------------------------------------
def _key(rule: CorrelationRule, signal: Signal) -> str | None:
    if rule.match_on == "instance":
        return f"instance:{signal.instance_id}" if signal.instance_id else None
    node_id = signal.node_id or (signal.instance.node_id if signal.instance_id else None)
    if rule.match_on == "node":
        return f"node:{node_id}" if node_id else None
    cluster = signal.cluster or (signal.node.cluster if signal.node_id else "")
    return f"cluster:{cluster}" if cluster else None


def _same_key(rule: CorrelationRule, signal: Signal) -> Q:
    """The SQL side of ``_key``: narrows candidates before the exact comparison."""
    if rule.match_on == "instance":
        return Q(instance_id=signal.instance_id)
    node_id = signal.node_id or (signal.instance.node_id if signal.instance_id else None)
    if rule.match_on == "node":
        return Q(node_id=node_id) | Q(instance__node_id=node_id)
    cluster = signal.cluster or (signal.node.cluster if signal.node_id else "")
    return Q(cluster=cluster) | Q(node__cluster=cluster)


def _rules_for(kind: str) -> list[CorrelationRule]:
    return [
        r
        for r in CorrelationRule.objects.filter(enabled=True)
        if not r.signal_kinds or kind in r.signal_kinds
    ]


@transaction.atomic
def record_signal(
    kind: str,
    source_id: str | int,
    *,
    title: str,
    start: datetime,
    end: datetime | None = None,
    severity: str = "warning",
    node=None,
    instance=None,
    cluster: str = "",
    details: dict | None = None,
) -> Signal:
    """Record (or update) a signal and correlate it into an incident. Idempotent per
    (kind, source_id): an alert that keeps firing updates its signal instead of adding one."""
    if kind not in SIGNAL_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SIGNAL_KINDS)}")
    if node is None and instance is not None:
        node = instance.node
    signal, created = Signal.objects.select_for_update().get_or_create(
        kind=kind,
        source_id=str(source_id),
        defaults={
            "title": title[:300],
            "start": start,
            "end": end,
            "severity": severity,
            "node": node,
            "instance": instance,
            "cluster": cluster or (node.cluster if node else ""),
            "details": details or {},
        },
    )
    if not created:
        changed = []
        if end != signal.end:
            signal.end = end
            changed.append("end")
        if SEVERITY_RANK.get(severity, 1) > SEVERITY_RANK.get(signal.severity, 1):
            signal.severity = severity
            changed.append("severity")
        if changed:
            signal.save(update_fields=changed)
        if signal.incident_id is not None:
            incident = signal.incident
            if incident.state == Incident.RESOLVED and end is None:
                _reopen(incident, signal)
            return signal
    correlate(signal)
    return signal


def correlate(signal: Signal) -> Incident | None:
    """Attach the signal to an active incident sharing the rule's key, reopen a recently
    resolved one, or open a new incident once enough signals share the key."""
    for rule in _rules_for(signal.kind):
        key = _key(rule, signal)
        if key is None:
            continue
        window = timedelta(minutes=rule.window_minutes)
        active = (
            Incident.objects.select_for_update()
            .filter(key=key, merged_into__isnull=True, last_signal_at__gte=signal.start - window)
            .exclude(state=Incident.RESOLVED)
            .order_by("-last_signal_at")
            .first()
        )
        if active is not None:
            attach(active, signal)
            return active
        recent = (
            Incident.objects.select_for_update()
            .filter(
                key=key,
                state=Incident.RESOLVED,
                merged_into__isnull=True,
                # From when it ended, not when it was marked resolved: auto-resolve runs after
                # a quiet hour, and after a backfill it marks incidents hours old.
                end__gte=signal.start - timedelta(minutes=rule.reopen_minutes),
            )
            .order_by("-end")
            .first()
        )
        if recent is not None:
            attach(recent, signal)
            _reopen(recent, signal)
            return recent
        candidates = Signal.objects.filter(
            _same_key(rule, signal),
            incident__isnull=True,
            start__gte=signal.start - window,
            start__lte=signal.start + window,
        )
        if rule.signal_kinds:
            candidates = candidates.filter(kind__in=rule.signal_kinds)
        pending = [s for s in candidates.select_related("node", "instance") if _key(rule, s) == key]
        if len(pending) >= rule.min_signals:
            return open_incident(rule, key, pending)
    return None


def _title_for(signals: list[Signal]) -> str:
    first = min(signals, key=lambda s: s.start)
    target = first.instance or first.node
    return f"{first.title}" + (f" on {target}" if target and str(target) not in first.title else "")


def open_incident(rule: CorrelationRule | None, key: str, signals: list[Signal]) -> Incident:
    first = min(signals, key=lambda s: s.start)
    incident = Incident.objects.create(
        title=_title_for(signals)[:200],
        severity=max((s.severity for s in signals), key=lambda v: SEVERITY_RANK.get(v, 1)),
        rule=rule,
        key=key,
        node=first.node or (first.instance.node if first.instance_id else None),
        instance=first.instance if key.startswith("instance:") else None,
        cluster=first.cluster,
        start=first.start,
        last_signal_at=max(s.start for s in signals),
    )
    add_timeline(
        incident, "state", f"Opened by rule {rule.name if rule else 'manual'}", at=first.start
    )
    for s in sorted(signals, key=lambda s: s.start):
        attach(incident, s)
    return incident


def attach(incident: Incident, signal: Signal, actor=None, manual: bool = False) -> None:
    if signal.incident_id == incident.pk:
        return
    previous = signal.incident
    signal.incident = incident
    signal.save(update_fields=["incident"])
    if signal.start > incident.last_signal_at:
        incident.last_signal_at = signal.start
    if SEVERITY_RANK.get(signal.severity, 1) > SEVERITY_RANK.get(incident.severity, 1):
        incident.severity = signal.severity
    incident.save(update_fields=["last_signal_at", "severity"])
    add_timeline(
        incident,
        "attach" if manual else "signal",
        f"{signal.kind}: {signal.title}",
        actor=actor,
        data={
            "signal": signal.pk,
            "kind": signal.kind,
            "source_id": signal.source_id,
            "from": previous.pk if previous else None,
        },
        at=timezone.now() if manual else signal.start,
    )


def _reopen(incident: Incident, signal: Signal) -> None:
    incident.state = Incident.OPEN
    incident.resolved_at = None
    incident.end = None
    incident.reopened += 1
    incident.save(update_fields=["state", "resolved_at", "end", "reopened"])
    add_timeline(
        incident, "state", f"Reopened: {signal.kind} fired again", data={"signal": signal.pk}
    )


# --- people --------------------------------------------------------------------------
@transaction.atomic
def change_state(
    incident: Incident, state: str, actor=None, note: str = "", end: datetime | None = None
) -> Incident:
    """Move an incident to ``state``; resolving it records when it ended (``end``, or now)."""
    if state not in STATE_ORDER:
        raise ValueError(f"state must be one of {', '.join(STATE_ORDER)}")
    if state == incident.state:
        return incident
    previous = incident.state
    incident.state = state
    fields = ["state"]
    if state == Incident.RESOLVED:
        incident.resolved_at = timezone.now()
        incident.end = end or incident.resolved_at
        fields += ["resolved_at", "end"]
    elif previous == Incident.RESOLVED:
        incident.resolved_at = incident.end = None
        fields += ["resolved_at", "end"]
    incident.save(update_fields=fields)
    add_timeline(
        incident, "state", f"{previous} → {state}" + (f": {note}" if note else ""), actor=actor
    )
    return incident


@transaction.atomic
def assign(incident: Incident, user, actor=None) -> Incident:
    incident.assignee = user
    incident.save(update_fields=["assignee"])
    add_timeline(
        incident, "assign", f"Assigned to {user.get_username() if user else 'nobody'}", actor=actor
    )
    return incident


@transaction.atomic
def retitle(incident: Incident, title: str, actor=None) -> Incident:
    title = title.strip()[:200]
    if not title:
        raise ValueError("the title cannot be empty")
    old = incident.title
    incident.title = title
    incident.save(update_fields=["title"])
    add_timeline(
        incident,
        "title",
        f"Title changed from “{old}”",
        actor=actor,
        data={"old": old, "new": title},
    )
    return incident


@transaction.atomic
def comment(incident: Incident, text: str, actor=None) -> TimelineEntry:
    text = text.strip()
    if not text:
        raise ValueError("a comment needs text")
    if len(text) > 20_000:
        raise ValueError("a comment is limited to 20,000 characters")
    return add_timeline(incident, "comment", text, actor=actor)


@transaction.atomic
def label_incident(incident: Incident, label: str, scenario: str = "", actor=None) -> Incident:
    """A person's judgement of the whole incident; it reaches the anomaly model's next
    training run through the incident's anomaly signals."""
    if label not in LABEL_KEYS:
        raise ValueError(f"label must be one of {', '.join(sorted(LABEL_KEYS))}")
    incident.label = label
    incident.label_scenario = scenario.strip()[:64]
    incident.save(update_fields=["label", "label_scenario"])
    add_timeline(
        incident,
        "label",
        f"Labelled {label}" + (f" ({scenario})" if scenario else ""),
        actor=actor,
        data={"label": label, "scenario": scenario},
    )
    return incident


@transaction.atomic
def merge(target: Incident, others: list[Incident], actor=None) -> Incident:
    for other in others:
        if other.pk == target.pk:
            continue
        for signal in list(other.signals.all()):
            attach(target, signal, actor=actor, manual=True)
        other.merged_into = target
        other.state = Incident.RESOLVED
        other.resolved_at = other.end = timezone.now()
        other.save(update_fields=["merged_into", "state", "resolved_at", "end"])
        add_timeline(
            other, "merge", f"Merged into #{target.pk}", actor=actor, data={"into": target.pk}
        )
        add_timeline(
            target, "merge", f"#{other.pk} merged in", actor=actor, data={"from": other.pk}
        )
        if other.start < target.start:
            target.start = other.start
            target.save(update_fields=["start"])
    return target


@transaction.atomic
def split(incident: Incident, signal_ids: list[int], actor=None, title: str = "") -> Incident:
    signals = list(incident.signals.filter(pk__in=signal_ids))
    if not signals or len(signals) == incident.signals.count():
        raise ValueError("choose some, but not all, of the incident's signals to split off")
    new = open_incident(incident.rule, incident.key, signals)
    if title:
        new.title = title[:200]
        new.save(update_fields=["title"])
    add_timeline(
        incident,
        "split",
        f"{len(signals)} signals split off into #{new.pk}",
        actor=actor,
        data={"to": new.pk},
    )
    add_timeline(
        new, "split", f"Split off from #{incident.pk}", actor=actor, data={"from": incident.pk}
    )
    return new


@transaction.atomic
def attach_by_hand(incident: Incident, signal: Signal, actor=None) -> None:
    attach(incident, signal, actor=actor, manual=True)


# --- events from the other apps -----------------------------------------------------
def incidents_for(node_id: int | None = None, instance_id: int | None = None) -> list[Incident]:
    """Active incidents about a node (or an instance on it)."""
    q = Q()
    if node_id:
        q |= Q(node_id=node_id) | Q(instance__node_id=node_id)
    if instance_id:
        q |= Q(instance_id=instance_id)
    if not q:
        return []
    return list(
        Incident.objects.filter(q, merged_into__isnull=True).exclude(state=Incident.RESOLVED)
    )


def note_on_node(node_id: int, kind: str, text: str, actor=None, data=None) -> int:
    """Add a timeline entry (recommendation, action, outcome, annotation) to the node's
    active incidents; returns how many incidents got it."""
    incidents = incidents_for(node_id=node_id)
    for incident in incidents:
        add_timeline(incident, kind, text, actor=actor, data=data)
    return len(incidents)


def auto_resolve(now: datetime | None = None, quiet_minutes: int = 60) -> int:
    """Resolve incidents whose signals have all ended and stayed quiet, as people expect
    from an alert that cleared; a new signal reopens them."""
    now = now or timezone.now()
    resolved = 0
    for incident in Incident.objects.filter(merged_into__isnull=True).exclude(
        state=Incident.RESOLVED
    ):
        signals = list(incident.signals.all())
        if not signals or any(s.end is None for s in signals):
            continue
        ended = max(s.end for s in signals)
        if ended <= now - timedelta(minutes=quiet_minutes):
            change_state(
                incident,
                Incident.RESOLVED,
                note=f"all signals ended {quiet_minutes} min ago",
                end=ended,
            )
            resolved += 1
    return resolved
