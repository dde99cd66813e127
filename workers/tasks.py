"""Celery tasks: one-line wrappers that take ids and call a service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="telemetry.rollup")
def rollup() -> dict:
    from webapp.telemetry.services import run_rollups

    return run_rollups()


@shared_task(name="telemetry.retention")
def retention() -> dict:
    from webapp.telemetry.services import apply_retention

    return apply_retention()


@shared_task(name="detection.prediction_retention")
def prediction_retention() -> int:
    from webapp.detection.services import drop_old_predictions

    return drop_old_predictions()


@shared_task(name="telemetry.reported_capacity")
def reported_capacity() -> int:
    from webapp.telemetry.services import refresh_reported_capacity

    return refresh_reported_capacity()


@shared_task(name="telemetry.flush_ingest_stats")
def flush_ingest_stats() -> None:
    from webapp.telemetry.stats import ingest_stats

    ingest_stats.flush()


@shared_task(name="detection.train_model", acks_late=True, bind=True)
def train_model(self, version_id: int) -> None:
    from webapp.detection.versions import run_training

    run_training(version_id, worker=self.request.hostname or "")


@shared_task(name="ingest.scrape_due")
def scrape_due() -> int:
    from ingest.scraper import scrape_due_targets

    return scrape_due_targets()


@shared_task(name="ingest.scrape_target", acks_late=True)
def scrape_target(target_id: int) -> None:
    from ingest.scraper import scrape_target_by_id

    scrape_target_by_id(target_id)


@shared_task(name="alerting.cycle")
def alerting_cycle() -> dict:
    from webapp.alerting.evaluation import run_cycle

    return run_cycle()


@shared_task(name="alerting.deliver", bind=True, max_retries=None, acks_late=True)
def deliver_notification(self, notification_id: int) -> str:
    from webapp.alerting.delivery import RetryLater, deliver

    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        return deliver(notification_id, redelivered=redelivered)
    except RetryLater as later:  # exponential backoff, computed and logged by deliver()
        if self.request.is_eager:  # in-process tasks cannot wait; the beat cycle retries
            return "retry-scheduled"
        raise self.retry(countdown=later.seconds) from None


@shared_task(name="alerting.feed_incidents")
def feed_incidents(alert_ids: list[int]) -> int:
    from webapp.alerting.incidents_feed import feed

    return feed(alert_ids)


@shared_task(name="detection.score_anomalies", acks_late=True)
def score_anomalies() -> dict:
    from webapp.detection.scoring import score_fleet

    return score_fleet()


@shared_task(name="detection.backfill_anomalies", acks_late=True)
def backfill_anomalies(version_id: int) -> dict:
    from webapp.detection.scoring import backfill

    return backfill(version_id)


@shared_task(name="detection.calibrate_novelty", acks_late=True)
def calibrate_novelty(version_id: int | None = None) -> dict:
    from webapp.detection.novelty import fit

    return fit(version_id)


@shared_task(name="detection.backfill_interference", acks_late=True)
def backfill_interference(version_id: int) -> int:
    from webapp.detection.interference import backfill

    return backfill(version_id)


@shared_task(name="detection.predict_interference", acks_late=True)
def predict_interference() -> int:
    from webapp.detection.interference import predict_fleet

    return predict_fleet()


@shared_task(name="detection.retrain")
def retrain(kind: str) -> int:
    from webapp.detection.versions import request_retraining

    return request_retraining(kind)


@shared_task(name="detection.snapshot_labels")
def snapshot_labels() -> int:
    from webapp.detection.training import snapshot_labels as snapshot

    return snapshot()


@shared_task(name="incidents.auto_resolve")
def auto_resolve_incidents() -> int:
    from webapp.incidents.services import auto_resolve

    return auto_resolve()


@shared_task(name="detection.bootstrap_models")
def bootstrap_models() -> list[int]:
    from webapp.detection.versions import bootstrap_models as bootstrap

    return bootstrap()


@shared_task(name="mitigation.refresh_recommendations")
def refresh_recommendations() -> int:
    from webapp.mitigation.services import refresh_recommendations as refresh

    return refresh()
