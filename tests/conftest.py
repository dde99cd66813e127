"""Shared fixtures: users in each role (healthchecks-style owner/teammate/outsider),
logged-in clients, ingest tokens, and a clean sample store.

The suite runs on SQLite with eager Celery by default, or on PostgreSQL + Redis when
TELLTALE_TEST_DATABASE_URL and TELLTALE_TEST_BROKER_URL are set (see webapp/settings.py).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Per-process caches remember rows that a rolled-back test transaction removed."""
    from webapp.core.tokens import forget_cached_tokens
    from webapp.telemetry import writer
    from webapp.telemetry.stats import ingest_stats

    writer.forget_caches()
    forget_cached_tokens()
    ingest_stats._reset()
    yield
    writer.forget_caches()
    forget_cached_tokens()
    ingest_stats._reset()


@pytest.fixture
def users(db):
    from django.contrib.auth import get_user_model

    from webapp.core import services

    User = get_user_model()
    made = {}
    for role in ("viewer", "operator", "admin"):
        user = User.objects.create_user(
            username=role, password=PASSWORD, email=f"{role}@example.com"
        )
        services.set_user_role(user, role)
        made[role] = user
    made["outsider"] = User.objects.create_user(username="outsider", password=PASSWORD)
    return SimpleNamespace(**made)


def _client_for(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(users):
    return _client_for(users.viewer)


@pytest.fixture
def operator_client(users):
    return _client_for(users.operator)


@pytest.fixture
def admin_client(users):
    return _client_for(users.admin)


@pytest.fixture
def make_token(db):
    from webapp.core.services import create_ingest_token

    counter = iter(range(1, 1_000_000))

    def make(*scopes: str, name: str | None = None) -> str:
        scopes = scopes or ("metrics:write", "logs:write", "read")
        _, raw = create_ingest_token(name or f"token-{next(counter)}", list(scopes))
        return raw

    return make


@pytest.fixture
def ingest_token(make_token) -> str:
    return make_token("metrics:write", "logs:write", "read", name="test-client")


@pytest.fixture
def store(db):
    from webapp.telemetry.store import get_store

    s = get_store()
    s.truncate()
    yield s
    s.truncate()


@pytest.fixture
def clean_store(transactional_db):
    """For tests whose writes commit (live server, worker threads, subprocesses)."""
    from webapp.telemetry.store import get_store

    s = get_store()
    s.truncate()
    yield s
    s.truncate()


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def task_worker(transactional_db):
    """Runs Celery tasks for the test: inline in eager mode, or a real worker thread
    consuming the Redis broker when TELLTALE_TEST_BROKER_URL is set."""
    from django.conf import settings

    if not settings.CELERY_BROKER_URL:
        yield None
        return
    from celery.contrib.testing.worker import start_worker

    from workers.celery import app

    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield app


def wait_for(condition, timeout: float = 20.0, interval: float = 0.1):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def series_samples(metric: str, labels: dict, points: list[tuple[int, float]]):
    from ingest.types import SeriesSamples

    return SeriesSamples(
        labels=tuple(sorted({"__name__": metric, **labels}.items())),
        timestamps_ms=[t for t, _ in points],
        values=[v for _, v in points],
    )


# --- tiny models, trained once per session (only when a test asks for one) ---------------


@pytest.fixture(scope="session")
def anomaly_artefact(tmp_path_factory):
    from models.anomaly.train import TrainConfig, train

    out = tmp_path_factory.mktemp("anomaly-model")
    train(TrainConfig.quick(out_dir=str(out)))
    return str(out)


@pytest.fixture(scope="session")
def interference_artefact(tmp_path_factory):
    from models.interference.train import TrainConfig, train

    out = tmp_path_factory.mktemp("interference-model")
    train(
        TrainConfig(
            out_dir=str(out),
            n_nodes=3,
            n_instances=18,
            hours=3.0,
            epochs=1,
            max_train_windows=600,
            max_val_windows=200,
            threads=1,  # two intra-op threads spin on each other on shared cores
            what_if_moves=40,
        )
    )
    return str(out)


@pytest.fixture(scope="session")
def mitigation_artefact(tmp_path_factory):
    from models.mitigation.train import TrainConfig, train

    out = tmp_path_factory.mktemp("mitigation-model")
    train(TrainConfig(out_dir=str(out), n_events=1200, val_events=400))
    return str(out)


def backfill_quiet_fleet(hours: float, history_hours: float = 1.0):
    """Two nodes, eight instances, no scenarios: ``hours`` of a simulated fleet that began
    ``history_hours`` ago, written to the store up to now (the caller's store fixture
    truncates it)."""
    import time

    from ingest.simulator import ScenarioRates, SimConfig, Simulator
    from webapp.telemetry.simulation import backfill
    from webapp.telemetry.stats import ingest_stats

    start = (int(time.time()) - int(history_hours * 3600)) // 60 * 60
    sim = Simulator(
        SimConfig(
            seed=5,
            n_nodes=2,
            n_instances=8,
            start=start,
            hours=hours,
            rates=ScenarioRates(0, 0, 0, scheduled=False),
        )
    )
    backfill(sim)
    ingest_stats.flush()
    return sim


def artefact_alarming_at(anomaly_artefact: str, tmp_path, level: float) -> str:
    """A copy of an anomaly artefact whose own alarm level is ``level`` (0: every window
    alarms, over 100: none does)."""
    import json
    import shutil

    copy = tmp_path / f"alarms-at-{level:g}"
    shutil.copytree(anomaly_artefact, copy)
    (copy / "thresholds.json").write_text(json.dumps({"default": float(level), "groups": {}}))
    return str(copy)


def recent_anomaly(anomaly_artefact: str, **fields):
    """The artefact promoted, and an anomaly of it on the first instance that ended five
    minutes ago (``fields`` override the defaults)."""
    from datetime import UTC, datetime, timedelta

    from webapp.detection.models import Anomaly
    from webapp.telemetry.models import Instance

    version = promote_artefact("anomaly", anomaly_artefact)
    end = datetime.now(tz=UTC) - timedelta(minutes=5)
    values = {
        "level": "vm",
        "instance": Instance.objects.first(),
        "start": end - timedelta(minutes=10),
        "end": end,
        "score": 80,
        "model_version": version,
    }
    return Anomaly.objects.create(**{**values, **fields})


def promote_artefact(kind: str, path: str):
    from webapp.detection import versions
    from webapp.detection.models import ModelVersion

    version = ModelVersion.objects.create(
        kind=kind, version=1, training_state=ModelVersion.SUCCEEDED, artefact_path=path
    )
    versions._loaded.clear()
    return versions.promote(version)
