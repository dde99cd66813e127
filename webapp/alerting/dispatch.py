"""Alertmanager's pipeline over the stored alerts, once per beat tick:

1. mute: which firing alerts are silenced, inhibited or in a maintenance window (and
   history events when that changes);
2. route each firing alert through the tree to aggregation groups (route + group-by
   label values); a new group waits ``group_wait``, then flushes every
   ``group_interval``;
3. on a flush, decide as Alertmanager's dedup stage does (new alerts, resolved ones,
   or ``repeat_interval`` passed; acknowledged alerts never cause a repeat) and, if so,
   store a notification with its dedup key and queue its delivery.

One dispatcher at a time (a transaction-scoped advisory lock on PostgreSQL; SQLite
serialises writers anyway).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.urls import reverse

from webapp.alerting import engine, routing, services
from webapp.alerting.matchers import matches
from webapp.alerting.models import AlertGroup, AlertInstance, Notification, Receiver

LOCK_KEY = 0x7E11_A1E7  # advisory lock id for "alerting dispatch"
ZERO_TIME = "0001-01-01T00:00:00Z"


def notification_ttl() -> timedelta:
    return timedelta(seconds=settings.TELLTALE_ALERTING_NOTIFICATION_TTL)


@dataclass(slots=True)
class Bucket:
    route: engine.RouteNode
    labels: dict
    alerts: list[AlertInstance] = field(default_factory=list)


def _try_lock() -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [LOCK_KEY])
        return bool(cursor.fetchone()[0])


def dispatch(now) -> dict:
    queued: list[int] = []
    with transaction.atomic():
        if not _try_lock():
            return {"skipped": "another dispatcher is running"}
        groups = list(AlertGroup.objects.all())
        notified = {i for g in groups for i in g.notified_firing}
        alerts = list(
            AlertInstance.objects.filter(Q(state=AlertInstance.FIRING) | Q(id__in=notified))
        )
        firing = [a for a in alerts if a.state == AlertInstance.FIRING]
        muted = _mute(firing, now)
        tree = routing.load_tree()
        if tree is None:
            return {"alerts": len(firing), "muted": muted, "groups": 0, "notifications": 0}
        buckets = _route(tree, firing)
        existing = {(g.route_id, g.key): g for g in groups}
        for (route_id, key), bucket in buckets.items():
            if (route_id, key) not in existing:
                existing[(route_id, key)] = AlertGroup.objects.create(
                    route_id=route_id,
                    key=key,
                    key_hash=hashlib.sha256(key.encode()).hexdigest(),
                    labels=bucket.labels,
                    created_at=now,
                    next_flush_at=now + timedelta(milliseconds=bucket.route.group_wait_ms),
                )
        routes = {node.id: node for node, _ in routing.walk(tree)}
        receivers = {r.pk: r for r in Receiver.objects.all()}
        by_id = {a.id: a for a in alerts}
        for (route_id, key), group in existing.items():
            if group.next_flush_at > now:
                continue
            node = routes.get(route_id)
            bucket = buckets.get((route_id, key))
            if node is None or (bucket is None and not group.notified_firing):
                group.delete()
                continue
            notification = _flush(group, node, bucket, by_id, receivers, now)
            if notification is not None:
                queued.append(notification.pk)
            if bucket is None:
                group.delete()
        if queued:
            transaction.on_commit(lambda: _enqueue(queued))
    return {
        "alerts": len(firing),
        "muted": muted,
        "groups": len(existing),
        "notifications": len(queued),
    }


def _enqueue(ids: list[int]) -> None:
    from workers.tasks import deliver_notification

    for notification_id in ids:
        deliver_notification.delay(notification_id)


def _mute(firing: list[AlertInstance], now) -> int:
    silences = routing.active_silences(now)
    windows = routing.active_windows(now)
    inhibitions = routing.inhibition_rules()
    sources = {
        rule_id: [(a.id, a.labels) for a in firing if matches(source, a.labels)]
        for rule_id, source, _, _ in inhibitions
    }
    updates = []
    for alert in firing:
        wanted = {
            "silenced_by": [sid for sid, m in silences if matches(m, alert.labels)],
            "inhibited_by": routing.inhibited_by(alert.labels, alert.id, inhibitions, sources),
            "muted_by": [wid for wid, m in windows if matches(m, alert.labels)],
        }
        updates.append((alert, wanted))
    services.update_suppression(updates, now)
    return sum(1 for a in firing if a.is_suppressed)


def _route(tree: engine.RouteNode, firing: list[AlertInstance]) -> dict[tuple, Bucket]:
    buckets: dict[tuple, Bucket] = {}
    for alert in firing:
        for node in engine.match_routes(tree, alert.labels):
            key = engine.group_key(node, alert.labels)
            bucket = buckets.get((node.id, key))
            if bucket is None:
                bucket = buckets[(node.id, key)] = Bucket(
                    node, engine.group_labels(node, alert.labels)
                )
            bucket.alerts.append(alert)
    return buckets


def _flush(group, node, bucket, by_id, receivers, now) -> Notification | None:
    members = bucket.alerts if bucket else []
    firing = [a for a in members if not a.is_suppressed]
    resolved = [
        by_id[i]
        for i in group.notified_firing
        if i in by_id and by_id[i].state != AlertInstance.FIRING
    ]
    receiver = receivers.get(node.receiver_id)
    send_resolved = bool(receiver and receiver.send_resolved)
    firing_ids = {a.id for a in firing}
    resolved_ids = {a.id for a in resolved}
    group.last_flush_at = now
    group.next_flush_at = now + timedelta(milliseconds=node.group_interval_ms)
    notification = None
    update = engine.needs_update(
        notified=group.notified,
        last_firing=set(group.notified_firing),
        last_resolved=set(group.notified_resolved),
        firing=firing_ids,
        resolved=resolved_ids,
        unacked_firing={a.id for a in firing if a.acknowledged_at is None},
        last_notified_ms=services.to_ms(group.last_notified_at),
        now_ms=services.to_ms(now),
        repeat_ms=node.repeat_interval_ms,
        send_resolved=send_resolved,
    )
    if update:
        sent_resolved = resolved if send_resolved else []
        if (firing or sent_resolved) and receiver is not None and receiver.enabled:
            group.seq += 1
            notification = _notification(group, receiver, firing, sent_resolved, now)
        group.notified = True
        group.last_notified_at = now
        group.notified_firing = sorted(firing_ids)
        group.notified_resolved = sorted(resolved_ids)
    group.save()
    return notification


def _common(dicts: list[dict]) -> dict:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def _iso(at) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if at else ZERO_TIME


def alert_payload(alert: AlertInstance) -> dict:
    resolved = alert.state != AlertInstance.FIRING
    return {
        "status": "resolved" if resolved else "firing",
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": _iso(alert.fired_at or alert.active_at),
        "endsAt": _iso(alert.resolved_at) if resolved else ZERO_TIME,
        "generatorURL": settings.SITE_URL + reverse("alert_detail", args=[alert.pk]),
        "fingerprint": alert.fingerprint,
    }


def group_payload(receiver_name: str, group_key: str, group_labels: dict, alerts: list) -> dict:
    """Alertmanager's webhook message (version 4); email and Slack render from it too."""
    entries = [alert_payload(a) for a in alerts]
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if any(e["status"] == "firing" for e in entries) else "resolved",
        "receiver": receiver_name,
        "groupLabels": group_labels,
        "commonLabels": _common([e["labels"] for e in entries]),
        "commonAnnotations": _common([e["annotations"] for e in entries]),
        "externalURL": settings.SITE_URL,
        "alerts": entries,
    }


def _notification(group, receiver, firing, resolved, now) -> Notification:
    alerts = firing + resolved
    payload = group_payload(receiver.name, group.key, group.labels, alerts)
    notification = Notification.objects.create(
        dedup_key=f"group-{group.pk}-{group.seq}",
        receiver=receiver,
        receiver_name=receiver.name,
        group=group,
        group_key=group.key,
        alert_status=payload["status"],
        payload=payload,
        created_at=now,
        expires_at=now + notification_ttl(),
        next_attempt_at=now,
    )
    notification.alerts.add(*alerts)
    return notification
