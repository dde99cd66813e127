"""`manage.py simulate`: the fleet simulator's three modes (see docs/simulator.md)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

from django.core.management import BaseCommand, CommandError

from ingest.simulator import ScenarioRates, SimConfig, Simulator, export_dataset

HOUR = 3600


class Command(BaseCommand):
    help = "Simulate a fleet: stream it live, backfill history, or export a dataset."

    def add_arguments(self, parser):
        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument("--live", action="store_true", help="stream through the ingest endpoints")
        mode.add_argument("--backfill", action="store_true", help="write history into the store")
        mode.add_argument("--export", metavar="DIR", help="write a dataset to files")
        parser.add_argument("--server", help="Telltale URL for --live, e.g. http://127.0.0.1:8000")
        parser.add_argument(
            "--token", help="ingest token (metrics:write and logs:write) for --live"
        )
        parser.add_argument("--nodes", type=int, default=10)
        parser.add_argument("--instances", type=int, default=None, help="default: 8 per node")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--hours", type=float, default=24.0, help="length of the simulated period"
        )
        parser.add_argument(
            "--start", type=int, default=None, help="epoch seconds of the period's start"
        )
        parser.add_argument("--step", type=int, default=15, help="seconds between samples")
        parser.add_argument(
            "--catch-up-hours", type=float, default=0.0, help="--live: start this far back"
        )
        parser.add_argument(
            "--duration", type=float, default=None, help="--live: stop after N seconds"
        )
        parser.add_argument(
            "--speed", type=float, default=1.0, help="--live: simulated seconds per second"
        )
        parser.add_argument(
            "--resume-file", help="--live: remember the last step sent here and continue after it"
        )
        parser.add_argument("--variant-set", choices=["train", "heldout"], default="train")
        parser.add_argument("--quiet-fleet", action="store_true", help="no injected scenarios")
        parser.add_argument(
            "--node-fault-rate",
            type=float,
            default=None,
            help="unhealthy-node faults per node per day (default: the simulator's 0.08)",
        )
        parser.add_argument(
            "--log-text", action="store_true", help="--export: also write logs.txt.gz"
        )
        parser.add_argument(
            "--mitigation-history", type=int, default=0, help="--export: extra events"
        )

    def config(self, options, start) -> SimConfig:
        if options["nodes"] < 1 or options["hours"] <= 0 or options["step"] < 1:
            raise CommandError("--nodes, --hours and --step must be positive")
        rates = (
            ScenarioRates(0, 0, 0, scheduled=False) if options["quiet_fleet"] else ScenarioRates()
        )
        try:
            return SimConfig(
                seed=options["seed"],
                n_nodes=options["nodes"],
                n_instances=options["instances"],
                step_seconds=options["step"],
                start=start,
                hours=options["hours"],
                rates=rates,
                variant_set=options["variant_set"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    def handle(self, *args, **options):
        if options["export"]:
            return self.export(options)
        if options["backfill"]:
            return self.backfill(options)
        return self.live(options)

    def export(self, options):
        config = self.config(options, options["start"])
        started = time.monotonic()
        summary = export_dataset(
            config,
            options["export"],
            log_text=options["log_text"],
            mitigation_history=options["mitigation_history"],
        )
        self.stdout.write(f"exported {summary} in {time.monotonic() - started:.1f} s")

    def backfill(self, options):
        from webapp.telemetry.simulation import backfill

        start = options["start"]
        if start is None:  # the period ends now
            now = int(time.time())
            start = (now - int(options["hours"] * HOUR)) // options["step"] * options["step"]
        sim = Simulator(self.config(options, start))

        def progress(done: int, total: int) -> None:
            self.stdout.write(
                f"\r    backfill: {done}/{total} steps ({100 * done // max(1, total)} %)", ending=""
            )
            self.stdout.flush()

        summary = backfill(sim, progress=progress)
        self.stdout.write(
            f"\n    wrote {summary.samples} samples, {summary.log_lines} log lines and "
            f"{summary.cases} injected cases in {summary.seconds:.1f} s"
        )

    def live(self, options):
        from ingest.simulator.live import LiveStreamer

        if not options["server"] or not options["token"]:
            raise CommandError("--live needs --server and --token")
        if options["speed"] <= 0:
            raise CommandError("--speed must be positive")
        start = options["start"]
        if start is None:
            now = int(time.time())
            start = (now - int(options["catch_up_hours"] * HOUR)) // HOUR * HOUR
        sim = Simulator(self.config(options, start))
        streamer = LiveStreamer(sim, options["server"], options["token"])
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(
            f"streaming {sim.fleet.n_nodes} nodes to {options['server']} (run {streamer.run_id}); "
            "Ctrl-C stops"
        )
        resume_file = Path(options["resume_file"]) if options["resume_file"] else None
        resume_after = None
        if resume_file and resume_file.is_file():
            saved = json.loads(resume_file.read_text())
            if saved.get("run") == streamer.run_id:
                resume_after = float(saved["last_ts"])

        def remember(last_ts: float) -> None:
            if resume_file:
                tmp = resume_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"run": streamer.run_id, "last_ts": last_ts}))
                tmp.replace(resume_file)

        try:
            stats = streamer.run(
                stop,
                catch_up_seconds=options["catch_up_hours"] * HOUR,
                duration_seconds=options["duration"],
                speed=options["speed"],
                resume_after=resume_after,
                on_progress=remember,
            )
        except InterruptedError:
            stats = streamer.stats
        self.stdout.write(
            f"sent {stats.samples} samples, {stats.log_lines} log lines and {stats.cases} cases "
            f"in {stats.requests} requests ({stats.retries} retries, {stats.rejected} rejected)"
        )
        if stats.rejected:
            sys.exit(1)
