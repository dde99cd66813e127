"""Alert rules and the alerts they raise; silences, maintenance windows, inhibition;
the routing tree, receivers, notification groups and the notification log.

State of an alert instance (one per rule and label set):

    inactive ──true──► pending ──held for `for`──► firing ──false for keep_firing_for──► resolved
        ▲                 │ false                    ▲                                     │
        └─────────────────┘ (cleared)                └────────────── true again ───────────┘

Every change is an ``AlertEvent`` row written by ``services.apply_transitions`` or the
other functions of ``services``; nothing else writes alert state.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

SEVERITIES = ("info", "warning", "critical")


class AlertRule(models.Model):
    METRIC, ANOMALY, INTERFERENCE, LOG, ABSENCE, UNHEALTHY = (
        "metric",
        "anomaly",
        "interference",
        "log",
        "absence",
        "unhealthy",
    )
    KINDS = [
        (METRIC, "metric threshold"),
        (ANOMALY, "anomaly (the model alarms) with score ≥ X"),
        (INTERFERENCE, "interference P below X (not extrapolated)"),
        (LOG, "log pattern rate"),
        (ABSENCE, "absence (no data, up == 0, heartbeat)"),
        (UNHEALTHY, "node marked unhealthy"),
    ]
    AGGS = ["avg", "min", "max", "sum", "count", "last", "p95", "increase", "rate"]
    OPS = [">", ">=", "<", "<=", "==", "!="]
    ABSENT, UP, HEARTBEAT = "absent", "up", "heartbeat"
    ABSENCE_MODES = [
        ("", "–"),
        (ABSENT, "no data: no series of the selector has a sample in the window"),
        (UP, "up == 0: newest sample is 0, or a series went silent"),
        (HEARTBEAT, "agent heartbeat missed: node sent nothing for the window"),
    ]

    name = models.CharField(
        max_length=100, help_text="becomes the alertname label; letters, digits, _ and :"
    )
    kind = models.CharField(max_length=16, choices=KINDS, default=METRIC)
    enabled = models.BooleanField(default=True)
    archived = models.BooleanField(default=False, help_text="deleted; kept for its history")
    selector = models.CharField(
        max_length=1000,
        blank=True,
        help_text='series selector, e.g. host_cpu_utilization_ratio{cluster="eu1"};'
        " for anomaly, interference, log and heartbeat rules: matchers of the target set",
    )
    agg = models.CharField(max_length=16, default="avg", help_text="aggregation over the window")
    window_s = models.PositiveIntegerField(default=300)
    op = models.CharField(max_length=2, default=">")
    threshold = models.FloatField(default=0.0)
    absence_mode = models.CharField(max_length=16, blank=True, choices=ABSENCE_MODES)
    log_template_ids = models.JSONField(default=list, blank=True)
    log_text = models.CharField(max_length=500, blank=True, help_text="case-insensitive")
    log_min_severity = models.PositiveSmallIntegerField(default=0)
    log_group_by = models.JSONField(default=list, blank=True, help_text='["node", "instance"]')
    fault_category = models.CharField(max_length=32, blank=True)
    for_s = models.PositiveIntegerField(default=0, help_text="pending this long before firing")
    keep_firing_for_s = models.PositiveIntegerField(
        default=0, help_text="keep firing this long after the condition clears"
    )
    interval_s = models.PositiveIntegerField(default=60)
    severity = models.CharField(max_length=16, default="warning")
    labels = models.JSONField(default=dict, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    runbook_url = models.URLField(max_length=500, blank=True)
    next_eval_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_eval_at = models.DateTimeField(null=True, blank=True)
    last_eval_ms = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["enabled", "archived", "next_eval_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def evaluator(self) -> str:
        """Which reader serves the rule: threshold, log or absence."""
        if self.kind == self.LOG:
            return "log"
        if self.kind == self.ABSENCE or (self.kind == self.UNHEALTHY and self.absence_mode):
            return "absence"
        return "threshold"

    @property
    def metric_selector(self) -> str:
        """The series selector a threshold rule reads: anomaly and interference rules
        read the series the scoring tasks write, narrowed by the target matchers. Anomaly
        rules read the scores of windows that alarm at the level in force (0 otherwise), so
        they page only for what the anomaly list shows; interference rules read P where it
        is not extrapolated."""
        base = {
            self.ANOMALY: "telltale_anomaly_alarm",
            self.INTERFERENCE: "telltale_interference_p_trusted",
        }
        metric = base.get(self.kind)
        if metric is None:
            return self.selector
        inner = self.selector.strip()
        if inner.startswith("{"):
            inner = inner[1:-1] if inner.endswith("}") else inner[1:]
        return f"{metric}{{{inner}}}" if inner.strip() else metric

    @property
    def condition_text(self) -> str:
        if self.evaluator == "log":
            what = self.log_text and f'"{self.log_text}"'
            if self.log_template_ids:
                what = "templates " + ", ".join(str(t) for t in self.log_template_ids)
            return f"count of log lines {what} over {self.window_s}s {self.op} {self.threshold:g}"
        if self.evaluator == "absence":
            return f"{self.get_absence_mode_display()} ({self.window_s}s)"
        return f"{self.agg}({self.metric_selector}[{self.window_s}s]) {self.op} {self.threshold:g}"


class AlertInstance(models.Model):
    """One alert: a rule plus one label set (one per matching series)."""

    INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
    STATES = [(s, s) for s in (INACTIVE, PENDING, FIRING, RESOLVED)]

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    fingerprint = models.CharField(max_length=16)
    labels = models.JSONField(default=dict)
    annotations = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=STATES, default=INACTIVE, db_index=True)
    value = models.FloatField(null=True, blank=True)
    active_at = models.DateTimeField(null=True, blank=True, help_text="condition true since")
    fired_at = models.DateTimeField(null=True, blank=True)
    last_true_at = models.DateTimeField(null=True, blank=True)
    keep_firing_since = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_eval_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    ack_comment = models.CharField(max_length=500, blank=True)
    # What mutes its notifications right now (ids), refreshed by every dispatch cycle.
    silenced_by = models.JSONField(default=list, blank=True)
    inhibited_by = models.JSONField(default=list, blank=True)
    muted_by = models.JSONField(default=list, blank=True)
    unhealthy_event = models.ForeignKey(
        "mitigation.UnhealthyEvent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "fingerprint"], name="one_alert_per_labels")
        ]
        indexes = [models.Index(fields=["rule", "state"])]

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if k != "alertname")
        return f"{self.rule.name} {{{inner}}}"

    @property
    def is_suppressed(self) -> bool:
        return bool(self.silenced_by or self.inhibited_by or self.muted_by)

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")


class AlertEvent(models.Model):
    """History: one row per state change of one alert, never edited."""

    PENDING, FIRING, RESOLVED, CLEARED = "pending", "firing", "resolved", "cleared"
    ACKNOWLEDGED, UNACKNOWLEDGED = "acknowledged", "unacknowledged"
    SILENCED, UNSILENCED = "silenced", "unsilenced"
    INHIBITED, UNINHIBITED = "inhibited", "uninhibited"
    MUTED, UNMUTED = "muted", "unmuted"
    KINDS = [
        (k, k)
        for k in (
            PENDING,
            FIRING,
            RESOLVED,
            CLEARED,
            ACKNOWLEDGED,
            UNACKNOWLEDGED,
            SILENCED,
            UNSILENCED,
            INHIBITED,
            UNINHIBITED,
            MUTED,
            UNMUTED,
        )
    ]

    alert = models.ForeignKey(AlertInstance, on_delete=models.CASCADE, related_name="events")
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=16, choices=KINDS)
    value = models.FloatField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["alert", "at"]), models.Index(fields=["kind", "at"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind} alert {self.alert_id}"


class Silence(models.Model):
    """Mutes notifications of alerts whose labels match, from start until end."""

    matchers = models.CharField(
        max_length=1000, help_text='e.g. alertname="HostCpuHigh", node="n1"'
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(db_index=True)
    comment = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-ends_at", "-id"]

    def __str__(self) -> str:
        return f"silence {self.pk}: {self.matchers}"

    def state_at(self, now) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"


class MaintenanceWindow(models.Model):
    """A recurring time (weekdays, local start time, duration) during which notifications
    of matching alerts are muted, like Alertmanager's mute_time_intervals."""

    name = models.CharField(max_length=100, unique=True)
    matchers = models.CharField(max_length=1000, blank=True, help_text="empty: every alert")
    weekdays = models.JSONField(default=list, help_text="0 = Monday … 6 = Sunday")
    start_time = models.TimeField()
    duration_minutes = models.PositiveIntegerField()
    timezone = models.CharField(max_length=64, default="UTC")
    valid_from = models.DateField(null=True, blank=True)
    valid_until = models.DateField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    comment = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Receiver(models.Model):
    EMAIL, WEBHOOK, SLACK = "email", "webhook", "slack"
    KINDS = [
        (EMAIL, "email (SMTP)"),
        (WEBHOOK, "webhook (Alertmanager v4 JSON)"),
        (SLACK, "Slack-compatible incoming webhook"),
    ]

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=KINDS)
    # email: {"to": [...], "from": "", "smarthost": "host:port"}; webhook: {"url", "max_alerts",
    # "bearer_token"}; slack: {"url", "channel"}
    config = models.JSONField(default=dict)
    send_resolved = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        if self.kind == self.EMAIL:
            return ", ".join(self.config.get("to", []))
        return self.config.get("url", "")


class Route(models.Model):
    """A node of the routing tree. The root has no parent and no matchers; a child matches
    when all its matchers do, and unless it says ``continue`` the first matching child
    wins. Empty settings are inherited from the parent."""

    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=100, blank=True)
    matchers = models.CharField(max_length=1000, blank=True)
    receiver = models.ForeignKey(
        Receiver, null=True, blank=True, on_delete=models.SET_NULL, related_name="routes"
    )
    group_by = models.JSONField(
        null=True, blank=True, help_text='label names; ["..."] groups by all labels'
    )
    group_wait_s = models.PositiveIntegerField(null=True, blank=True)
    group_interval_s = models.PositiveIntegerField(null=True, blank=True)
    repeat_interval_s = models.PositiveIntegerField(null=True, blank=True)
    continue_matching = models.BooleanField(default=False)

    class Meta:
        ordering = ["parent_id", "position", "id"]

    def __str__(self) -> str:
        return self.name or (self.matchers and f"{{{self.matchers}}}") or f"route {self.pk}"


class InhibitionRule(models.Model):
    """While a firing alert matches the source matchers, alerts matching the target
    matchers with the same values of the ``equal`` labels are not notified."""

    source_matchers = models.CharField(max_length=1000)
    target_matchers = models.CharField(max_length=1000)
    equal = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    comment = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{{{self.source_matchers}}} inhibits {{{self.target_matchers}}}"


class AlertGroup(models.Model):
    """An aggregation group: the alerts of one route with the same group-by label values,
    with its timers and what its receiver was last told (the dedup state)."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="groups")
    key = models.CharField(max_length=2000)
    key_hash = models.CharField(max_length=64)
    labels = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    next_flush_at = models.DateTimeField(db_index=True)
    last_flush_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    notified = models.BooleanField(default=False)
    notified_firing = models.JSONField(default=list, blank=True, help_text="alert ids")
    notified_resolved = models.JSONField(default=list, blank=True, help_text="alert ids")
    seq = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["route_id", "key"]
        constraints = [
            models.UniqueConstraint(fields=["route", "key_hash"], name="one_group_per_key")
        ]

    def __str__(self) -> str:
        return f"group {self.key}"


class Notification(models.Model):
    """One message to one receiver. The dedup key is stored before anything is sent, so
    a retried task or a restarted worker finds it and never sends it twice."""

    PENDING, SENT, EXPIRED = "pending", "sent", "expired"
    STATUSES = [(s, s) for s in (PENDING, SENT, EXPIRED)]

    dedup_key = models.CharField(max_length=100, unique=True)
    receiver = models.ForeignKey(
        Receiver, null=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    receiver_name = models.CharField(max_length=100)
    group = models.ForeignKey(
        AlertGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    group_key = models.CharField(max_length=2000, blank=True)
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING, db_index=True)
    alert_status = models.CharField(max_length=10, help_text="firing or resolved")
    is_test = models.BooleanField(default=False)
    payload = models.JSONField(help_text="group and alerts as they were when it was made")
    alerts = models.ManyToManyField(AlertInstance, blank=True, related_name="notifications")
    created_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.alert_status} to {self.receiver_name} ({self.status})"


class NotificationAttempt(models.Model):
    SENDING, OK, FAILED = "sending", "ok", "failed"

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, default=SENDING)
    error = models.TextField(blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["notification_id", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.notification_id}: {self.status}"
