"""State changes of anomalies (labels from people, alarm levels) and interference predictions
(retention)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.core.services import audit
from webapp.dashboards import panelcache
from webapp.detection.models import (
    Anomaly,
    AnomalyThreshold,
    InterferencePrediction,
    NoveltyCalibration,
)

LABEL_CHOICES = {key for key, _ in Anomaly.LABELS}


@transaction.atomic
def label_anomaly(anomaly: Anomaly, label: str, scenario: str = "", actor=None) -> Anomaly:
    """A person's judgement; the next training run of the anomaly model uses it."""
    if label not in LABEL_CHOICES:
        raise ValueError(f"label must be one of {', '.join(sorted(LABEL_CHOICES))}")
    anomaly.label = label
    anomaly.label_scenario = scenario.strip()[:64]
    anomaly.labeled_by = actor if getattr(actor, "pk", None) else None
    anomaly.labeled_at = timezone.now()
    anomaly.save(update_fields=["label", "label_scenario", "labeled_by", "labeled_at"])
    panelcache.bump("anomaly-labels")  # the anomaly list's cached table shows it next load
    return anomaly


def drop_old_predictions(now: datetime | None = None) -> int:
    """Delete interference predictions older than the raw-sample retention: one row per
    instance and minute is 1.4 million a day for 1,000 instances. Their history stays in the
    ``telltale_interference_p`` series at the rollups' resolution. Anomalies are kept: they
    are few, and labelled ones are training data."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.TELLTALE_RETENTION_DAYS)
    return InterferencePrediction.objects.filter(ts__lt=cutoff).delete()[0]


def check_alarm_level(value: float, field: str = "value") -> float:
    if not 0 < value <= 100:
        raise ValueError(f"{field}: a calibrated score, more than 0 and at most 100")
    return value


@transaction.atomic
def set_anomaly_threshold(
    level: str,
    value: float | None,
    actor=None,
    reason: str = "",
    cluster: str = "",
    signal: str = AnomalyThreshold.SCORE,
) -> AnomalyThreshold | None:
    """The alarm level of ``level``'s calibrated scores, or of their novelty (``signal``),
    in ``cluster`` or the whole fleet, from the next scoring round on; None goes back to the
    fleet's level, or for the fleet to the promoted version's own (novelty:
    TELLTALE_NOVELTY_LEVEL)."""
    levels = dict(AnomalyThreshold.LEVELS)
    if level not in levels:
        raise ValueError(f"level must be one of {', '.join(levels)}")
    if signal not in dict(AnomalyThreshold.SIGNALS):
        raise ValueError("signal must be score or novelty")
    cluster = cluster.strip()
    if len(cluster) > 100:
        raise ValueError("cluster: at most 100 characters")
    current = (
        AnomalyThreshold.objects.select_for_update()
        .filter(signal=signal, level=level, cluster=cluster)
        .first()
    )
    before = current.value if current else None
    target = f"{level} in {cluster}" if cluster else level
    action = "anomaly.threshold" if signal == AnomalyThreshold.SCORE else "anomaly.novelty_level"
    if value is None:
        if current is not None:
            current.delete()
        audit(actor, action, target, before=before, after=None, reason=reason)
        return None
    check_alarm_level(value)
    row = current or AnomalyThreshold(signal=signal, level=level, cluster=cluster)
    row.value = float(value)
    row.reason = reason.strip()[:300]
    row.set_by = actor if getattr(actor, "pk", None) else None
    row.set_at = timezone.now()
    row.save()
    audit(actor, action, target, before=before, after=row.value, reason=reason)
    return row


@transaction.atomic
def save_novelty_calibration(version, level: str, fleet, since: datetime, until: datetime):
    """A version's novelty calibration of ``level``, fitted on the fleet's windows between
    ``since`` and ``until``; it replaces the previous fit and is used from the next round."""
    row, _ = NoveltyCalibration.objects.update_or_create(
        version=version,
        level=level,
        defaults={
            "data": fleet.as_dict(),
            "windows": fleet.windows,
            "targets": len(fleet.scales),
            "since": since,
            "until": until,
            "fitted_at": timezone.now(),
        },
    )
    return row
