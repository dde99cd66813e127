"""Live mode: stream a simulated fleet through Telltale's real ingest endpoints.

Metrics go as Prometheus remote_write, logs as OTLP/HTTP, and the run's ground truth
(node attributes, instance workloads, cases that have started) to
``/api/v1/simulator/truth``. With ``catch_up_seconds`` the stream starts that far in the
past and sends as fast as the server takes it until it reaches now, then one step at a
time in real time. Needs only ``ingest`` (no Django).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from ingest.otlp_encode import OTLP_PROTOBUF_HEADERS, encode_otlp_logs
from ingest.remote_write import REMOTE_WRITE_HEADERS, encode_remote_write
from ingest.simulator.fleet import GENERATIONS
from ingest.simulator.simulator import Simulator

log = logging.getLogger(__name__)

MAX_SERIES_PER_REQUEST = 5000
MAX_LOGS_PER_REQUEST = 5000
CATCH_UP_CHUNK_STEPS = 40  # 10 minutes at 15 s


class Rejected(Exception):
    """The server refused a request for good (4xx other than 429); retrying cannot help."""


@dataclass
class LiveStats:
    requests: int = 0
    samples: int = 0
    log_lines: int = 0
    cases: int = 0
    retries: int = 0
    rejected: int = 0
    last_step: int = -1
    errors: list[str] = field(default_factory=list)


class LiveStreamer:
    def __init__(
        self,
        sim: Simulator,
        server: str,
        token: str,
        *,
        run_id: str | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ):
        self.sim = sim
        self.server = server.rstrip("/")
        self.token = token
        self.run_id = run_id or f"sim-{sim.config.seed}-{sim.config.start}"
        self.timeout = timeout
        self.clock = clock
        self.stats = LiveStats()
        self._posted_cases: set[int] = set()
        self._posted_faults: set[int] = set()
        self._faults = None

    # --- HTTP ------------------------------------------------------------------------
    def post(self, path: str, body: bytes, headers: dict[str, str], stop: threading.Event) -> None:
        """POST until it is accepted; connection errors, 5xx and 429 are retried with
        capped exponential backoff, other 4xx raise ``Rejected``."""
        delay = 0.5
        while True:
            request = urllib.request.Request(  # noqa: S310 - the server URL is the user's own
                self.server + path,
                data=body,
                method="POST",
                headers={**headers, "Authorization": f"Bearer {self.token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    response.read()
                self.stats.requests += 1
                return
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:500].decode(errors="replace")
                if exc.code < 500 and exc.code != 429:
                    self.stats.rejected += 1
                    raise Rejected(f"{path}: HTTP {exc.code}: {detail}") from None
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                reason = str(getattr(exc, "reason", exc))
            self.stats.retries += 1
            log.warning("%s failed (%s); retrying in %.1f s", path, reason, delay)
            if stop.wait(delay * (0.75 + random.random() / 2)):
                raise InterruptedError("stopped while retrying")
            delay = min(delay * 2, 30.0)

    # --- ground truth ----------------------------------------------------------------
    def fleet_truth(self) -> dict:
        fleet = self.sim.fleet.as_dict()
        nodes = []
        for n in fleet["nodes"]:
            gen = next(g for g in GENERATIONS if g.name == n["generation"])
            nodes.append(
                {
                    "name": n["node"],
                    "cluster": n["cluster"],
                    "rack": n["rack"],
                    "hardware": n["generation"],
                    "cpu_cores": int(gen.cores),
                    "memory_bytes": int(gen.mem_gb * 2**30),
                }
            )
        # Instances announce themselves (and their workload label) when their series
        # arrive; listing the whole period's fleet here would reveal future arrivals.
        return {"nodes": nodes, "instances": []}

    def case_payload(self, case) -> dict:
        fleet = self.sim.fleet
        return {
            "case_id": case.case_id,
            "kind": case.kind,
            "scenario": case.scenario,
            "level": case.level,
            "node": fleet.node_names[case.node] if case.node >= 0 else "",
            "instance": fleet.instance_names[case.instance] if case.instance >= 0 else "",
            "start": int(case.start),
            "end": int(case.end),
            "intensity": float(case.intensity),
            "variant": case.variant,
            "split": case.split,
            "context": case.context,
        }

    def send_truth(self, until: float, stop: threading.Event, with_fleet: bool = False) -> None:
        """Post the cases that have started by ``until`` (the demo must not reveal the
        future), and the fleet's attributes on the first call."""
        new = [
            c for c in self.sim.cases if c.start <= until and c.case_id not in self._posted_cases
        ]
        if not new and not with_fleet:
            return
        payload = {"run": self.run_id, "cases": [self.case_payload(c) for c in new]}
        if with_fleet:
            payload.update(self.fleet_truth())
        self.post(
            "/api/v1/simulator/truth",
            json.dumps(payload).encode(),
            {"Content-Type": "application/json"},
            stop,
        )
        self._posted_cases.update(c.case_id for c in new)
        self.stats.cases += len(new)

    def faults(self):
        """The run's unhealthy-node events (covariates only: the legacy action and the
        outcomes are the simulator's truth and stay here)."""
        if self._faults is None:
            self._faults = self.sim.mitigation().events
        return self._faults

    def fault_payload(self, row) -> dict:
        from ingest.simulator.health import COVARIATES

        return {
            "node": row["node"],
            "fault_category": row["fault"],
            "signals": {name: float(row[name]) for name in COVARIATES[1:]},
            "external_id": f"{self.run_id}:{int(row['event_id'])}",
        }

    def send_faults(self, until: float, stop: threading.Event) -> None:
        """Report node faults as a hardware monitor would, once they have happened."""
        for _, row in self.faults().iterrows():
            event_id = int(row["event_id"])
            if row["ts"] > until or event_id in self._posted_faults:
                continue
            try:
                self.post(
                    "/api/v1/mitigation/events",
                    json.dumps(self.fault_payload(row)).encode(),
                    {"Content-Type": "application/json"},
                    stop,
                )
            except Rejected as exc:
                self._note(exc)
            self._posted_faults.add(event_id)

    # --- telemetry -------------------------------------------------------------------
    def send_steps(self, step0: int, n_steps: int, stop: threading.Event) -> None:
        chunk = self.sim.simulate_chunk(step0, n_steps)
        batch = []
        for series in self.sim.iter_series(chunk):
            batch.append(series)
            if len(batch) >= MAX_SERIES_PER_REQUEST:
                self._send_metrics(batch, stop)
                batch = []
        if batch:
            self._send_metrics(batch, stop)
        entries = list(self.sim.log_entries(chunk.logs))
        for i in range(0, len(entries), MAX_LOGS_PER_REQUEST):
            part = entries[i : i + MAX_LOGS_PER_REQUEST]
            try:
                self.post("/v1/logs", encode_otlp_logs(part), OTLP_PROTOBUF_HEADERS, stop)
                self.stats.log_lines += len(part)
            except Rejected as exc:
                self._note(exc)
        self.stats.last_step = step0 + n_steps - 1

    def _send_metrics(self, batch, stop) -> None:
        try:
            self.post("/api/v1/write", encode_remote_write(batch), REMOTE_WRITE_HEADERS, stop)
            self.stats.samples += sum(len(s.timestamps_ms) for s in batch)
        except Rejected as exc:
            self._note(exc)

    def _note(self, exc: Exception) -> None:
        log.error("%s", exc)
        self.stats.errors = [*self.stats.errors[-19:], str(exc)]

    # --- loop ------------------------------------------------------------------------
    def run(
        self,
        stop: threading.Event,
        *,
        catch_up_seconds: float = 0.0,
        duration_seconds: float | None = None,
        speed: float = 1.0,
        resume_after: float | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> LiveStats:
        """Stream from ``now - catch_up_seconds`` (as fast as possible) and then in real time
        (``speed`` > 1 runs the simulated clock faster; samples are then stamped ahead of
        the wall clock, so keep it within the server's future window). ``resume_after``
        (epoch seconds of the last step a previous run sent) continues right after it
        when that is later than the catch-up start; ``on_progress`` gets the time of the
        last step sent after every request batch."""
        sim, step_s = self.sim, self.sim.config.step_seconds
        started = self.clock()
        origin = started - catch_up_seconds
        if resume_after is not None:
            origin = max(origin, resume_after + step_s)
        next_step = max(0, sim.step_of(origin))
        self.send_truth(origin, stop, with_fleet=True)
        self._posted_faults |= {
            int(r["event_id"]) for _, r in self.faults().iterrows() if r["ts"] < origin
        }  # faults before this stream's start were reported by the run that covered them
        while not stop.is_set():
            elapsed = self.clock() - started
            if duration_seconds is not None and elapsed >= duration_seconds:
                break
            sim_now = started + elapsed * speed
            due = min(sim.n_steps, sim.step_of(sim_now) + 1)
            if next_step >= sim.n_steps:
                log.info("simulated period is over (%d steps)", sim.n_steps)
                break
            if next_step < due:
                n = min(due - next_step, CATCH_UP_CHUNK_STEPS)
                self.send_steps(next_step, n, stop)
                next_step += n
                last_sent = float(sim.timestamps[next_step - 1])
                self.send_truth(last_sent, stop)
                self.send_faults(last_sent, stop)
                if on_progress:
                    on_progress(last_sent)
                continue
            wait = min((float(sim.timestamps[next_step]) - sim_now) / speed, step_s)
            if duration_seconds is not None:
                wait = min(wait, duration_seconds - elapsed)
            stop.wait(max(0.05, wait))
        return self.stats
