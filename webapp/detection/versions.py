"""The lifecycle of a model version, shared by every kind of model: create, train (with
progress), compare with the promoted version, promote, roll back. Kinds register a
trainer in ``webapp.detection.training``."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from webapp.core.services import audit
from webapp.detection.models import ModelVersion

log = logging.getLogger(__name__)


def artefact_root() -> Path:
    return Path(settings.VAR_DIR) / "models"


@transaction.atomic
def create_version(kind: str, config: dict | None = None, actor=None) -> ModelVersion:
    if kind not in dict(ModelVersion.KINDS):
        raise ValueError(f"unknown model kind {kind!r}")
    # Lock the kind's rows so two requests never take the same version number.
    last = (
        ModelVersion.objects.select_for_update().filter(kind=kind).aggregate(m=Max("version"))["m"]
        or 0
    )
    version = ModelVersion.objects.create(
        kind=kind,
        version=last + 1,
        config=config or {},
        created_by=actor if getattr(actor, "pk", None) else None,
        artefact_path=str(artefact_root() / kind / f"v{last + 1}"),
    )
    audit(actor, "model.training_requested", f"{kind} v{version.version}")
    return version


def request_retraining(kind: str, config: dict | None = None, actor=None) -> int:
    """Queue a new version of ``kind`` with the promoted version's configuration, unless
    one is already queued or training. Returns the new version's id (0 if none queued)."""
    from workers.tasks import train_model

    busy = ModelVersion.objects.filter(
        kind=kind, training_state__in=(ModelVersion.QUEUED, ModelVersion.RUNNING)
    )
    if busy.exists():
        return 0
    current = promoted(kind)
    base = {"train": current.config.get("train", {})} if current else {}
    version = create_version(kind, {**base, **(config or {})}, actor=actor)
    transaction.on_commit(lambda: train_model.delay(version.pk))
    return version.pk


# Training sizes. "full" is each model's own default (the evaluated configuration); "demo"
# trains in a few minutes on two cores; "quick" in seconds (tests, smoke runs).
# The demo's anomaly fleet spans a whole day: on half of one the demo model missed live
# cases that this size finds (docs/anomaly.md, "The demo's training size").
PROFILES = {
    "full": {"anomaly": {}, "interference": {}, "mitigation": {}},
    "demo": {
        "anomaly": {
            "nodes": 20,
            "instances": 160,
            "hours": 24.0,
            "val_nodes": 12,
            "val_hours": 12.0,
        },
        "interference": {
            "n_nodes": 16,
            "n_instances": 128,
            "hours": 12.0,
            "epochs": 6,
            "lstm_epochs": 6,
            "what_if_moves": 200,
        },
        "mitigation": {"n_events": 3000, "val_events": 1500},
    },
    "quick": {
        "anomaly": {"quick": True},
        "interference": {
            "n_nodes": 4,
            "n_instances": 24,
            "hours": 4.0,
            "epochs": 2,
            "lstm_epochs": 2,
            "what_if_moves": 40,
        },
        "mitigation": {"n_events": 1500, "val_events": 600},
    },
}


BOOTSTRAP_ATTEMPTS = 3


def bootstrap_models(profile: str | None = None) -> list[int]:
    """First start: queue training of every kind without a trained version, on the
    simulator's fleets (``TELLTALE_BOOTSTRAP_TRAINING`` chooses the size). A kind whose
    first runs failed or were interrupted is tried again, at most ``BOOTSTRAP_ATTEMPTS``
    times in all, so a trainer that always fails does not loop."""
    profile = profile or settings.TELLTALE_BOOTSTRAP_TRAINING
    if profile == "off":
        return []
    queued = []
    for kind, _ in ModelVersion.KINDS:
        versions_of_kind = ModelVersion.objects.filter(kind=kind)
        if versions_of_kind.filter(training_state=ModelVersion.SUCCEEDED).exists():
            continue
        if versions_of_kind.count() >= BOOTSTRAP_ATTEMPTS:
            continue
        version_id = request_retraining(kind, {"train": PROFILES[profile][kind]})
        if version_id:
            queued.append(version_id)
    return queued


def fail_interrupted(worker: str) -> int:
    """A worker that starts cannot be running anything yet: versions it was training when
    it stopped (killed, restarted, machine rebooted) are marked failed, so they stop
    blocking retraining. Returns how many."""
    if not worker:
        return 0
    stale = ModelVersion.objects.filter(training_state=ModelVersion.RUNNING, worker=worker)
    count = stale.update(
        training_state=ModelVersion.FAILED,
        error=f"interrupted: worker {worker} stopped while training; train again",
        finished_at=timezone.now(),
    )
    if count:
        log.warning("%d training run(s) of %s were interrupted", count, worker)
    return count


def promoted(kind: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(kind=kind, status=ModelVersion.PROMOTED).first()


def report_progress(version_id: int, **progress) -> None:
    """Called by trainers (from the worker) with e.g. epoch, epochs, loss, message."""
    ModelVersion.objects.filter(pk=version_id).update(progress=progress)


def run_training(version_id: int, worker: str = "") -> ModelVersion:
    """Train one queued version (``worker``: the Celery node running it); a version that
    is already running or finished is left alone, so redelivery never trains twice."""
    from webapp.detection.training import TRAINERS

    version = ModelVersion.objects.get(pk=version_id)
    if version.training_state != ModelVersion.QUEUED:
        # Finished, or running elsewhere: a broker may hand a long task out twice. A run
        # whose worker died is failed by ``fail_interrupted`` when that worker restarts.
        return version
    version.training_state = ModelVersion.RUNNING
    version.started_at = timezone.now()
    version.worker = worker[:200]
    version.save(update_fields=["training_state", "started_at", "worker"])
    try:
        outcome = TRAINERS[version.kind](version)
    except Exception as exc:  # the failure is the version's state; the worker keeps running
        log.exception("training %s failed", version)
        version.training_state = ModelVersion.FAILED
        version.error = "".join(traceback.format_exception_only(exc)).strip()[:4000]
        version.finished_at = timezone.now()
        version.save(update_fields=["training_state", "error", "finished_at"])
        return version
    version.training_state = ModelVersion.SUCCEEDED
    version.metrics = outcome.get("metrics", {})
    version.comparison = outcome.get("comparison", {})
    version.replay = outcome.get("replay", {})
    version.data_hash = outcome.get("data_hash", "")[:64]
    version.label_count = outcome.get("label_count", 0)
    version.config = {**version.config, **outcome.get("config", {})}
    version.finished_at = timezone.now()
    version.save(
        update_fields=[
            "training_state",
            "metrics",
            "comparison",
            "replay",
            "data_hash",
            "label_count",
            "config",
            "finished_at",
        ]
    )
    if outcome.get("promote_if_first") and promoted(version.kind) is None:
        promote(version, actor=None, reason="first model of its kind")
    return version


@transaction.atomic
def promote(version: ModelVersion, actor=None, reason: str = "") -> ModelVersion:
    if version.training_state != ModelVersion.SUCCEEDED:
        raise ValueError("only a successfully trained version can be promoted")
    current = (
        ModelVersion.objects.select_for_update()
        .filter(kind=version.kind, status=ModelVersion.PROMOTED)
        .exclude(pk=version.pk)
        .first()
    )
    if current is not None:
        current.status = ModelVersion.RETIRED
        current.save(update_fields=["status"])
    first_of_kind = not (
        ModelVersion.objects.filter(kind=version.kind, promoted_at__isnull=False)
        .exclude(pk=version.pk)
        .exists()
    )
    version.status = ModelVersion.PROMOTED
    version.promoted_at = timezone.now()
    version.promoted_by = actor if getattr(actor, "pk", None) else None
    version.save(update_fields=["status", "promoted_at", "promoted_by"])
    audit(
        actor,
        "model.promoted",
        f"{version.kind} v{version.version}",
        replaced=current.version if current else None,
        reason=reason,
    )
    _forget_loaded(version.kind)
    if version.kind == ModelVersion.KIND_ANOMALY and not version.novelty.exists():
        # Novelty is judged against the fleet's own windows, which this version has not
        # seen yet: fitted now (before any backfill queued below, which does not use it),
        # then every few hours.
        from workers.tasks import calibrate_novelty

        transaction.on_commit(lambda: calibrate_novelty.delay(version.pk))
    if first_of_kind and version.kind != ModelVersion.KIND_MITIGATION:
        # Nothing scored the fleet before: its recent hours are scored after the fact.
        from workers.tasks import backfill_anomalies, backfill_interference

        task = backfill_anomalies if version.kind == "anomaly" else backfill_interference
        transaction.on_commit(lambda: task.delay(version.pk))
    return version


def rollback_target(kind: str) -> ModelVersion | None:
    """The version a rollback of ``kind`` would promote: the most recently retired one."""
    return (
        ModelVersion.objects.filter(
            kind=kind, status=ModelVersion.RETIRED, training_state=ModelVersion.SUCCEEDED
        )
        .order_by("-promoted_at", "-version")
        .first()
    )


@transaction.atomic
def rollback(kind: str, actor=None) -> ModelVersion:
    """Re-promote the most recently retired version of ``kind``."""
    previous = rollback_target(kind)
    if previous is None:
        raise ValueError(f"no earlier {kind} version to roll back to")
    return promote(previous, actor=actor, reason="rollback")


_loaded: dict[tuple[str, int], object] = {}


def load_promoted(kind: str, loader):
    """The promoted version and its loaded model, cached per process until a promotion."""
    version = promoted(kind)
    if version is None:
        return None, None
    key = (kind, version.pk)
    if key not in _loaded:
        for stale in [k for k in _loaded if k[0] == kind]:
            _loaded.pop(stale)
        _loaded[key] = loader(version.artefact_path)
    return version, _loaded[key]


def _forget_loaded(kind: str) -> None:
    for key in [k for k in _loaded if k[0] == kind]:
        _loaded.pop(key)
