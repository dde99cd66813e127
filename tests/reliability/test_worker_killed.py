"""A Celery worker's pool process is killed with SIGKILL in the middle of a task
(acks_late + reject_on_worker_lost): the broker hands the task back, it runs again, and
its effect happens once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.reliability.conftest import (
    alerting_setup,
    needs_profile,
    needs_redis,
    record,
    test_database_url,
    wait_until,
)
from tests.support import throwaway
from tests.support.webhook import FlakyHook
from webapp.alerting.models import AlertInstance, Notification, NotificationAttempt

pytestmark = [needs_profile, needs_redis]


def pool_child(worker_pid: int, timeout: float = 30) -> int:
    """The one prefork pool process (--concurrency 1) of a worker: the task runs there."""
    psutil = pytest.importorskip("psutil")

    def child():
        kids = psutil.Process(worker_pid).children()
        return kids[0].pid if len(kids) == 1 else None

    return wait_until(child, timeout, what="the worker's pool process")


def test_worker_killed_during_a_notification_send(
    clean_store, celery_env, processes, alerting_ticks
):
    hook = FlakyHook()
    hook.hang_next.set()  # the first POST is held open: the worker is mid-send
    hook.up()
    alerting_setup(hook.url, ["rel-kill"], "rel_kill_metric")
    worker = processes.worker(celery_env, "--pool", "prefork", "--concurrency", "1")

    wait_until(hook.hanging.is_set, 90, what="a notification send in flight")
    victim = pool_child(worker.pid)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    hook.release()
    notification = wait_until(
        lambda: Notification.objects.filter(status=Notification.SENT).first(),
        25,
        what="the notification sent after the kill",
    )
    resent_after = time.monotonic() - killed_at
    time.sleep(3)  # alerting cycles and sweeps later, still nothing more
    hook.down()

    attempts = list(notification.attempt_log.order_by("number"))
    figures = {
        "killed_pid": victim,
        "worker_alive": worker.alive(),
        "notifications": Notification.objects.count(),
        "alerts": AlertInstance.objects.count(),
        "hook_requests": len(hook.keys()),
        "hook_requests_answered": len(hook.answered_keys()),
        "distinct_keys": len(set(hook.keys())),
        "attempts": [(a.number, a.status) for a in attempts],
        "sent_seconds_after_kill": round(resent_after, 2),
    }
    record("worker_killed_notification", figures)

    assert worker.alive(), "the worker itself must survive its pool process"
    assert Notification.objects.count() == 1 and AlertInstance.objects.count() == 1
    # The receiver saw the message the dead run sent and the retry, with one key: a
    # receiver that honours Idempotency-Key acts once; exactly one send was completed.
    assert hook.keys() == [notification.dedup_key] * 2
    assert hook.answered_keys() == [notification.dedup_key]
    assert [a.status for a in attempts] == [NotificationAttempt.SENDING, NotificationAttempt.OK]
    # Redelivered at once, not after the dead run's claim lapsed.
    assert resent_after < 20


# --- scoring -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def anomaly_model():
    """The quick anomaly model, trained once and kept under var/ between runs (keyed by
    the model code), because training it takes a minute of CPU."""
    import hashlib

    from models.anomaly.train import TrainConfig, train

    code = sorted((throwaway.REPO / "models" / "anomaly").rglob("*.py"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in code)).hexdigest()[:16]
    out = throwaway.REPO / "var" / "test-cache" / f"anomaly-quick-{digest}"
    if not (out / "model.pt").is_file():
        train(TrainConfig.quick(out_dir=str(out)))
    return str(out)


def test_worker_killed_during_scoring(clean_store, celery_env, processes, producer, anomaly_model):
    import psycopg
    from django.db import transaction

    from ingest.simulator import ScenarioRates, SimConfig, Simulator
    from webapp.detection import versions
    from webapp.detection.models import Anomaly, ModelVersion
    from webapp.incidents.models import Signal
    from webapp.telemetry import query
    from webapp.telemetry.models import Instance, Node
    from webapp.telemetry.simulation import backfill
    from webapp.telemetry.stats import ingest_stats

    now = int(time.time())
    sim = Simulator(
        SimConfig(
            seed=21,
            n_nodes=2,
            n_instances=3,
            start=(now - 3600) // 60 * 60,
            hours=1.0,
            rates=ScenarioRates(12.0, 0.5, 6.0),
        )
    )
    backfill(sim)
    ingest_stats.flush()
    with transaction.atomic():
        versions.promote(
            ModelVersion.objects.create(
                kind="anomaly",
                version=1,
                training_state=ModelVersion.SUCCEEDED,
                artefact_path=anomaly_model,
            )
        )
    targets = Instance.objects.count() + Node.objects.count()
    worker = processes.worker(celery_env, "--pool", "prefork", "--concurrency", "1")
    url = test_database_url().replace("postgres://", "postgresql://")
    with psycopg.connect(url, autocommit=False) as blocker, psycopg.connect(url) as watcher:
        watcher.autocommit = True
        # Scores are written last: holding the sample table lets the task compute and
        # commit its anomalies, then wait in the middle of its final write.
        blocker.execute("LOCK TABLE telemetry_sample IN EXCLUSIVE MODE")
        producer.send_task("detection.score_anomalies")

        def stuck_writing():
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query ILIKE %s",
                ["%telemetry_sample%"],
            ).fetchone()
            return row[0] > 0

        wait_until(stuck_writing, 150, what="the scoring task waiting on its final write")
        anomalies_before_kill = Anomaly.objects.count()
        victim = pool_child(worker.pid)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        blocker.rollback()

    def score_samples():
        # The killed run registered the score series before it blocked; count samples.
        ids = [s.id for s in query.select("telltale_anomaly_score")]
        data = query.get_store().read_raw(ids, 0, int(time.time() * 1000) + 60_000)
        return sorted(len(ts) for ts, _ in data.values())

    wait_until(lambda: len(score_samples()) == targets, 150, what="scores written by the rerun")
    rerun_s = time.monotonic() - killed_at
    time.sleep(2.0)  # anything still to come from a second run would land now
    samples = score_samples()
    open_per_target = {}
    for a in Anomaly.objects.filter(status=Anomaly.OPEN):
        key = (a.level, a.node_id, a.instance_id)
        open_per_target[key] = open_per_target.get(key, 0) + 1
    figures = {
        "targets": targets,
        "killed_pid": victim,
        "anomalies_committed_before_kill": anomalies_before_kill,
        "anomalies_after_rerun": Anomaly.objects.count(),
        "anomaly_signals": Signal.objects.filter(kind="anomaly").count(),
        "score_samples_per_target": samples,
        "rerun_finished_seconds_after_kill": round(rerun_s, 2),
        "worker_alive": worker.alive(),
    }
    record("worker_killed_scoring", figures)

    assert worker.alive()
    assert samples == [1] * targets, "one score per target: the killed run wrote none"
    assert all(n == 1 for n in open_per_target.values()), "an anomaly was opened twice"
    assert Anomaly.objects.count() == anomalies_before_kill, "the rerun duplicated anomalies"
    assert Signal.objects.filter(kind="anomaly").count() == Anomaly.objects.count()
