"""Unhealthy-node events, the action catalogue, recommendations and what was done."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from webapp.detection.models import ModelVersion
from webapp.telemetry.models import Node


class MitigationAction(models.Model):
    key = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    is_legacy_default = models.BooleanField(
        default=False, help_text="what the runbook does when nothing else applies"
    )
    takes_node_out = models.BooleanField(default=False, help_text="counts against repair limits")
    needs_rack_capacity = models.BooleanField(default=False, help_text="e.g. live migration")

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name


class UnhealthyEvent(models.Model):
    OPEN, ACTING, CLOSED = "open", "acting", "closed"
    SOURCES = [(s, s) for s in ("simulator", "alert", "api", "admin", "import")]

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="unhealthy_events")
    start = models.DateTimeField(default=timezone.now, db_index=True)
    end = models.DateTimeField(null=True, blank=True)
    fault_category = models.CharField(max_length=32)
    signals = models.JSONField(default=dict, help_text="diagnostic covariates")
    source = models.CharField(max_length=16, choices=SOURCES, default="api")
    external_id = models.CharField(max_length=100, blank=True, help_text="id in the source")
    status = models.CharField(max_length=8, default=OPEN)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-start"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~models.Q(external_id=""),
                name="one_event_per_external_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.fault_category} on {self.node} at {self.start:%Y-%m-%d %H:%M}"


class Recommendation(models.Model):
    event = models.ForeignKey(
        UnhealthyEvent, on_delete=models.CASCADE, related_name="recommendations"
    )
    action = models.ForeignKey(MitigationAction, on_delete=models.PROTECT, related_name="+")
    legacy_action = models.ForeignKey(MitigationAction, on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    estimates = models.JSONField(
        default=dict, help_text="{action: {downtime, low, high}} expected minutes per action"
    )
    advantage = models.JSONField(default=dict, help_text="chosen vs legacy: estimate, low, high")
    fallback_reason = models.CharField(max_length=32, blank=True)
    override_reason = models.CharField(max_length=200, blank=True)
    explanation = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} for event {self.event_id}"


class ActionOutcome(models.Model):
    """What was done about an event, by whom and why, and what it cost when it closed."""

    event = models.OneToOneField(UnhealthyEvent, on_delete=models.CASCADE, related_name="outcome")
    action = models.ForeignKey(MitigationAction, on_delete=models.PROTECT, related_name="+")
    recommendation = models.ForeignKey(
        Recommendation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    followed_recommendation = models.BooleanField(default=False)
    reason = models.TextField(blank=True, help_text="why another action than recommended")
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    applied_at = models.DateTimeField(default=timezone.now)
    downtime_minutes = models.FloatField(null=True, blank=True)
    interruptions = models.FloatField(null=True, blank=True)
    capacity_cost = models.FloatField(null=True, blank=True)
    recorded_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.action} on event {self.event_id}"
