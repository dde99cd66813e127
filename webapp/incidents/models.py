"""Incidents (correlated signals with one timeline), annotations and labels from people."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from webapp.telemetry.models import Instance, Node, Series

SIGNAL_KINDS = ("alert", "anomaly", "interference", "unhealthy")
LABELS = [
    ("true_positive", "true positive"),
    ("false_positive", "false positive"),
    ("expected", "expected (maintenance/deploy)"),
]


class CorrelationRule(models.Model):
    """Which signals belong together: those sharing ``match_on`` within ``window_minutes``."""

    MATCH_CHOICES = [("node", "node"), ("instance", "instance"), ("cluster", "cluster")]

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    match_on = models.CharField(max_length=16, choices=MATCH_CHOICES, default="node")
    signal_kinds = models.JSONField(default=list, help_text="empty = every kind")
    window_minutes = models.PositiveIntegerField(default=30)
    min_signals = models.PositiveIntegerField(default=1, help_text="signals needed to open")
    reopen_minutes = models.PositiveIntegerField(
        default=60, help_text="a signal this soon after resolution reopens the incident"
    )
    priority = models.PositiveIntegerField(default=100, help_text="lower runs first")

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return self.name


class Incident(models.Model):
    OPEN, ACKNOWLEDGED, MITIGATED, RESOLVED = "open", "acknowledged", "mitigated", "resolved"
    STATES = [(s, s) for s in (OPEN, ACKNOWLEDGED, MITIGATED, RESOLVED)]
    SEVERITIES = [(s, s) for s in ("critical", "warning", "info")]

    title = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=STATES, default=OPEN, db_index=True)
    severity = models.CharField(max_length=16, choices=SEVERITIES, default="warning")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rule = models.ForeignKey(CorrelationRule, null=True, blank=True, on_delete=models.SET_NULL)
    key = models.CharField(max_length=250, db_index=True, help_text="what its signals share")
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cluster = models.CharField(max_length=100, blank=True)
    start = models.DateTimeField(db_index=True)
    end = models.DateTimeField(null=True, blank=True)
    last_signal_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    reopened = models.PositiveIntegerField(default=0)
    label = models.CharField(max_length=16, choices=LABELS, blank=True)
    label_scenario = models.CharField(max_length=64, blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-start"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def is_active(self) -> bool:
        return self.state != self.RESOLVED and self.merged_into_id is None


class Signal(models.Model):
    """Something that fired: an alert, an anomaly, an interference suspect or an unhealthy
    node event. Recorded whether or not it has joined an incident (yet)."""

    kind = models.CharField(max_length=16)
    source_id = models.CharField(max_length=64, help_text="id of the alert/anomaly/event row")
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="signals"
    )
    title = models.CharField(max_length=300)
    severity = models.CharField(max_length=16, default="warning")
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cluster = models.CharField(max_length=100, blank=True)
    start = models.DateTimeField(db_index=True)
    end = models.DateTimeField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["start"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "source_id"], name="one_signal_per_source")
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.title}"

    def source_url(self) -> str:
        """The page of what fired (the alert, the anomaly with its explanation, the slowed
        instance, the unhealthy event); empty when it cannot be told."""
        from django.urls import reverse

        head = self.source_id.split(":", 1)[0]
        if self.kind == "interference":
            return (
                reverse("interference_instance", args=[self.instance.name]) if self.instance else ""
            )
        if not head.isdigit():
            return ""
        names = {
            "alert": "alert_detail",
            "anomaly": "anomaly_detail",
            "unhealthy": "mitigation_event",
        }
        return reverse(names[self.kind], args=[int(head)]) if self.kind in names else ""


class TimelineEntry(models.Model):
    """Append-only audit trail of an incident: rows are never edited or deleted by the app."""

    KINDS = (
        "signal", "state", "recommendation", "action", "outcome", "comment", "annotation",
        "label", "assign", "title", "merge", "split", "attach",
    )  # fmt: skip

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, help_text="who or what, kept if the user goes")
    text = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M} {self.kind} {self.text[:60]}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("timeline entries cannot be changed after the fact")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("timeline entries cannot be deleted")


class Annotation(models.Model):
    """A point or region in time with text and tags (Grafana's annotation model), optionally
    tied to a node, instance, series or incident; region annotations can carry a label."""

    time = models.DateTimeField(db_index=True)
    time_end = models.DateTimeField(null=True, blank=True)
    text = models.TextField()
    tags = models.JSONField(default=list, blank=True)
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    series = models.ForeignKey(
        Series, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations"
    )
    label = models.CharField(max_length=16, choices=LABELS, blank=True)
    label_scenario = models.CharField(max_length=64, blank=True)
    dashboard_uid = models.CharField(max_length=100, blank=True)
    panel_id = models.IntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_token = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-time"]
        indexes = [models.Index(fields=["time_end"])]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M} {self.text[:60]}"
