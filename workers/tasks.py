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


@shared_task(name="telemetry.flush_ingest_stats")
def flush_ingest_stats() -> None:
    from webapp.telemetry.stats import ingest_stats

    ingest_stats.flush()


@shared_task(name="detection.train_model", acks_late=True)
def train_model(version_id: int) -> None:
    from webapp.detection.versions import run_training

    run_training(version_id)


@shared_task(name="ingest.scrape_due")
def scrape_due() -> int:
    from ingest.scraper import scrape_due_targets

    return scrape_due_targets()


@shared_task(name="ingest.scrape_target", acks_late=True)
def scrape_target(target_id: int) -> None:
    from ingest.scraper import scrape_target_by_id

    scrape_target_by_id(target_id)
