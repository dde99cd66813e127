"""Firing and resolved alerts become incident signals, one per firing episode, so the
incidents app can correlate them with anomalies, interference and unhealthy events.
Runs after the evaluation commits (a task), so a slow or failing incidents app never
holds up alert state."""

from __future__ import annotations

import logging

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.urls import reverse

from webapp.alerting.models import SEVERITIES, AlertInstance
from webapp.telemetry.models import Instance, Node

log = logging.getLogger(__name__)
CHUNK = 500


def enqueue(alert_ids: list[int]) -> None:
    """Queue the feed for these alerts once the current transaction commits."""
    if not alert_ids or not apps.is_installed("webapp.incidents"):
        return

    def send():
        from workers.tasks import feed_incidents

        for i in range(0, len(alert_ids), CHUNK):
            feed_incidents.delay(alert_ids[i : i + CHUNK])

    transaction.on_commit(send)


def feed(alert_ids: list[int]) -> int:
    if not apps.is_installed("webapp.incidents"):
        return 0
    from webapp.incidents.services import record_signal

    alerts = list(
        AlertInstance.objects.filter(pk__in=alert_ids, fired_at__isnull=False).select_related(
            "rule"
        )
    )
    names = {a.labels.get("node") for a in alerts} - {None}
    nodes = {n.name: n for n in Node.objects.filter(name__in=names)}
    wanted = {a.labels.get("vm") or a.labels.get("instance") for a in alerts} - {None}
    instances = {i.name: i for i in Instance.objects.filter(name__in=wanted)}
    recorded = 0
    for alert in alerts:
        labels = alert.labels
        summary = alert.annotations.get("summary") or ", ".join(
            f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity")
        )
        try:
            with transaction.atomic():
                record_signal(
                    "alert",
                    f"{alert.pk}:{int(alert.fired_at.timestamp() * 1000)}",
                    title=f"{alert.rule.name}: {summary}",
                    start=alert.fired_at,
                    end=alert.resolved_at if alert.state != AlertInstance.FIRING else None,
                    severity=alert.severity if alert.severity in SEVERITIES else "warning",
                    node=nodes.get(labels.get("node", "")),
                    instance=instances.get(labels.get("vm") or labels.get("instance") or ""),
                    cluster=labels.get("cluster", ""),
                    details={
                        "labels": labels,
                        "annotations": alert.annotations,
                        "url": settings.SITE_URL + reverse("alert_detail", args=[alert.pk]),
                    },
                )
            recorded += 1
        except Exception:
            log.exception("could not record alert %s as an incident signal", alert.pk)
    return recorded
