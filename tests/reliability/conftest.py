"""Fault tests: things break on purpose (a database restart, a broker outage, a killed
worker, a refusing receiver, an agent cut off from its server) and the tests assert what
clients were promised still holds.

They need the PostgreSQL + Redis profile (TELLTALE_TEST_DATABASE_URL and
TELLTALE_TEST_BROKER_URL) and the server binaries; otherwise they skip and say why. Every
service they break is a throwaway one on a free loopback port: the machine's own
PostgreSQL and Redis are only used as the pytest test database, never stopped.
Each test prints its figures and writes them to test-artifacts/reliability/<name>.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.support import throwaway

ARTIFACTS = throwaway.REPO / "test-artifacts" / "reliability"

PROFILE = bool(os.environ.get("TELLTALE_TEST_DATABASE_URL")) and bool(
    os.environ.get("TELLTALE_TEST_BROKER_URL")
)
PROFILE_REASON = (
    "fault tests need the PostgreSQL + Redis profile: set TELLTALE_TEST_DATABASE_URL and "
    "TELLTALE_TEST_BROKER_URL (they are skipped on SQLite with in-process Celery)"
)
REDIS_BIN = shutil.which("redis-server")
PG_BIN = throwaway.pg_bin_dir()

needs_profile = pytest.mark.skipif(not PROFILE, reason=PROFILE_REASON)
needs_redis = pytest.mark.skipif(REDIS_BIN is None, reason="redis-server is not installed")
needs_postgres = pytest.mark.skipif(
    PG_BIN is None or shutil.which("runuser") is None or os.geteuid() != 0,
    reason="needs PostgreSQL server binaries under /usr/lib/postgresql/*/bin, runuser and root"
    " (initdb and pg_ctl run as the postgres user)",
)


def record(name: str, figures: dict) -> None:
    """Print the figures (pytest -s) and keep them for the lead to quote."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(figures, indent=2, sort_keys=True, default=str)
    (ARTIFACTS / f"{name}.json").write_text(text + "\n")
    print(f"\n[reliability] {name}: {text}")


@pytest.fixture
def log_dir(request):
    path = Path(tempfile.mkdtemp(prefix="telltale-rel-"))
    yield path
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for log in sorted(path.glob("*.log")):
            print(f"\n----- {log.name} -----\n{log.read_text(errors='replace')[-4000:]}")
    shutil.rmtree(path, ignore_errors=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


@pytest.fixture
def redis_server():
    server = throwaway.RedisServer(REDIS_BIN)
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def pg_cluster():
    """A throwaway cluster holding the database ``telltale``, migrated, with an ingest
    token (once per set of migrations; later runs copy that cluster), on a free port."""
    template, token, seconds = throwaway.migrated_template(PG_BIN, "telltale")
    cluster = throwaway.PgCluster(PG_BIN, template)
    cluster.migrate_seconds, cluster.token = seconds, token
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def test_database_url() -> str:
    """The pytest test database (committed rows: use with transactional_db), as a URL a
    Telltale subprocess can use."""
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


test_database_url.__test__ = False


class Processes:
    """Telltale subprocesses started by a test, all stopped at its end."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[throwaway.Proc] = []

    def web(
        self, env: dict, timeout: float = 40, port: int | None = None
    ) -> tuple[throwaway.Proc, str]:
        proc, port = throwaway.gunicorn(env, self.log_dir, port)
        self.started.append(proc.start())
        base = f"http://127.0.0.1:{port}"
        throwaway.wait_http(base + "/healthz", timeout, proc)
        return proc, base

    def worker(self, env: dict, *args: str) -> throwaway.Proc:
        proc = throwaway.celery("worker", env, self.log_dir, *args)
        self.started.append(proc.start())
        return proc

    def beat(self, env: dict) -> throwaway.Proc:
        schedule = self.log_dir / "celerybeat-schedule"
        proc = throwaway.celery("beat", env, self.log_dir, "--schedule", str(schedule))
        self.started.append(proc.start())
        return proc

    def agent(self, argv: list[str]) -> throwaway.Proc:
        env = throwaway.app_env("")
        proc = throwaway.Proc(
            "agent", [throwaway.PYTHON, "-m", "ingest.agent", *argv], env, self.log_dir
        )
        self.started.append(proc.start())
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture
def processes(log_dir):
    procs = Processes(log_dir)
    yield procs
    procs.stop_all()


def wait_until(condition, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(interval)


# --- Celery against a throwaway broker ----------------------------------------------------
@pytest.fixture
def celery_env(transactional_db, redis_server):
    """Environment for worker/beat/web subprocesses: the pytest test database (rows the
    test commits are visible to them) and the throwaway Redis; retries back off from 1 s."""
    return throwaway.app_env(
        test_database_url(),
        redis_server.url(0),
        TELLTALE_ALERTING_RETRY_BASE_SECONDS="1",
    )


@pytest.fixture
def producer(redis_server):
    """Sends tasks by name to the throwaway broker, as beat or a web process would."""
    from celery import Celery

    app = Celery("reliability-producer", broker=redis_server.url(0), set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    yield app
    app.close()


@pytest.fixture
def alerting_ticks(producer):
    """``alerting.cycle`` every second, as beat sends it every 5 s: the same task, sooner,
    without a beat process to start (the broker outage test runs the real beat)."""
    stop = threading.Event()

    def tick():
        while not stop.wait(1.0):
            with contextlib.suppress(Exception):  # the test reports what did not happen
                producer.send_task("alerting.cycle", expires=2.0)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


def alerting_setup(
    hook_url: str, nodes: list[str], metric: str, agg: str = "avg", until_s: int = 240
):
    """A webhook receiver, a root route grouping by node (one notification per node), a rule
    ``avg(metric) > 0.5`` evaluated every second, and samples that keep it firing."""
    from django.utils import timezone

    from webapp.alerting.models import AlertRule, Receiver, Route

    receiver = Receiver.objects.create(
        name="rel-hook", kind=Receiver.WEBHOOK, config={"url": hook_url}, send_resolved=True
    )
    Route.objects.create(
        name="root",
        receiver=receiver,
        group_by=["alertname", "node"],
        group_wait_s=0,
        group_interval_s=1,
        repeat_interval_s=86400,
    )
    rule = AlertRule.objects.create(
        name="RelHigh",
        kind=AlertRule.METRIC,
        selector=metric,
        agg=agg,
        window_s=60,
        op=">",
        threshold=0.5,
        interval_s=1,
        severity="warning",
        summary="{{ $labels.node }} high",
        next_eval_at=timezone.now(),
    )
    write_points(metric, nodes, 1.0, -50, until_s)
    return receiver, rule


def write_points(metric: str, nodes: list[str], value: float, from_s: int, to_s: int) -> None:
    """Samples every 5 s from now+from_s to now+to_s (future ones keep a state steady)."""
    from ingest.types import MetricBatch
    from tests.conftest import series_samples
    from webapp.telemetry import writer

    now_ms = int(time.time()) * 1000
    points = [(now_ms + s * 1000, value) for s in range(from_s, to_s, 5)]
    writer.write_metrics(
        MetricBatch(series=[series_samples(metric, {"node": n}, points) for n in nodes]),
        source="test",
        client="reliability",
    )
