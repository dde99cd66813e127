"""Nodes, instances, series, logs and ingest configuration.

Samples and their rollups are not Django models: they are narrow tables owned by
``webapp.telemetry.store`` (partitioned and written with COPY on PostgreSQL).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Node(models.Model):
    """A host. Created on first sight of data that names it."""

    name = models.CharField(max_length=200, unique=True)
    cluster = models.CharField(max_length=100, blank=True, db_index=True)
    rack = models.CharField(max_length=100, blank=True, db_index=True)
    hardware = models.CharField(max_length=100, blank=True, help_text="generation or SKU")
    cpu_cores = models.PositiveIntegerField(null=True, blank=True)
    memory_bytes = models.BigIntegerField(null=True, blank=True)
    # Shared-resource capacity the interference model needs, set by an admin where the
    # hardware is not a known generation (units as in ingest.simulator.fleet.GENERATIONS).
    llc_mb = models.FloatField(null=True, blank=True, help_text="last-level cache, MB")
    membw_gbps = models.FloatField(null=True, blank=True, help_text="memory bandwidth, GB/s")
    net_gbit = models.FloatField(null=True, blank=True, help_text="network, Gbit/s")
    disk_mbps = models.FloatField(null=True, blank=True, help_text="disk bandwidth, MB/s")
    # What the node's own telemetry says of its capacity (cores, memory, cache, link speed):
    # {"figures": {key: value in the stated unit}, "origins": {key: exporter}}, kept by
    # services.refresh_reported_capacity. A figure an admin sets wins over it.
    reported_capacity = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Instance(models.Model):
    """A VM or container placed on a node."""

    name = models.CharField(max_length=200, unique=True)
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="instances"
    )
    workload = models.CharField(max_length=100, blank=True, db_index=True)
    labels = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Placement(models.Model):
    """Where an instance ran and when; the open row (end is null) is the current one."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="placements")
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="placements")
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["instance", "-start"]
        indexes = [models.Index(fields=["node", "start"])]
        constraints = [
            models.UniqueConstraint(
                fields=["instance"], condition=models.Q(end__isnull=True), name="one_open_placement"
            )
        ]

    def __str__(self) -> str:
        return f"{self.instance_id} on {self.node_id} from {self.start:%Y-%m-%d %H:%M}"


class Series(models.Model):
    """A metric name plus a label set. The id is a hash of the canonical labels, so the
    same series gets the same id in every process and database without a lookup."""

    id = models.BigIntegerField(primary_key=True)
    metric = models.CharField(max_length=255, db_index=True)
    labels = models.JSONField(default=dict, help_text="labels without __name__")
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="series"
    )
    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="series"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "series"
        ordering = ["metric", "id"]

    def __str__(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.metric}{{{inner}}}"

    @property
    def all_labels(self) -> dict[str, str]:
        return {"__name__": self.metric, **self.labels}


class LogTemplate(models.Model):
    """A drain3 template; the id is a hash of the template text, stable across restarts."""

    id = models.BigIntegerField(primary_key=True)
    template = models.TextField()
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)
    count = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-count"]

    def __str__(self) -> str:
        return self.template[:120]


class LogRecord(models.Model):
    ts = models.DateTimeField(db_index=True)
    # Hash of (request body, line position): a retried request is stored once, while the
    # same text logged twice in one second by different requests is kept twice.
    fingerprint = models.BigIntegerField(unique=True)
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="logs"
    )
    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="logs"
    )
    severity = models.SmallIntegerField(default=0, help_text="OpenTelemetry severity number")
    severity_text = models.CharField(max_length=32, blank=True)
    message = models.TextField()
    template = models.ForeignKey(
        LogTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="records"
    )
    params = models.JSONField(default=list, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=32, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-ts"]
        indexes = [
            models.Index(fields=["node", "ts"]),
            models.Index(fields=["instance", "ts"]),
            models.Index(fields=["template", "ts"]),
            models.Index(fields=["severity", "ts"]),
        ]

    def __str__(self) -> str:
        return f"{self.ts:%Y-%m-%d %H:%M:%S} {self.message[:80]}"


class ScrapeTarget(models.Model):
    """A Prometheus exposition endpoint Telltale pulls from on the beat schedule."""

    HEALTH_UNKNOWN, HEALTH_UP, HEALTH_DOWN = "unknown", "up", "down"

    name = models.SlugField(max_length=100, unique=True, help_text="used as the job label")
    url = models.URLField(max_length=500)
    interval_seconds = models.PositiveIntegerField(default=15)
    timeout_seconds = models.FloatField(default=10.0)
    labels = models.JSONField(default=dict, blank=True, help_text="extra labels on every series")
    honor_labels = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    health = models.CharField(max_length=10, default=HEALTH_UNKNOWN)
    last_scrape_at = models.DateTimeField(null=True, blank=True)
    last_duration_seconds = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_samples = models.PositiveIntegerField(default=0)
    # Series ids seen in the last scrape, to write staleness markers for the ones that vanish.
    last_series_ids = models.JSONField(default=list, blank=True)
    next_due_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"

    @property
    def instance_label(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return parts.netloc or self.url


class IngestSource(models.Model):
    """Running totals per (protocol, client) for the ingest status on the overview."""

    kind = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    last_seen = models.DateTimeField(null=True, blank=True)
    samples_total = models.BigIntegerField(default=0)
    log_lines_total = models.BigIntegerField(default=0)
    rejected_total = models.BigIntegerField(default=0)
    requests_total = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="one_source_row")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class IngestMinute(models.Model):
    """Per-minute ingest counts, so the overview can show rates without scanning samples."""

    minute = models.DateTimeField()
    kind = models.CharField(max_length=32)
    samples = models.BigIntegerField(default=0)
    log_lines = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-minute"]
        constraints = [models.UniqueConstraint(fields=["minute", "kind"], name="one_minute_row")]

    def __str__(self) -> str:
        return f"{self.minute:%H:%M} {self.kind}"


class RollupState(models.Model):
    """How far rollups are complete, and ranges that late data made stale."""

    resolution = models.CharField(max_length=8, unique=True)  # "1m" or "1h"
    complete_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.resolution} until {self.complete_until}"


class RollupDirtyRange(models.Model):
    start = models.DateTimeField()
    end = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.start} – {self.end}"


class InjectedCase(models.Model):
    """Ground truth written by the fleet simulator: a scenario it injected, where and when.
    Shown on pages as "injected" so a demo's problems can be found; never model input."""

    KIND_ANOMALY, KIND_DECEPTIVE = "anomaly", "deceptive"

    key = models.CharField(max_length=100, unique=True, help_text="run id and case id")
    run = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=16)
    scenario = models.CharField(max_length=64, db_index=True)
    level = models.CharField(max_length=8, help_text="vm or host")
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="injected_cases"
    )
    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="injected_cases"
    )
    start = models.DateTimeField(db_index=True)
    end = models.DateTimeField(db_index=True)
    intensity = models.FloatField(default=0.0)
    variant = models.CharField(max_length=64, blank=True)
    split = models.CharField(max_length=16, blank=True)
    context = models.TextField(blank=True, help_text="for deceptive normals: what explains them")

    class Meta:
        ordering = ["-start"]

    def __str__(self) -> str:
        return f"{self.scenario} on {self.instance or self.node} at {self.start:%Y-%m-%d %H:%M}"
