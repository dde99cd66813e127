"""Every state change of alerting goes through a function here: evaluation results,
acknowledgements, suppression (silence, inhibition, maintenance), silences, and admin
changes to rules, receivers, routes, inhibition rules and maintenance windows.

Alert state changes are written by ``_change`` (one row update + one history event);
the evaluation cycle batches the same changes through ``apply_evaluation``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from webapp.alerting import engine, incidents_feed, templating
from webapp.alerting.matchers import fingerprint, parse_matchers
from webapp.alerting.models import (
    AlertEvent,
    AlertInstance,
    AlertRule,
    InhibitionRule,
    MaintenanceWindow,
    Receiver,
    Route,
    Silence,
)
from webapp.core.services import audit

log = logging.getLogger(__name__)
ACTIVE = (AlertInstance.PENDING, AlertInstance.FIRING)
STATE_FIELDS = [
    "state",
    "value",
    "active_at",
    "fired_at",
    "last_true_at",
    "keep_firing_since",
    "resolved_at",
    "last_eval_at",
    "annotations",
    "acknowledged_by",
    "acknowledged_at",
    "ack_comment",
    "silenced_by",
    "inhibited_by",
    "muted_by",
]


def to_ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def fast_update(rows: list, fields: list[str]) -> None:
    """``bulk_update`` for many rows: one parameterised UPDATE per row, sent as a batch
    (psycopg pipelines executemany). Django's CASE-per-field statements take minutes
    for tens of thousands of alerts; this takes well under a second."""
    if not rows:
        return
    model = type(rows[0])
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    qn = connection.ops.quote_name
    sql = (
        f"UPDATE {qn(meta.db_table)} SET "
        + ", ".join(f"{qn(f.column)} = %s" for f in columns)
        + f" WHERE {qn(meta.pk.column)} = %s"
    )
    params = [
        [f.get_db_prep_save(getattr(row, f.attname), connection) for f in columns] + [row.pk]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def alert_labels(rule: AlertRule, element_labels: dict[str, str]) -> dict[str, str]:
    labels = {**element_labels, **rule.labels}
    labels["alertname"] = rule.name
    labels["severity"] = rule.severity
    return labels


def render_annotations(rule: AlertRule, labels: dict, value: float | None) -> dict[str, str]:
    context = {
        "labels": labels,
        "value": value if value is not None else float("nan"),
        "threshold": rule.threshold,
        "rule": rule.name,
        "for": templating.humanize_duration(rule.for_s),
    }
    out = {}
    if rule.summary:
        out["summary"] = templating.render(rule.summary, context)
    if rule.description:
        out["description"] = templating.render(rule.description, context)
    if rule.runbook_url:
        out["runbook_url"] = rule.runbook_url
    return out


def _state_of(alert: AlertInstance) -> engine.AlertState:
    return engine.AlertState(
        alert.state,
        to_ms(alert.active_at),
        to_ms(alert.fired_at),
        to_ms(alert.last_true_at),
        to_ms(alert.resolved_at),
        alert.value,
        to_ms(alert.keep_firing_since),
    )


def _event(alert: AlertInstance, kind: str, now, actor=None, **detail) -> AlertEvent:
    return AlertEvent(
        alert=alert,
        rule_id=alert.rule_id,
        at=now,
        kind=kind,
        value=alert.value,
        actor=actor if getattr(actor, "pk", None) else None,
        detail=detail,
    )


def _set_state(alert: AlertInstance, new: engine.AlertState, transition: str | None, now):
    """Copy the engine's state onto the row; returns the history event, if any."""
    alert.state = new.state
    alert.value = new.value
    alert.active_at = from_ms(new.active_at)
    alert.fired_at = from_ms(new.fired_at)
    alert.last_true_at = from_ms(new.last_true_at)
    alert.resolved_at = from_ms(new.resolved_at)
    alert.keep_firing_since = from_ms(new.keep_since)
    alert.last_eval_at = now
    if transition is None:
        return None
    detail = {}
    if transition in (engine.RESOLVED, "cleared"):
        if alert.acknowledged_at is not None:
            # An acknowledgement covers one episode: it ends when the alert resolves.
            detail["acknowledgement_ended"] = str(alert.acknowledged_by or "")
        alert.acknowledged_by = None
        alert.acknowledged_at = None
        alert.ack_comment = ""
        alert.silenced_by, alert.inhibited_by, alert.muted_by = [], [], []
    return _event(alert, transition, now, **detail)


# --- evaluation --------------------------------------------------------------------------
@transaction.atomic
def apply_evaluation(rules: list[AlertRule], results: dict, now, took_ms: float = 0.0) -> dict:
    """Step every alert of ``rules`` with the elements found true at ``now``.

    Idempotent and safe with two workers: a rule already evaluated at (or after) ``now``,
    or locked by another transaction, is skipped.
    """
    now_ms = to_ms(now)
    candidates = [r.id for r in rules]
    locked = set(
        AlertRule.objects.select_for_update(skip_locked=True)
        .filter(pk__in=candidates)
        .filter(Q(last_eval_at__isnull=True) | Q(last_eval_at__lt=now))
        .values_list("id", flat=True)
    )
    rules = [r for r in rules if r.id in locked]
    active = {
        (a.rule_id, a.fingerprint): a
        for a in AlertInstance.objects.filter(rule_id__in=locked, state__in=ACTIVE)
    }
    wanted: dict[tuple[int, str], tuple[AlertRule, dict, float]] = {}
    errors: dict[int, str] = {}
    for rule in rules:
        found = results.get(rule.id, [])
        if isinstance(found, Exception):
            errors[rule.id] = str(found)
            continue
        for element in found:
            labels = alert_labels(rule, element.labels)
            wanted[(rule.id, fingerprint(labels))] = (rule, labels, element.value)
    missing = [key for key in wanted if key not in active]
    known = {}
    if missing:
        rows = AlertInstance.objects.filter(
            rule_id__in={k[0] for k in missing}, fingerprint__in={k[1] for k in missing}
        )
        known = {(a.rule_id, a.fingerprint): a for a in rows}
    created = []
    for key in missing:
        if key not in known:
            rule, labels, _ = wanted[key]
            created.append(AlertInstance(rule=rule, fingerprint=key[1], labels=labels))
    if created:
        AlertInstance.objects.bulk_create(created)
        # SQLite and PostgreSQL both return the new ids; fetch them if a backend did not.
        if any(a.pk is None for a in created):
            rows = AlertInstance.objects.filter(
                rule_id__in={a.rule_id for a in created},
                fingerprint__in={a.fingerprint for a in created},
            )
            known.update({(a.rule_id, a.fingerprint): a for a in rows})
        else:
            known.update({(a.rule_id, a.fingerprint): a for a in created})
    by_rule = {r.id: r for r in rules}
    changed, events, fired, resolved = [], [], [], []
    for key, (rule, labels, value) in wanted.items():
        alert = active.get(key) or known[key]
        alert.rule = rule
        new, transition = engine.step(
            _state_of(alert), True, value, now_ms, rule.for_s * 1000, rule.keep_firing_for_s * 1000
        )
        unhealthy = rule.kind == AlertRule.UNHEALTHY and new.state == engine.FIRING
        if unhealthy and alert.unhealthy_event_id is None:  # new, or opening failed before
            fired.append(alert)
        kept = to_ms(alert.keep_firing_since)
        if transition is None and value == alert.value and new.keep_since == kept:
            continue  # nothing moved: no write
        event = _set_state(alert, new, transition, now)
        alert.annotations = render_annotations(rule, labels, value)
        changed.append(alert)
        if event is not None:
            events.append(event)
    for key, alert in active.items():
        if key in wanted or key[0] in errors:
            continue
        rule = by_rule[key[0]]
        alert.rule = rule
        new, transition = engine.step(
            _state_of(alert), False, None, now_ms, rule.for_s * 1000, rule.keep_firing_for_s * 1000
        )
        if transition is None and new.keep_since == to_ms(alert.keep_firing_since):
            continue
        event = _set_state(alert, new, transition, now)
        if event is not None:
            events.append(event)
        changed.append(alert)
        if transition == engine.RESOLVED:
            resolved.append(alert)
    if changed:
        fast_update(changed, STATE_FIELDS)
    if events:
        AlertEvent.objects.bulk_create(events, batch_size=1000)
    for rule in rules:
        rule.last_eval_at = now
        rule.last_eval_ms = took_ms
        rule.last_error = errors.get(rule.id, "")
    fast_update(rules, ["last_eval_at", "last_eval_ms", "last_error"])
    _feed_mitigation(fired, resolved, now)
    incidents_feed.enqueue(
        [e.alert_id for e in events if e.kind in (engine.FIRING, engine.RESOLVED)]
    )
    return {
        "rules": len(rules),
        "changed": len(changed),
        "events": len(events),
        "errors": len(errors),
    }


def _feed_mitigation(fired: list[AlertInstance], resolved: list[AlertInstance], now) -> None:
    """Rules of the "node marked unhealthy" kind open an unhealthy event when they fire
    and close it when they resolve; the mitigation engine takes it from there. A failure
    here is logged and retried on the next evaluation; it never holds up the alert."""
    from webapp.mitigation import services as mitigation
    from webapp.telemetry.models import Node

    for alert in fired:
        rule = alert.rule
        try:
            with transaction.atomic():
                node = Node.objects.filter(name=alert.labels.get("node", "")).first()
                if node is None:
                    log.warning("unhealthy rule %s fired without a known node label", rule.name)
                    continue
                event, _ = mitigation.open_unhealthy_event(
                    node,
                    rule.fault_category or "unknown",
                    {"rule": rule.name, "value": alert.value, "labels": alert.labels},
                    source="alert",
                    external_id=f"alert-{alert.pk}-{to_ms(alert.fired_at)}",
                    start=alert.fired_at or now,
                )
                AlertInstance.objects.filter(pk=alert.pk).update(unhealthy_event=event)
                alert.unhealthy_event = event
        except Exception:
            log.exception("could not open an unhealthy event for alert %s", alert.pk)
    for alert in resolved:
        if alert.rule.kind != AlertRule.UNHEALTHY or not alert.unhealthy_event_id:
            continue
        try:
            with transaction.atomic():
                mitigation.close_unhealthy_event(alert.unhealthy_event, end=now)
        except Exception:
            log.exception("could not close unhealthy event %s", alert.unhealthy_event_id)


def _change(alert: AlertInstance, kind: str, now, actor=None, fields=(), **detail) -> AlertEvent:
    alert.save(update_fields=list(fields))
    event = _event(alert, kind, now, actor, **detail)
    event.save()
    return event


@transaction.atomic
def resolve_rule_alerts(rule: AlertRule, now=None, reason: str = "") -> int:
    """A disabled or deleted rule's alerts resolve (and say why) instead of hanging on."""
    now = now or timezone.now()
    count = 0
    for alert in AlertInstance.objects.select_for_update().filter(rule=rule, state__in=ACTIVE):
        was = alert.state
        state = engine.AlertState(engine.INACTIVE if was == engine.PENDING else engine.RESOLVED)
        state.resolved_at = None if was == engine.PENDING else to_ms(now)
        state.active_at, state.fired_at = to_ms(alert.active_at), to_ms(alert.fired_at)
        state.value = alert.value
        kind = "cleared" if was == engine.PENDING else engine.RESOLVED
        event = _set_state(alert, state, kind, now)
        event.detail["reason"] = reason
        alert.save(update_fields=STATE_FIELDS)
        event.save()
        count += 1
        if kind == engine.RESOLVED:
            incidents_feed.enqueue([alert.pk])
    return count


# --- people's actions on alerts --------------------------------------------------------------
@transaction.atomic
def acknowledge(alert: AlertInstance, actor, comment: str = "", now=None) -> AlertEvent:
    """Mutes repeat notifications of this alert until it resolves."""
    now = now or timezone.now()
    alert = AlertInstance.objects.select_for_update().get(pk=alert.pk)
    if alert.state != AlertInstance.FIRING:
        raise ValueError("only a firing alert can be acknowledged")
    if alert.acknowledged_at is not None:
        raise ValueError(f"already acknowledged by {alert.acknowledged_by}")
    alert.acknowledged_by = actor
    alert.acknowledged_at = now
    alert.ack_comment = comment[:500]
    fields = ["acknowledged_by", "acknowledged_at", "ack_comment"]
    return _change(alert, AlertEvent.ACKNOWLEDGED, now, actor, fields, comment=comment[:500])


@transaction.atomic
def unacknowledge(alert: AlertInstance, actor, now=None) -> AlertEvent:
    now = now or timezone.now()
    alert = AlertInstance.objects.select_for_update().get(pk=alert.pk)
    if alert.acknowledged_at is None:
        raise ValueError("this alert is not acknowledged")
    previous = str(alert.acknowledged_by or "")
    alert.acknowledged_by, alert.acknowledged_at, alert.ack_comment = None, None, ""
    fields = ["acknowledged_by", "acknowledged_at", "ack_comment"]
    return _change(alert, AlertEvent.UNACKNOWLEDGED, now, actor, fields, previous=previous)


SUPPRESSION = (
    ("silenced_by", AlertEvent.SILENCED, AlertEvent.UNSILENCED),
    ("inhibited_by", AlertEvent.INHIBITED, AlertEvent.UNINHIBITED),
    ("muted_by", AlertEvent.MUTED, AlertEvent.UNMUTED),
)


def update_suppression(updates: list[tuple[AlertInstance, dict[str, list]]], now) -> int:
    """Record what mutes each alert now; a change becomes a history event (silenced,
    unsilenced, inhibited, …). Called by the dispatcher inside its transaction."""
    changed, events = [], []
    for alert, wanted in updates:
        dirty = False
        for field, on, off in SUPPRESSION:
            before, after = list(getattr(alert, field)), sorted(wanted.get(field, []))
            if before == after:
                continue
            dirty = True
            setattr(alert, field, after)
            if after and not before:
                events.append(_event(alert, on, now, by=after))
            elif before and not after:
                events.append(_event(alert, off, now, by=before))
            else:
                events.append(_event(alert, on, now, by=after, previously=before))
        if dirty:
            changed.append(alert)
    if changed:
        fast_update(changed, [f for f, _, _ in SUPPRESSION])
        AlertEvent.objects.bulk_create(events)
    return len(changed)


# --- silences -----------------------------------------------------------------------------------
def _check_silence(matchers: str, starts_at, ends_at, comment: str) -> str:
    parsed = parse_matchers(matchers, require_one=True)
    if ends_at <= starts_at:
        raise ValueError("the end must be after the start")
    if not comment.strip():
        raise ValueError("say why (a comment) so others know")
    return ", ".join(str(m) for m in parsed)


@transaction.atomic
def create_silence(matchers: str, starts_at, ends_at, comment: str, actor) -> Silence:
    text = _check_silence(matchers, starts_at, ends_at, comment)
    silence = Silence.objects.create(
        matchers=text,
        starts_at=starts_at,
        ends_at=ends_at,
        comment=comment,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    audit(actor, "silence.created", text, id=silence.pk, ends_at=ends_at.isoformat())
    return silence


@transaction.atomic
def update_silence(silence: Silence, matchers: str, starts_at, ends_at, comment: str, actor):
    if silence.state_at(timezone.now()) == "expired":
        raise ValueError("an expired silence cannot be edited; create a new one")
    silence.matchers = _check_silence(matchers, starts_at, ends_at, comment)
    silence.starts_at, silence.ends_at, silence.comment = starts_at, ends_at, comment
    silence.updated_at = timezone.now()
    silence.save(update_fields=["matchers", "starts_at", "ends_at", "comment", "updated_at"])
    audit(actor, "silence.changed", silence.matchers, id=silence.pk, ends_at=ends_at.isoformat())
    return silence


@transaction.atomic
def expire_silence(silence: Silence, actor, now=None) -> Silence:
    now = now or timezone.now()
    if silence.ends_at > now:
        silence.ends_at = max(now, silence.starts_at)
        silence.updated_at = now
        silence.save(update_fields=["ends_at", "updated_at"])
        audit(actor, "silence.expired", silence.matchers, id=silence.pk)
    return silence


# --- configuration (admins) --------------------------------------------------------------------
CONFIG_NAMES = {
    AlertRule: "alert_rule",
    Receiver: "receiver",
    Route: "route",
    InhibitionRule: "inhibition",
    MaintenanceWindow: "maintenance_window",
}


@transaction.atomic
def save_config(obj, actor, **detail):
    """Create or change a rule, receiver, route, inhibition rule or maintenance window."""
    created = obj.pk is None
    if isinstance(obj, AlertRule | Receiver):
        obj.updated_at = timezone.now()
    if isinstance(obj, AlertRule):
        if created:
            obj.created_by = actor if getattr(actor, "pk", None) else None
        obj.next_eval_at = timezone.now()  # evaluate the new version right away
    if isinstance(obj, Receiver):
        detail.setdefault("kind", obj.kind)
    obj.save()
    name = CONFIG_NAMES[type(obj)]
    audit(actor, f"{name}.{'created' if created else 'changed'}", str(obj), id=obj.pk, **detail)
    if isinstance(obj, AlertRule) and not obj.enabled:
        resolve_rule_alerts(obj, reason="rule disabled")
    return obj


@transaction.atomic
def delete_config(obj, actor) -> None:
    name = CONFIG_NAMES[type(obj)]
    audit(actor, f"{name}.deleted", str(obj), id=obj.pk)
    if isinstance(obj, AlertRule):
        # Rules are archived, not deleted, so their alerts' history stays browsable.
        resolve_rule_alerts(obj, reason="rule deleted")
        obj.archived, obj.enabled, obj.updated_at = True, False, timezone.now()
        obj.save(update_fields=["archived", "enabled", "updated_at"])
        return
    obj.delete()


def ensure_root_route(receiver: Receiver | None = None, actor=None) -> Route:
    root = Route.objects.filter(parent__isnull=True).order_by("id").first()
    if root is None:
        root = save_config(
            Route(
                name="root",
                receiver=receiver,
                group_by=["alertname"],
                group_wait_s=30,
                group_interval_s=300,
                repeat_interval_s=4 * 3600,
            ),
            actor,
        )
    return root


def default_silence_end(now=None) -> datetime:
    return (now or timezone.now()) + timedelta(hours=2)
