"""Custom dashboards: named sets of panels, shareable by URL."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Dashboard(models.Model):
    VARIABLES = [("", "none"), ("node", "node"), ("instance", "instance")]

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    variable = models.CharField(
        max_length=16, choices=VARIABLES, blank=True, help_text="$node or $instance in queries"
    )
    panels = models.JSONField(default=list)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="dashboards"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
