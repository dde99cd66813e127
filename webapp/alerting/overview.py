"""What the fleet overview shows of alerting: the alerts firing now, most severe first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.urls import reverse

from webapp.alerting.charts import label_text
from webapp.alerting.models import SEVERITIES, AlertInstance

RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}


@dataclass(frozen=True, slots=True)
class FiringAlert:
    name: str
    labels_text: str
    severity: str
    since: datetime | None
    url: str
    muted: bool


def firing_now(limit: int = 10) -> list[FiringAlert]:
    alerts = AlertInstance.objects.filter(state=AlertInstance.FIRING).select_related("rule")
    rows = sorted(
        alerts.order_by("-fired_at")[:500],
        key=lambda a: (a.is_suppressed, RANK.get(a.severity, len(RANK))),
    )
    return [
        FiringAlert(
            name=a.rule.name,
            labels_text=label_text(a.labels),
            severity=a.severity,
            since=a.fired_at,
            url=reverse("alert_detail", args=[a.pk]),
            muted=a.is_suppressed or a.acknowledged_at is not None,
        )
        for a in rows[:limit]
    ]
