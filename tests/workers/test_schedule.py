"""The beat schedule: the scoring periods come from settings."""

from __future__ import annotations

from workers.schedule import beat_schedule


def test_scoring_periods_are_configurable(settings):
    default = beat_schedule()
    assert default["score-anomalies"]["schedule"] == 60.0
    assert default["predict-interference"]["schedule"] == 60.0
    settings.TELLTALE_ANOMALY_SCORING_SECONDS = 300
    settings.TELLTALE_INTERFERENCE_SECONDS = 120
    schedule = beat_schedule()
    assert schedule["score-anomalies"]["schedule"] == 300.0
    assert schedule["score-anomalies"]["options"]["expires"] == 300.0
    assert schedule["predict-interference"]["schedule"] == 120.0


def test_tasks_that_take_minutes_of_cpu_run_on_the_training_worker_not_beside_scoring():
    from workers.celery import app

    for name in (
        "detection.train_model",
        "detection.backfill_anomalies",
        "detection.backfill_interference",
    ):
        assert app.amqp.router.route({}, name)["queue"].name == "training", name
    assert app.amqp.router.route({}, "detection.score_anomalies")["queue"].name != "training"
