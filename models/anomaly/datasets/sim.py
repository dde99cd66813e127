"""Simulated fleets (ingest.simulator) as series groups, with logs mined from rendered text.

Log input is built the way the app builds it: every line is rendered to text and mined with
drain3 (``models.anomaly.logmining``); the simulator's template index and the ``case`` column
never reach the model. Scenario masks become labels and scoring segments only.

Fleets used by training and evaluation never share a seed: training uses
``train_seeds(test_seed)``, which skips the test seed whatever it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ingest.simulator import (
    CATALOGUE,
    HOST_METRIC_NAMES,
    VM_METRIC_NAMES,
    ScenarioRates,
    SimConfig,
    Simulator,
)
from ingest.simulator.logs import render_message
from models.anomaly.features import LogStore, SeriesGroup
from models.anomaly.metrics import Segment

ANOMALY_NAMES = CATALOGUE.names("anomaly")
DECEPTIVE_NAMES = CATALOGUE.names("deceptive")
CLASSES = ["normal", *ANOMALY_NAMES, *DECEPTIVE_NAMES]
START = 1_736_121_600  # 2025-01-06 00:00 UTC, a Monday
DAY = 86_400
BASE_SEED = 1_000_001

# Training fleets see many more cases than a real fleet so every scenario has examples.
TRAIN_RATES = ScenarioRates(
    anomaly_per_instance_day=1.0, node_fault_per_node_day=1.5, deceptive_per_instance_day=0.6
)
# Test fleets: raised anomaly rates for statistical power; false alarms per target-day and
# deceptive FPR do not depend on them.
TEST_RATES = ScenarioRates(
    anomaly_per_instance_day=0.3, node_fault_per_node_day=0.4, deceptive_per_instance_day=0.3
)


# Anomalies per target-day in a real fleet (the simulator's default rates): thresholds are
# chosen for this base rate, not for the inflated rates of training and test fleets.
DEPLOYMENT_PRIOR = {
    "vm": ScenarioRates().anomaly_per_instance_day,
    "host": ScenarioRates().node_fault_per_node_day,
}


def train_seeds(test_seed: int | None, n: int = 2) -> list[int]:
    """Seeds for training and validation fleets, never equal to the test seed."""
    out, s = [], BASE_SEED
    while len(out) < n:
        if s != test_seed:
            out.append(s)
        s += 1
    return out


@dataclass
class SimData:
    vm: SeriesGroup
    host: SeriesGroup
    segments: list[Segment]
    config: SimConfig
    n_lines: int
    cases: list
    # Template-table indices of the lines each case (by case id) wrote: what an
    # attribution should point at.
    case_templates: dict[int, frozenset[int]] = field(default_factory=dict)


def _bits_to_class(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint64 scenario masks -> (anomaly flag, class index in CLASSES). An anomaly wins over
    a deceptive normal active at the same step; among equals the lowest bit wins."""
    names = CATALOGUE.names()
    label = np.zeros(mask.shape, np.int8)
    cls = np.zeros(mask.shape, np.int16)
    for kind in (DECEPTIVE_NAMES, ANOMALY_NAMES):
        for bit in range(len(names) - 1, -1, -1):
            if names[bit] not in kind:
                continue
            on = ((mask >> np.uint64(bit)) & np.uint64(1)).astype(bool)
            if on.any():
                cls[on] = CLASSES.index(names[bit])
                if kind is ANOMALY_NAMES:
                    label[on] = 1
    return label, cls


def render_lines(sim: Simulator, logs) -> list[str]:
    out = []
    for i in range(len(logs)):
        ctx = sim.line_context(logs, i)
        out.append(
            render_message(
                int(logs.template[i]),
                int(logs.seed[i]),
                logs.ts_ms[i] / 1000,
                float(logs.value[i]),
                ctx,
            )
        )
    return out


def simulate(
    config: SimConfig,
    mine: Callable[[list[str]], np.ndarray],
    resolve: Callable[[np.ndarray], np.ndarray] | None = None,
    patch_seconds: int = 300,
) -> SimData:
    """Run a fleet; ``mine`` maps rendered messages to ids that ``resolve`` (after all lines
    are mined) turns into template-table indices."""
    sim = Simulator(config)
    T, dt = sim.n_steps, config.step_seconds
    n_inst, n_node = len(sim.fleet.instance_names), sim.fleet.n_nodes
    vm = np.full((T, n_inst, len(VM_METRIC_NAMES)), np.nan, np.float32)
    host = np.full((T, n_node, len(HOST_METRIC_NAMES)), np.nan, np.float32)
    vm_mask = np.zeros((T, n_inst), np.uint64)
    host_mask = np.zeros((T, n_node), np.uint64)
    node_of = np.full((T, n_inst), -1, np.int32)
    line_target, line_step, line_host, line_ids, line_case = [], [], [], [], []
    t0 = int(config.start or 0)
    for chunk in sim.chunks():
        rows = slice(chunk.step0, chunk.step0 + chunk.n_steps)
        vm[rows, chunk.instance_idx] = chunk.vm
        host[rows] = chunk.host
        vm_mask[rows, chunk.instance_idx] = chunk.vm_mask
        host_mask[rows] = chunk.host_mask
        node_of[rows, chunk.instance_idx] = chunk.node_of
        logs = chunk.logs
        if len(logs):
            line_ids.append(mine(render_lines(sim, logs)))
            is_host = logs.instance < 0
            line_host.append(is_host)
            line_target.append(np.where(is_host, logs.node, logs.instance))
            line_step.append((logs.ts_ms // 1000 - t0) // dt)
            line_case.append(logs.case)
    ids = np.concatenate(line_ids) if line_ids else np.zeros(0, np.int64)
    tmpl = resolve(ids) if resolve is not None else ids
    is_host = np.concatenate(line_host) if line_host else np.zeros(0, bool)
    target = np.concatenate(line_target) if line_target else np.zeros(0, np.int64)
    step = np.concatenate(line_step) if line_step else np.zeros(0, np.int64)
    case = np.concatenate(line_case) if line_case else np.zeros(0, np.int64)
    case_templates = {
        int(c): frozenset(int(t) for t in np.unique(tmpl[case == c]))
        for c in np.unique(case[case >= 0])
    }
    vm_logs = LogStore.build(n_inst, T, target[~is_host], step[~is_host], tmpl[~is_host])
    host_logs = LogStore.build(n_node, T, target[is_host], step[is_host], tmpl[is_host])

    vm_label, vm_cls = _bits_to_class(vm_mask)
    host_label, host_cls = _bits_to_class(host_mask)
    # A node fault shows on every VM of the node; those VM steps teach nothing either way.
    node_fault = np.zeros_like(vm_label, dtype=bool)
    placed = node_of >= 0
    node_fault[placed] = host_label[np.nonzero(placed)[0], node_of[placed]] == 1
    vm_label[node_fault & (vm_label == 0)] = -1

    ts = t0 + dt * np.arange(T, dtype=np.int64)
    inst_names = [f"vm:{n}" for n in sim.fleet.instance_names]
    node_names = [f"host:{n}" for n in sim.fleet.node_names]
    vm_group = SeriesGroup(
        "vm", list(VM_METRIC_NAMES), ts, dt, vm, inst_names, vm_logs, vm_label, vm_cls
    )
    host_group = SeriesGroup(
        "host", list(HOST_METRIC_NAMES), ts, dt, host, node_names, host_logs, host_label, host_cls
    )
    segments = case_segments(sim, node_of, inst_names, node_names, patch_seconds)
    return SimData(
        vm_group, host_group, segments, config, len(ids), list(sim.cases), case_templates
    )


def case_segments(
    sim: Simulator,
    node_of: np.ndarray,
    inst_names: list[str],
    node_names: list[str],
    patch_seconds: int,
) -> list[Segment]:
    """Cases in window-end time: a window ending at e covers [e - patch, e), so it overlaps
    a case [start, end) when start < e < end + patch."""
    t0, dt = int(sim.config.start or 0), sim.config.step_seconds
    out = []
    for c in sim.cases:
        lo, hi = float(c.start + 1), float(c.end + patch_seconds - 1)
        if c.level == "vm":
            targets = frozenset([inst_names[c.instance]])
        else:
            targets = frozenset([node_names[c.node]])
        out.append(Segment(targets, lo, hi, c.kind, c.scenario, c.case_id, {"variant": c.variant}))
        if c.level == "host" and c.kind == "anomaly":
            s0, s1 = max((c.start - t0) // dt, 0), min((c.end - t0) // dt, len(node_of))
            on_node = np.unique(np.nonzero(node_of[s0:s1] == c.node)[1])
            if len(on_node):
                vms = frozenset(inst_names[i] for i in on_node)
                out.append(Segment(vms, lo, hi, "ignore", c.scenario, c.case_id))
    return out


def fleet_config(
    seed: int,
    n_nodes: int,
    hours: float,
    day: int,
    rates: ScenarioRates,
    variant_set: str = "train",
    n_instances: int | None = None,
) -> SimConfig:
    return SimConfig(
        seed=seed,
        n_nodes=n_nodes,
        n_instances=n_instances,
        hours=hours,
        start=START + day * DAY,
        rates=rates,
        variant_set=variant_set,
    )
