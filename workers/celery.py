"""The Celery app. Tasks live in workers/tasks.py, the beat schedule in workers/schedule.py."""

from __future__ import annotations

import os
import time

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("telltale", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_after_finalize.connect
def _install_schedule(sender, **kwargs):
    from workers.schedule import beat_schedule

    sender.conf.beat_schedule = beat_schedule()


_started: dict[str, float] = {}


@task_prerun.connect
def _task_started(task_id=None, **kwargs):
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **kwargs):
    began = _started.pop(task_id, None)
    if began is None or task is None:
        return
    from webapp.core.selfmetrics import TASK_DURATION

    TASK_DURATION.labels(task.name, state or "UNKNOWN").observe(time.perf_counter() - began)


@worker_ready.connect
def _fail_interrupted_training(sender=None, **kwargs):
    # Training that this worker was running when it last stopped will never finish.
    from webapp.detection.versions import fail_interrupted

    fail_interrupted(getattr(sender, "hostname", "") or "")
