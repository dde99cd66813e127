"""`make demo`: migrate, create the admin, seed, and run web + worker + beat + feeders.

Every step says what it does; Ctrl-C stops every child process. Running it again
reuses the database and the admin user.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import BaseCommand, call_command

from webapp.core import services
from webapp.core.models import IngestToken

DEMO_TOKEN_NAME = "demo-feed"  # noqa: S105 - a name, not a secret


class Command(BaseCommand):
    help = "Run Telltale's embedded demo: web app, Celery worker and beat, and live data."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--bootstrap-only",
            action="store_true",
            help="migrate, create the admin and seed, then exit without starting processes",
        )
        parser.add_argument("--no-feed", action="store_true", help="do not start the data feeders")

    def step(self, number: int, total: int, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> [{number}/{total}] {text}"))
        self.stdout.flush()

    def handle(self, *args, **options):
        total = 4 if options["bootstrap_only"] else 5
        started = time.monotonic()
        self.step(1, total, f"migrating the database ({settings.DATABASES['default']['NAME']})")
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=1)

        self.step(2, total, "admin user")
        password = os.environ.get("TELLTALE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        _, created = services.ensure_admin("admin", password)
        if created:
            shown = (
                "(from TELLTALE_ADMIN_PASSWORD)"
                if os.environ.get("TELLTALE_ADMIN_PASSWORD")
                else password
            )
            self.stdout.write(
                self.style.SUCCESS(f"    created user 'admin' with password: {shown}")
            )
            self.stdout.write("    it is shown only this once; change it under Settings → Users.")
        else:
            self.stdout.write("    user 'admin' exists; its password is unchanged.")

        self.step(3, total, "ingest token for the demo feeders")
        token = self.rotate_demo_token()
        self.stdout.write(f"    token {DEMO_TOKEN_NAME!r} ready (rotated on every start)")

        self.step(4, total, "task queue folders")
        for folder in ("queue", "processed"):
            (Path(settings.VAR_DIR) / "celery" / folder).mkdir(parents=True, exist_ok=True)
        self.stdout.write(f"    bootstrap done in {time.monotonic() - started:.1f} s")
        if options["bootstrap_only"]:
            return

        self.step(
            5,
            total,
            f"starting web, worker, beat and feeders on http://{options['host']}:{options['port']}",
        )
        self.run_processes(options, token)

    def rotate_demo_token(self) -> str:
        for old in IngestToken.objects.filter(name=DEMO_TOKEN_NAME, revoked_at__isnull=True):
            services.revoke_ingest_token(old)
        IngestToken.objects.filter(name=DEMO_TOKEN_NAME).delete()
        _, raw = services.create_ingest_token(
            DEMO_TOKEN_NAME, [IngestToken.SCOPE_METRICS_WRITE, IngestToken.SCOPE_LOGS_WRITE]
        )
        return raw

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if not settings.CELERY_BROKER_URL:
            env["CELERY_BROKER_URL"] = "filesystem://"
        metrics_dir = Path(settings.VAR_DIR) / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        env.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
        return env

    def commands(self, options, token: str) -> list[tuple[str, list[str]]]:
        python = sys.executable
        bind = f"{options['host']}:{options['port']}"
        logs = Path(settings.VAR_DIR) / "log"
        logs.mkdir(parents=True, exist_ok=True)
        procs = [
            (
                "web",
                [
                    python, "-m", "gunicorn", "webapp.wsgi:application", "--bind", bind,
                    "--workers", "2", "--threads", "4", "--timeout", "120",
                    "--access-logfile", str(logs / "web-access.log"), "--log-level", "warning",
                ],
            ),
            (
                "worker",
                [
                    python, "-m", "celery", "-A", "workers.celery", "worker",
                    "--concurrency", "2", "--pool", "threads",
                    "--loglevel", "INFO", "--logfile", str(logs / "worker.log"),
                ],
            ),
            (
                "beat",
                [
                    python, "-m", "celery", "-A", "workers.celery", "beat", "--loglevel", "INFO",
                    "--logfile", str(logs / "beat.log"),
                ],
            ),
        ]  # fmt: skip
        if not options["no_feed"]:
            # The agent feeds this machine's metrics and Telltale's own logs (plus the
            # system log when readable), so the demo shows live data from the first minute.
            tailed = [logs / "web-access.log", logs / "worker.log", logs / "beat.log"]
            tailed += [
                Path(p) for p in ("/var/log/syslog", "/var/log/messages") if os.access(p, os.R_OK)
            ]
            argv = [
                python, "-m", "ingest.agent", "--server", f"http://{bind}", "--token", token,
                "--state-dir", str(Path(settings.VAR_DIR) / "agent"), "--interval", "15",
            ]  # fmt: skip
            for path in tailed:
                argv += ["--log-file", str(path)]
            procs.append(("agent", argv))
        return procs

    def run_processes(self, options, token: str) -> None:
        if not _port_free(options["host"], options["port"]):
            self.stderr.write(
                f"port {options['port']} is in use; stop what runs there or pass --port"
            )
            sys.exit(1)
        env = self.child_env()
        children: list[tuple[str, subprocess.Popen]] = []
        for name, argv in self.commands(options, token):
            children.append((name, subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR)))
            self.stdout.write(f"    started {name} (pid {children[-1][1].pid})")
        self.stdout.write(
            f"    worker, beat and web access logs: {Path(settings.VAR_DIR) / 'log'}/"
        )
        _wait_for_http(options["host"], options["port"], timeout=60)
        self.stdout.write(
            self.style.SUCCESS(
                f"\nTelltale is up: http://{options['host']}:{options['port']}/"
                "  (Ctrl-C stops everything)\n"
            )
        )
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in children:
                    if proc.poll() is not None:
                        self.stderr.write(
                            f"{name} exited with status {proc.returncode}; stopping the demo"
                        )
                        stopping = True
                        break
                time.sleep(0.5)
        finally:
            self.stdout.write("stopping…")
            for _, proc in children:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 15
            for _, proc in children:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            self.stdout.write("all processes stopped.")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for_http(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
