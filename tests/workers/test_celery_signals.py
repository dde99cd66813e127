"""A starting worker fails the training runs it was running when it last stopped."""

from __future__ import annotations

from celery.signals import worker_ready

from webapp.detection import versions
from webapp.detection.models import ModelVersion


class _Consumer:  # the signal's sender: a worker's consumer, named by its node
    hostname = "trainer@h"


def test_worker_ready_fails_this_workers_orphaned_training(db):
    import workers.celery  # noqa: F401  (connects the signal handlers)

    orphan = versions.create_version("anomaly")
    ModelVersion.objects.filter(pk=orphan.pk).update(training_state="running", worker="trainer@h")
    worker_ready.send(sender=_Consumer())
    orphan.refresh_from_db()
    assert orphan.training_state == "failed" and "interrupted" in orphan.error
