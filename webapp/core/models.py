from __future__ import annotations

from django.conf import settings
from django.db import models


class IngestToken(models.Model):
    """A bearer token for ingest clients and read-only API users; only its hash is kept."""

    SCOPE_METRICS_WRITE = "metrics:write"
    SCOPE_LOGS_WRITE = "logs:write"
    SCOPE_READ = "read"
    SCOPE_ANNOTATIONS_WRITE = "annotations:write"
    SCOPES = (SCOPE_METRICS_WRITE, SCOPE_LOGS_WRITE, SCOPE_READ, SCOPE_ANNOTATIONS_WRITE)

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=16, help_text="First characters, to recognise it")
    token_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Per-token quotas (ingest/quotas.py); empty means the TELLTALE_INGEST_* default.
    rate_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Samples or log lines per second; 0 means unlimited"
    )
    max_new_series = models.PositiveIntegerField(
        null=True, blank=True, help_text="New series per window; 0 means unlimited"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AuditEvent(models.Model):
    """Security-relevant actions; written once, never edited."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.target}"
