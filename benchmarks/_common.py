"""Shared set-up for benchmarks: a throwaway PostgreSQL database and a running app."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(name: str) -> str:
    """Drop and create ``name``; returns its DATABASE_URL."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgres://")
    return f"{base}/{name}"


def app_env(database_url: str, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELLTALE_TEST")}
    env.update(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "benchmark-" + "x" * 40,
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "CELERY_BROKER_URL": "",
            "LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@contextmanager
def gunicorn(env: dict, workers: int = 2, threads: int = 4, max_requests: int = 0):
    """gunicorn on a free loopback port; ``max_requests`` > 0 recycles each worker after
    that many requests (with 10 % jitter), as docker-compose does."""
    port = free_port()
    recycle = (
        ["--max-requests", str(max_requests), "--max-requests-jitter", str(max_requests // 10)]
        if max_requests > 0
        else []
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "webapp.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            *recycle,
        ],
        cwd=ROOT,
        env=env,
        stdout=sys.stderr,  # keep this script's stdout for its JSON
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("gunicorn did not start") from None
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def emit(result: dict) -> None:
    print(json.dumps(result, indent=2))


def database_exists(name: str) -> bool:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        return row is not None


def database_url(name: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgres://")
    return f"{base}/{name}"


def database_size_mb() -> float:
    """Size of the connected Django database (call after django.setup())."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_database_size(current_database())")
        return round(cur.fetchone()[0] / 2**20, 1)


def session_cookie(username: str = "bench", role: str = "viewer") -> str:
    """A logged-in session for real HTTP clients (after django.setup()): the cookie header."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from webapp.core.services import set_user_role

    user, _ = get_user_model().objects.get_or_create(username=username)
    set_user_role(user, role)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def flush_redis(url: str) -> None:
    """Empty the Redis database a benchmark gives the app as its cache."""
    import redis

    redis.Redis.from_url(url).flushdb()


def summary_ms(values_s: list[float]) -> dict:
    """count, p50, p95, max in ms of latencies given in seconds."""
    ms = [v * 1000 for v in values_s]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "max_ms": round(max(ms), 1) if ms else None,
    }


def page_users(
    base_url: str,
    cookie: str,
    paths: dict[str, str],
    users: int,
    seconds: float,
    stop=None,
    think: float = 0.0,
) -> dict:
    """``users`` threads each GET the pages in ``paths`` round robin (each starting at a
    different page) over keep-alive HTTP for ``seconds``, waiting ``think`` seconds after
    each answer (0: a closed loop at full speed); latency per page and errors."""
    import http.client
    import threading
    from collections import defaultdict
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    names = list(paths)
    lock = threading.Lock()
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, int] = defaultdict(int)
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    stop = stop or threading.Event()

    stale = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
    reconnects = [0]

    def user(k: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        i, used = k, False
        while time.monotonic() < deadline and not stop.is_set():
            name = names[i % len(names)]
            i += 1
            started = time.perf_counter()
            for attempt in (0, 1):
                try:
                    conn.request("GET", paths[name], headers={"Cookie": cookie})
                    response = conn.getresponse()
                    response.read()
                    used = True
                    break
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                    # A keep-alive connection the server closed while the user was idle:
                    # reconnect and send again, as a browser does (the time counts).
                    if attempt == 0 and used and isinstance(exc, stale):
                        used = False
                        with lock:
                            reconnects[0] += 1
                        continue
                    with lock:
                        errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    response = None
                    break
            if response is None:
                continue
            elapsed = time.perf_counter() - started
            with lock:
                statuses[str(response.status)] += 1
                if response.status == 200:
                    latencies[name].append(elapsed)
                else:
                    errors.append(f"{name}: HTTP {response.status}")
            if think and stop.wait(think):
                break
        conn.close()

    threads = [threading.Thread(target=user, args=(k,)) for k in range(users)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [v for values in latencies.values() for v in values]
    elapsed = time.monotonic() - started
    return {
        "users": users,
        "think_seconds": think,
        "seconds": round(elapsed, 1),
        "requests": len(everything) + len(errors),
        "requests_per_second": round((len(everything) + len(errors)) / elapsed, 1),
        "statuses": dict(statuses),
        "errors": len(errors),
        "error_examples": errors[:5],
        "keep_alive_reconnects": reconnects[0],
        "all_pages": summary_ms(everything),
        "per_page": {name: summary_ms(latencies[name]) for name in names},
    }


_WRK_SCRIPT = r"""
local paths = {__PATHS__}
local cookie = __COOKIE__
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1], {["Cookie"] = cookie})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "seconds": %.3f, "p50_us": %d, "p95_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_users(base_url: str, cookie: str, paths: dict[str, str], users: int, seconds: float):
    """The same page mix from ``wrk`` (C, one thread per core it is given), whose own CPU
    cost is a fraction of the Python generator's; None when wrk is not installed. wrk
    counts non-2xx answers as errors ("status")."""
    import shutil
    import tempfile

    binary = shutil.which("wrk")
    if binary is None:
        return None
    quoted = ", ".join(json.dumps(p) for p in paths.values())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT.replace("__PATHS__", quoted).replace("__COOKIE__", json.dumps(cookie)))
    try:
        out = subprocess.run(
            [
                binary,
                "-t",
                "1",
                "-c",
                str(users),
                "-d",
                f"{int(seconds)}s",
                "--timeout",
                "30s",
                "-s",
                f.name,
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(f.name)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line[len("WRKJSON ") :])
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "tool": "wrk",
        "users": users,
        "seconds": round(raw["seconds"], 1),
        "requests": raw["requests"],
        "requests_per_second": round(raw["requests"] / raw["seconds"], 1),
        "errors": errors,
        "error_kinds": {k: raw[k] for k in ("connect", "read", "write", "status", "timeout")},
        "all_pages": {
            "p50_ms": round(raw["p50_us"] / 1000, 1),
            "p95_ms": round(raw["p95_us"] / 1000, 1),
            "p99_ms": round(raw["p99_us"] / 1000, 1),
            "max_ms": round(raw["max_us"] / 1000, 1),
        },
    }


def warm(base_url: str, parallel: int, limit_s: float = 180) -> float:
    """Wait until every gunicorn worker has loaded the app (the first request of each takes
    seconds): rounds of ``2 * parallel`` simultaneous new connections to /healthz until
    every one answers within half a second. Returns the seconds it took."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        slow = []

        def probe(slow: list) -> None:
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
            except OSError:
                slow.append(1)
                return
            if time.perf_counter() - t0 > 0.5:
                slow.append(1)

        threads = [threading.Thread(target=probe, args=(slow,)) for _ in range(2 * parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not slow:
            break
    return time.monotonic() - started


@contextmanager
def celery_worker(env: dict, beat_schedule_file: str, concurrency: int = 2):
    """A Celery worker with an embedded beat (rollups, stats flush, alerting on their
    schedule), its schedule file kept apart from the app's own under var/."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery",
            "worker",
            "--beat",
            "--schedule",
            beat_schedule_file,
            "--concurrency",
            str(concurrency),
            "--pool",
            "threads",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=sys.stderr,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class RssSampler:
    """RSS of processes and their children (psutil), sampled every ``interval`` seconds
    in a thread: start, end and max per process, in MiB."""

    def __init__(self, roots: dict[str, int], interval: float = 2.0):
        import threading

        self.roots = roots
        self.interval = interval
        self.samples: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        for role, pid in self.roots.items():
            try:
                root = psutil.Process(pid)
                procs = [(role, root)] + [
                    (f"{role}:{child.pid}", child) for child in root.children(recursive=True)
                ]
            except psutil.NoSuchProcess:
                continue
            for name, proc in procs:
                try:
                    rss = proc.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                if rss > 0:  # a process being reaped reports 0
                    self.samples.setdefault(name, []).append(rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def report(self) -> dict:
        """Per process: start, end, max, and the RSS at the end of each quarter of the run
        (growth that stops after the first quarter is warm-up; growth in every quarter is
        what a leak looks like)."""
        return {
            name: {
                "start_mb": round(values[0], 1),
                "end_mb": round(values[-1], 1),
                "max_mb": round(max(values), 1),
                "quarters_mb": [
                    round(values[min(len(values) - 1, (len(values) * q) // 4)], 1)
                    for q in (1, 2, 3, 4)
                ],
                "samples": len(values),
            }
            for name, values in sorted(self.samples.items())
        }
