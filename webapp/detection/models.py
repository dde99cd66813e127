"""Model versions (shared by every learned model), anomalies and interference predictions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from webapp.telemetry.models import Instance, Node


class ModelVersion(models.Model):
    """One trained model: what it was trained on, how it did, where its artefact lives.
    Scoring always uses the promoted version of its kind."""

    KIND_ANOMALY, KIND_INTERFERENCE, KIND_MITIGATION = "anomaly", "interference", "mitigation"
    KINDS = [(k, k) for k in (KIND_ANOMALY, KIND_INTERFERENCE, KIND_MITIGATION)]
    CANDIDATE, PROMOTED, RETIRED = "candidate", "promoted", "retired"
    STATUSES = [(s, s) for s in (CANDIDATE, PROMOTED, RETIRED)]
    QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
    TRAINING_STATES = [(s, s) for s in (QUEUED, RUNNING, SUCCEEDED, FAILED)]

    kind = models.CharField(max_length=16, choices=KINDS)
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=STATUSES, default=CANDIDATE)
    training_state = models.CharField(max_length=16, choices=TRAINING_STATES, default=QUEUED)
    progress = models.JSONField(default=dict, blank=True, help_text="epoch, loss, message")
    config = models.JSONField(default=dict, blank=True)
    data_hash = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="the model's own evaluation")
    comparison = models.JSONField(
        default=dict, blank=True, help_text="this version vs the promoted one on held-out data"
    )
    replay = models.JSONField(
        default=dict,
        blank=True,
        help_text="alarm events it would have raised on this fleet's recent hours, beside the "
        "promoted version's",
    )
    label_count = models.PositiveIntegerField(default=0, help_text="people's labels trained on")
    artefact_path = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(
        max_length=200, blank=True, help_text="Celery worker running the training, if any"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["kind", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "version"], name="one_version_number"),
            models.UniqueConstraint(
                fields=["kind"], condition=models.Q(status="promoted"), name="one_promoted_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} v{self.version} ({self.status})"


class AnomalyThreshold(models.Model):
    """An admin's alarm level for one level's calibrated scores (the model's series groups:
    instances and nodes), for the whole fleet or one cluster, in force for whichever
    anomaly version is promoted: the same number means the same rarity of a normal window
    for every version (50 = one in a thousand). A cluster's level wins over the fleet's;
    without either, the promoted version's own threshold applies."""

    LEVELS = [("vm", "instances"), ("host", "nodes")]
    # What the level applies to: the model's score, or novelty (``webapp.detection.novelty``,
    # whose fleet default is TELLTALE_NOVELTY_LEVEL).
    SCORE, NOVELTY = "score", "novelty"
    SIGNALS = [(SCORE, "anomaly score"), (NOVELTY, "novelty")]

    signal = models.CharField(max_length=8, choices=SIGNALS, default=SCORE)
    level = models.CharField(max_length=8, choices=LEVELS)
    cluster = models.CharField(
        max_length=100, blank=True, help_text="the nodes' cluster; blank: the whole fleet"
    )
    value = models.FloatField(help_text="calibrated score (0-100) at which a window alarms")
    reason = models.CharField(max_length=300, blank=True)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["signal", "level", "cluster"]
        constraints = [
            models.UniqueConstraint(
                fields=["signal", "level", "cluster"], name="one_level_per_signal_and_cluster"
            )
        ]

    def __str__(self) -> str:
        where = f" in {self.cluster}" if self.cluster else ""
        return f"{self.level}{where} alarms at {self.value:g}"


class Anomaly(models.Model):
    """A detected event on one target: consecutive anomalous windows merged."""

    OPEN, CLOSED = "open", "closed"
    TRUE_POSITIVE, FALSE_POSITIVE, EXPECTED = "true_positive", "false_positive", "expected"
    LABELS = [
        (TRUE_POSITIVE, "true positive"),
        (FALSE_POSITIVE, "false positive"),
        (EXPECTED, "expected (maintenance/deploy)"),
    ]

    level = models.CharField(max_length=8, help_text="vm or host")
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.CASCADE, related_name="anomalies"
    )
    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.CASCADE, related_name="anomalies"
    )
    start = models.DateTimeField(db_index=True)
    end = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=8, default=OPEN)
    score = models.FloatField(help_text="peak calibrated score, 0-100")
    raw_score = models.FloatField(default=0.0)
    scenario = models.CharField(max_length=64, blank=True)
    scenario_probability = models.FloatField(default=0.0)
    attribution = models.JSONField(default=dict, blank=True, help_text="metrics and templates")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    backfilled = models.BooleanField(
        default=False,
        help_text="scored after the fact over the hours before the first anomaly model was "
        "promoted; it raised no incident signal or notification",
    )
    label = models.CharField(max_length=16, choices=LABELS, blank=True)
    label_scenario = models.CharField(max_length=64, blank=True)
    labeled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    labeled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-start"]
        indexes = [models.Index(fields=["status", "start"]), models.Index(fields=["score"])]

    def __str__(self) -> str:
        return f"{self.scenario or 'anomaly'} on {self.instance or self.node} at {self.start:%H:%M}"

    @property
    def target(self):
        return self.instance or self.node


class InterferencePrediction(models.Model):
    """Predicted performance ratio P (alone / co-located) of one instance at one time."""

    instance = models.ForeignKey(
        Instance, on_delete=models.CASCADE, related_name="interference_predictions"
    )
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="+")
    ts = models.DateTimeField(db_index=True)
    p = models.FloatField()
    p_low = models.FloatField()
    p_high = models.FloatField()
    neighbours = models.JSONField(default=list, blank=True, help_text="[[instance, gain in P]]")
    unfamiliar = models.JSONField(
        default=list,
        blank=True,
        help_text="why this P is extrapolation: capacity or missing metrics unlike training",
    )
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["-ts"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "ts"], name="one_prediction_per_time")
        ]

    def __str__(self) -> str:
        return f"P={self.p:.2f} for {self.instance_id} at {self.ts:%H:%M}"


class LabelSnapshot(models.Model):
    """The telemetry a person's judgement was about, kept past the store's retention so that
    a label stays training data for every later model version (without it, a judgement
    older than ``TELLTALE_RETENTION_DAYS`` silently stopped counting)."""

    source = models.CharField(max_length=64, help_text='"anomaly 12", "incident 3", …')
    end = models.DateTimeField()
    level = models.CharField(max_length=8, help_text="vm or host")
    target_name = models.CharField(max_length=200)
    step_seconds = models.PositiveIntegerField()
    metric_names = models.JSONField(default=list)
    matrix = models.BinaryField(help_text="float32 [steps, metrics] in numpy's .npy format")
    logs = models.JSONField(default=list, blank=True, help_text="[[epoch seconds, text]]")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "end"], name="one_snapshot_per_judgement")
        ]

    def __str__(self) -> str:
        return f"{self.source} until {self.end:%Y-%m-%d %H:%M}"


class NoveltyCalibration(models.Model):
    """How unusual each target's forecast error is, fitted on the fleet's own recent
    windows for one version and level (``models.anomaly.novelty.FleetNovelty``): what lets
    the promoted version alarm on behaviour none of its learnt scenarios explains. Refitted
    every few hours; a target it does not know yet has no novelty score."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="novelty")
    level = models.CharField(max_length=8, help_text="vm or host")
    data = models.JSONField(help_text="FleetNovelty.as_dict(): calibrator and per-target scales")
    windows = models.IntegerField(default=0)
    targets = models.IntegerField(default=0)
    since = models.DateTimeField()
    until = models.DateTimeField()
    fitted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["version", "level"]
        constraints = [
            models.UniqueConstraint(fields=["version", "level"], name="one_novelty_per_level")
        ]

    def __str__(self) -> str:
        return f"novelty of {self.version} for {self.level} ({self.targets} targets)"
