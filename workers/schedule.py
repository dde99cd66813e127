"""Celery beat schedule. Periods are seconds; each entry calls a task in workers.tasks."""

from __future__ import annotations


def beat_schedule() -> dict:
    return {
        "scrape-due-targets": {"task": "ingest.scrape_due", "schedule": 5.0},
        "rollup-samples": {"task": "telemetry.rollup", "schedule": 60.0},
        "apply-retention": {"task": "telemetry.retention", "schedule": 3600.0},
        "flush-ingest-stats": {"task": "telemetry.flush_ingest_stats", "schedule": 10.0},
    }
