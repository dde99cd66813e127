"""`make demo`: migrate, create the admin, seed, and run web + worker + beat + feeders.

Every step says what it does; Ctrl-C stops every child process. Running it again
reuses the database and the admin user.
"""

from __future__ import annotations

import json
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
# The demo fleet: small enough for SQLite on two cores, big enough to have neighbours,
# scenarios and deceptive normals every hour.
DEMO_FLEET = {"seed": 7, "nodes": 8, "hours": 24 * 30, "node_fault_rate": 2.0}


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
        total = 5 if options["bootstrap_only"] else 6
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

        self.step(5, total, "simulated fleet (its injected scenarios are labeled ground truth)")
        self.simulation = self.prepare_simulation(options)
        call_command("alerting_seed", verbosity=0)
        self.stdout.write(
            "    starter alert rules in place (Alerts → Rules); models train in the background"
        )
        self.stdout.write(f"    bootstrap done in {time.monotonic() - started:.1f} s")
        if options["bootstrap_only"]:
            return

        where = f"http://{options['host']}:{options['port']}"
        self.step(6, total, f"starting web, worker, beat, agent and simulator on {where}")
        self.run_processes(options, token)

    def prepare_simulation(self, options) -> dict:
        """The demo fleet's config (kept in var/ so restarts continue the same fleet) and,
        on the first run, a few hours of history written straight into the store."""
        from ingest.simulator import ScenarioRates, SimConfig, Simulator
        from ingest.simulator.live import LiveStreamer
        from webapp.telemetry.models import InjectedCase
        from webapp.telemetry.simulation import backfill

        var = Path(settings.VAR_DIR)
        config_file = var / "demo-simulation.json"
        resume_file = var / "demo-simulation-resume.json"
        now = int(time.time())
        config = json.loads(config_file.read_text()) if config_file.is_file() else None
        if (
            config is None
            or config.get("node_fault_rate") != DEMO_FLEET["node_fault_rate"]
            or now > config["start"] + config["hours"] * 3600 - 3600
        ):
            start = (now - settings.TELLTALE_DEMO_HISTORY_HOURS * 3600) // 3600 * 3600
            config = {**DEMO_FLEET, "start": start}
            config_file.write_text(json.dumps(config))
            resume_file.unlink(missing_ok=True)
        config["resume_file"] = str(resume_file)
        # The resume point belongs to the database it was written into: a wiped database
        # (make clean-demo) gets its history written again.
        has_history = InjectedCase.objects.filter(
            run=f"sim-{config['seed']}-{config['start']}"
        ).exists()
        if not has_history:
            resume_file.unlink(missing_ok=True)
        if resume_file.is_file() or options["no_feed"]:
            self.stdout.write(
                f"    continuing fleet seed {config['seed']} ({config['nodes']} nodes)"
            )
            return config
        sim = Simulator(
            SimConfig(
                seed=config["seed"],
                n_nodes=config["nodes"],
                start=config["start"],
                hours=config["hours"],
                rates=ScenarioRates(node_fault_per_node_day=config["node_fault_rate"]),
            )
        )
        hours = (now - config["start"]) / 3600
        self.stdout.write(f"    writing the last {hours:.1f} h of {config['nodes']} nodes")

        def progress(done: int, total: int) -> None:
            self.stdout.write(f"\r    history: {100 * done // max(1, total)} % ", ending="")
            self.stdout.flush()

        summary = backfill(sim, progress=progress)
        self.stdout.write(
            f"\n    {summary.samples} samples, {summary.log_lines} log lines and"
            f" {summary.cases} labeled cases in {summary.seconds:.0f} s"
        )
        if summary.last_ts is not None:
            run_id = LiveStreamer(sim, "http://unused", "").run_id
            resume_file.write_text(json.dumps({"run": run_id, "last_ts": summary.last_ts}))
        return config

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
        # First models are trained on the simulator at a size two cores finish in minutes.
        env.setdefault("TELLTALE_BOOTSTRAP_TRAINING", "demo")
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
                "trainer",
                [
                    python, "-m", "celery", "-A", "workers.celery", "worker", "-Q", "training",
                    "--concurrency", "1", "--pool", "solo", "-n", "trainer@%h",
                    "--loglevel", "INFO", "--logfile", str(logs / "trainer.log"),
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
            tailed = [
                logs / name for name in ("web-access.log", "worker.log", "beat.log", "trainer.log")
            ]
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
            sim = self.simulation
            procs.append(
                (
                    "simulator",
                    [
                        python, "manage.py", "simulate", "--live", "--server", f"http://{bind}",
                        "--token", token, "--seed", str(sim["seed"]), "--nodes", str(sim["nodes"]),
                        "--start", str(sim["start"]), "--hours", str(sim["hours"]),
                        "--catch-up-hours", "1", "--resume-file", sim["resume_file"],
                        "--node-fault-rate", str(sim["node_fault_rate"]),
                    ],
                )
            )  # fmt: skip
        return procs

    def run_processes(self, options, token: str) -> None:
        if not _port_free(options["host"], options["port"]):
            self.stderr.write(
                f"port {options['port']} is in use; stop what runs there or pass --port"
            )
            sys.exit(1)
        env = self.child_env()
        # Queue the first models' training now (not at beat's first interval): the trainer
        # picks it up as soon as it starts.
        subprocess.run(
            [sys.executable, "manage.py", "train", "--bootstrap"],
            env=env, cwd=settings.BASE_DIR, check=False,
        )  # fmt: skip
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
