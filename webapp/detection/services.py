"""State changes of anomalies (labels from people) and interference predictions."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from webapp.dashboards import panelcache
from webapp.detection.models import Anomaly

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
