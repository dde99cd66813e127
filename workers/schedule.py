"""Celery beat schedule. Periods are seconds; each entry calls a task in workers.tasks."""

from __future__ import annotations


def beat_schedule() -> dict:
    from django.conf import settings

    scoring = float(settings.TELLTALE_ANOMALY_SCORING_SECONDS)
    interference = float(settings.TELLTALE_INTERFERENCE_SECONDS)
    return {
        "scrape-due-targets": {"task": "ingest.scrape_due", "schedule": 5.0},
        "rollup-samples": {"task": "telemetry.rollup", "schedule": 60.0},
        "apply-retention": {"task": "telemetry.retention", "schedule": 3600.0},
        "drop-old-predictions": {"task": "detection.prediction_retention", "schedule": 3600.0},
        # What nodes report of their capacity changes rarely; a new node waits at most this.
        "reported-capacity": {"task": "telemetry.reported_capacity", "schedule": 300.0},
        "flush-ingest-stats": {"task": "telemetry.flush_ingest_stats", "schedule": 10.0},
        # Ticks a busy worker could not start within their period are dropped, not piled up.
        "alerting-cycle": {"task": "alerting.cycle", "schedule": 5.0, "options": {"expires": 5.0}},
        "score-anomalies": {
            "task": "detection.score_anomalies",
            "schedule": scoring,
            "options": {"expires": scoring},
        },
        "predict-interference": {
            "task": "detection.predict_interference",
            "schedule": interference,
            "options": {"expires": interference},
        },
        # The promoted anomaly model's novelty calibration follows the fleet's own windows.
        "calibrate-novelty": {
            "task": "detection.calibrate_novelty",
            "schedule": float(settings.TELLTALE_NOVELTY_REFIT_HOURS) * 3600.0,
        },
        "bootstrap-models": {"task": "detection.bootstrap_models", "schedule": 60.0},
        "refresh-recommendations": {
            "task": "mitigation.refresh_recommendations",
            "schedule": 120.0,
            "options": {"expires": 120.0},
        },
        "auto-resolve-incidents": {"task": "incidents.auto_resolve", "schedule": 300.0},
        # People's labels keep their telemetry past retention (training data for later
        # versions); hourly, so even a one-day retention cannot outrun it.
        "snapshot-labels": {"task": "detection.snapshot_labels", "schedule": 3600.0},
        # Nightly retraining: new labels and recorded outcomes reach a candidate version,
        # which an admin compares and promotes on the Models page.
        "retrain-anomaly": {"task": "detection.retrain", "schedule": 86400.0, "args": ("anomaly",)},
        "retrain-mitigation": {
            "task": "detection.retrain",
            "schedule": 86400.0,
            "args": ("mitigation",),
        },
    }
