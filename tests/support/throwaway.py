"""Throwaway services for fault tests: a PostgreSQL cluster made with initdb on a free port,
a redis-server on a free port, and Telltale's own processes (gunicorn, Celery worker and
beat) as subprocesses that a test can stop, kill and start again.

Nothing here touches the machine's own PostgreSQL (5432) or Redis (6379).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent


def pg_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode} before listening") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing on 127.0.0.1:{port} after {timeout} s") from None
            time.sleep(0.1)


def wait_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return
        time.sleep(0.1)
    raise RuntimeError(f"127.0.0.1:{port} still accepts connections")


def copy_data_dir(source: Path, target: Path) -> None:
    """Copy a stopped cluster's data directory, keeping ``postgres`` as its owner. Done as
    root: the cache lives in the checkout, which ``postgres`` may not be able to enter (a
    clone in a mode-700 ``mktemp -d`` folder, as CI makes)."""
    done = subprocess.run(["cp", "-a", str(source), str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cp failed: {done.stderr[-1500:]}")


class PgCluster:
    """initdb in a temporary directory owned by ``postgres`` (tests run as root, and
    PostgreSQL refuses to run as root); trust authentication on loopback only."""

    def __init__(self, bin_dir: Path, template: Path | None = None):
        """A new cluster; ``template``: a stopped cluster's data directory to copy instead
        of running initdb (see ``migrated_template``)."""
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="telltale-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)
        if template is not None:
            copy_data_dir(template, self.data)
            return
        self._as_postgres(
            [
                *(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres"),
                *("-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"),
            ]
        )

    def _as_postgres(self, argv: list[str], timeout: float = 60) -> str:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout[-1500:]} {done.stderr[-1500:]}")
        return done.stdout

    def url(self, db: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
            " -c max_connections=60 -c shared_buffers=32MB"
        )
        self._as_postgres(
            [
                *(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log")),
                *("-o", options, "-w", "-t", "30", "start"),
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is what a crash looks like to clients: no goodbye, WAL replay next
        start; ``fast`` disconnects clients and checkpoints."""
        self._as_postgres(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"]
        )

    def psql(self, sql: str, db: str = "postgres") -> str:
        return self._as_postgres(
            [
                *(str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-d", db),
                *("-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql),
            ]
        ).strip()

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """A redis-server with an append-only file, as docker-compose.yml runs it, so queued
    tasks survive a restart."""

    def __init__(self, binary: str):
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="telltale-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.dir), "--appendonly", "yes", "--save", ""),
                *("--protected-mode", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, 15, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None
        wait_closed(self.port)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def app_env(database_url: str, broker_url: str = "", **extra: str) -> dict:
    """Environment of a Telltale process: production settings, not the test profile."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELLTALE_TEST", "DJANGO_", "PYTEST", "CELERY_"))
    }
    env.pop("TELLTALE_TESTING", None)
    env.update(
        {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "SECRET_KEY": "reliability-tests-secret-key-0123456789abcdefghijklmnop",
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "TELLTALE_BOOTSTRAP_TRAINING": "off",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Proc:
    """A Telltale process writing its output to a log file the test can show on failure."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log_path = Path(log_dir) / f"{name}.log"
        # Celery's cold shutdown (SIGQUIT) also ends the pool; gunicorn stops on SIGTERM.
        self.stop_signal = signal.SIGQUIT if "celery" in name else signal.SIGTERM
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def gunicorn(env: dict, log_dir: Path, port: int | None = None, workers: int = 1) -> tuple:
    port = port or free_port()
    argv = [str(VENV_BIN / "gunicorn"), "webapp.wsgi:application"]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", "4"]
    argv += ["--timeout", "60", "--graceful-timeout", "5"]
    return Proc(f"gunicorn-{port}", argv, env, log_dir), port


def celery(kind: str, env: dict, log_dir: Path, *args: str) -> Proc:
    argv = [str(VENV_BIN / "celery"), "-A", "workers.celery", kind, "--loglevel", "INFO", *args]
    return Proc(f"celery-{kind}", argv, env, log_dir)


def request(url: str, body: bytes | None = None, headers: dict | None = None, timeout=10):
    """(status, text) of one request; status is the exception's name when none came."""
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return type(exc).__name__, str(exc)


def wait_http(url: str, timeout: float, proc: Proc | None = None, ok=(200,)) -> int:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited: {proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = None
        if status in ok:
            return status
        time.sleep(0.2)
    tail = proc.tail() if proc is not None else ""
    raise RuntimeError(f"{url} answered {status} after {timeout} s {tail}")


def manage(env: dict, *args: str, timeout: float = 180) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-3000:]}")
    return done.stdout


def migrated_template(bin_dir: Path, database: str) -> tuple[Path, str, float]:
    """A stopped cluster with ``database`` migrated by ``manage.py migrate`` and one ingest
    token, kept under var/test-cache and keyed by the PostgreSQL version and the migration
    files, so each run copies it instead of starting Django twice more.
    Returns (data dir, raw ingest token, seconds spent now)."""
    import hashlib

    started = time.monotonic()
    files = [
        *sorted(REPO.glob("webapp/*/migrations/*.py")),
        REPO / "webapp/telemetry/store/postgres.py",
    ]
    digest = hashlib.sha256(str(bin_dir).encode())
    for path in files:
        digest.update(path.name.encode() + path.read_bytes())
    cache = REPO / "var" / "test-cache" / f"pg-{digest.hexdigest()[:16]}"
    data = cache / "data"
    if (data / "PG_VERSION").is_file() and (cache / "token").is_file():
        return data, (cache / "token").read_text().strip(), time.monotonic() - started
    cluster = PgCluster(bin_dir)
    try:
        cluster.start()
        cluster.psql(f"CREATE DATABASE {database}")
        env = app_env(cluster.url(database))
        manage(env, "migrate", "--noinput")
        token = manage(env, "create_ingest_token", "reliability").strip()
        cluster.stop("fast")
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=cache.name + "-", dir=cache.parent))
        shutil.chown(staging, "postgres", "postgres")
        os.chmod(staging, 0o700)
        copy_data_dir(cluster.data, staging / "data")
        (staging / "token").write_text(token)
        try:
            os.rename(staging, cache)  # atomic: a concurrent run may have won the race
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        cluster.destroy()
    return data, (cache / "token").read_text().strip(), time.monotonic() - started
