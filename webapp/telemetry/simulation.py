"""Backfill: write a simulated fleet's history straight into the store (no HTTP), with the
same ground-truth rows the live mode posts, so a fresh install has days to browse."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from ingest.simulator import Simulator
from ingest.simulator.live import LiveStreamer
from ingest.types import LogBatch, MetricBatch
from webapp.telemetry import services, writer

CHUNK_STEPS = 240  # one hour at 15 s


@dataclass
class BackfillSummary:
    samples: int = 0
    log_lines: int = 0
    cases: int = 0
    seconds: float = 0.0
    last_ts: float | None = None  # epoch seconds of the last step written
    faults: int = 0


def backfill(
    sim: Simulator,
    *,
    run_id: str | None = None,
    until: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillSummary:
    """Write steps up to ``until`` (default: now, never the future) and record the truth."""
    started = time.monotonic()
    summary = BackfillSummary()
    truth = LiveStreamer(sim, "http://unused", "", run_id=run_id)
    until = time.time() if until is None else until
    last_step = min(sim.n_steps, sim.step_of(until) + 1)
    fleet = truth.fleet_truth()
    cases = [truth.case_payload(c) for c in sim.cases if c.start <= until]
    result = services.record_ground_truth(truth.run_id, fleet["nodes"], fleet["instances"], cases)
    summary.cases = result["cases"]
    for step0 in range(0, last_step, CHUNK_STEPS):
        n = min(CHUNK_STEPS, last_step - step0)
        chunk = sim.simulate_chunk(step0, n)
        batch = MetricBatch(series=list(sim.iter_series(chunk)))
        summary.samples += writer.write_metrics(
            batch, source="simulator", client=truth.run_id
        ).stored
        logs = LogBatch(entries=list(sim.log_entries(chunk.logs)))
        digest = hashlib.blake2b(f"{truth.run_id}:{step0}".encode(), digest_size=16).digest()
        summary.log_lines += writer.write_logs(
            logs, source="simulator", client=truth.run_id, batch_digest=digest
        ).stored
        if progress:
            progress(step0 + n, last_step)
    if last_step > 0:
        summary.last_ts = float(sim.timestamps[last_step - 1])
    summary.faults = record_faults(sim, truth, until)
    services.run_rollups()
    summary.seconds = time.monotonic() - started
    return summary


PENDING_WITHIN = 2 * 3600  # faults this recent wait for an operator; older ones are history


def record_faults(sim: Simulator, truth: LiveStreamer, until: float) -> int:
    """The run's node faults up to ``until``: recent ones open (recommended, waiting for an
    operator), older ones as closed history handled by the legacy runbook, with the outcome
    the simulator realised for that action (the training data the mitigation model uses)."""
    from datetime import UTC, datetime

    from webapp.mitigation import services as mitigation
    from webapp.mitigation.models import MitigationAction
    from webapp.telemetry.models import Node

    recorded = 0
    for _, row in truth.faults().iterrows():
        if row["ts"] > until:
            continue
        payload = truth.fault_payload(row)
        node = Node.objects.filter(name=payload["node"]).first()
        if node is None:
            continue
        start = datetime.fromtimestamp(float(row["ts"]), tz=UTC)
        event, created = mitigation.open_unhealthy_event(
            node,
            payload["fault_category"],
            payload["signals"],
            source="simulator",
            external_id=payload["external_id"],
            start=start,
            recommend_now=until - row["ts"] < PENDING_WITHIN,  # still open: needs a choice
        )
        if not created:
            continue
        recorded += 1
        if until - row["ts"] < PENDING_WITHIN:
            continue
        action = MitigationAction.objects.get(key=row["action"])
        mitigation.apply_action(event, action.key, reason="legacy runbook (simulated history)")
        mitigation.record_outcome(
            event,
            downtime_minutes=float(row["downtime_minutes"]),
            interruptions=float(row["interruptions"]),
            capacity_cost=float(row["capacity_cost_node_hours"]),
            end=start,
        )
    return recorded
