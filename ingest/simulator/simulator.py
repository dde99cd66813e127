"""The simulator: a fleet, its schedule and its cases, produced chunk by chunk.

``Simulator(config)`` decides everything slow at construction (fleet, placements over the
whole period, node faults and the legacy policy's actions, labeled cases); metrics and logs
are computed on demand per hour block. Any chunking gives the same numbers, so a live
stream, a backfill and a file export of the same config agree exactly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ingest.simulator.catalogue import CATALOGUE
from ingest.simulator.config import SECONDS_PER_DAY, SimConfig, rng_for
from ingest.simulator.engine import Block, compute_block, counterfactual_p
from ingest.simulator.fleet import Fleet, build_fleet
from ingest.simulator.health import ACTIONS, COVARIATES, OUTCOMES, MitigationData, mitigation_frames
from ingest.simulator.inject import PlannedLine, number_cases, plan_case_logs, plan_cases
from ingest.simulator.interference import PlacedInstance, capacity_units, predict_p_given_placement
from ingest.simulator.logs import TEMPLATES, LineContext, LogEvents, render_line, render_message
from ingest.simulator.metrics import HOST_METRIC_NAMES, HOST_METRICS, VM_METRIC_NAMES, VM_METRICS
from ingest.simulator.placement import Placements, schedule
from ingest.simulator.scenarios import Case
from ingest.simulator.workloads import ARCHETYPES, archetype_table, deterministic_load
from ingest.types import LogEntry, SeriesSamples, severity_name

_COUNTER_RATES = {"ecc": 0.5, "smart": 0.02, "flaps": 0.1}  # events per node-year of age per day


@dataclass
class Chunk:
    """Consecutive steps of the whole fleet. Instance columns are the instances that run at
    some step of the chunk (``instance_idx``); NaN where an instance is not running or a
    series does not exist (request metrics of batch jobs)."""

    step0: int
    ts: np.ndarray  # int64 epoch seconds [S]
    instance_idx: np.ndarray  # int32 [I]
    node_of: np.ndarray  # int32 [S, I], -1 when not placed
    vm: np.ndarray  # float32 [S, I, len(VM_METRIC_NAMES)]
    host: np.ndarray  # float32 [S, N, len(HOST_METRIC_NAMES)]
    p: np.ndarray  # float32 [S, I] ground truth, never telemetry
    vm_mask: np.ndarray  # uint64 [S, I], bit k = catalogue scenario k targets this instance
    host_mask: np.ndarray  # uint64 [S, N]
    logs: LogEvents

    @property
    def n_steps(self) -> int:
        return len(self.ts)

    def vm_metric(self, name: str) -> np.ndarray:
        return self.vm[..., VM_METRIC_NAMES.index(name)]

    def host_metric(self, name: str) -> np.ndarray:
        return self.host[..., HOST_METRIC_NAMES.index(name)]


class Simulator:
    def __init__(self, config: SimConfig, fleet: Fleet | None = None):
        self.config = config
        self.fleet = fleet if fleet is not None else build_fleet(config)
        self.n_steps = config.n_steps
        self.table = archetype_table()
        self.capacity = self.fleet.capacity()
        self.capacity5 = capacity_units(self.fleet.node_gen)
        self.ipc_factor = self.capacity["ipc_factor"]
        self.warmup_steps = config.steps_per_block // 2
        self.template_severity = np.array([t.severity for t in TEMPLATES], dtype=np.int8)
        host_cases = number_cases(plan_cases(config, self.fleet, "host", None), 0)
        self.placements: Placements = schedule(self.fleet, config, host_cases)
        vm_cases = number_cases(
            plan_cases(config, self.fleet, "vm", self.placements), len(host_cases)
        )
        self.cases: list[Case] = host_cases + vm_cases
        self._index_cases()
        self._counters = self._counter_events()
        self._blocks: OrderedDict[int, Block] = OrderedDict()
        self._block_ids: dict[int, np.ndarray] = {}
        self._lines: dict[int, list[PlannedLine]] = {}

    # ------------------------------------------------------------------ public API
    @property
    def timestamps(self) -> np.ndarray:
        return int(self.config.start or 0) + self.config.step_seconds * np.arange(
            self.n_steps, dtype=np.int64
        )

    def step_of(self, ts: float) -> int:
        return int((ts - int(self.config.start or 0)) // self.config.step_seconds)

    def simulate_chunk(self, step0: int, n_steps: int) -> Chunk:
        """Steps [step0, step0 + n_steps) (clipped to the period)."""
        step1 = min(step0 + n_steps, self.n_steps)
        if not 0 <= step0 < step1:
            raise ValueError(f"no steps in [{step0}, {step1}) of a {self.n_steps}-step period")
        per = self.config.steps_per_block
        blocks = [self._block(b) for b in range(step0 // per, (step1 - 1) // per + 1)]
        ids = np.unique(np.concatenate([blk.inst_ids for blk in blocks])).astype(np.int32)
        S, N = step1 - step0, self.fleet.n_nodes
        vm = np.full((S, len(ids), len(VM_METRIC_NAMES)), np.nan, dtype=np.float32)
        host = np.empty((S, N, len(HOST_METRIC_NAMES)), dtype=np.float32)
        node_of = np.full((S, len(ids)), -1, dtype=np.int32)
        p = np.full((S, len(ids)), np.nan, dtype=np.float32)
        vm_mask = np.zeros((S, len(ids)), dtype=np.uint64)
        host_mask = np.zeros((S, N), dtype=np.uint64)
        for blk in blocks:
            lo, hi = max(step0, blk.step0), min(step1, blk.step0 + len(blk.node_of))
            src, dst = slice(lo - blk.step0, hi - blk.step0), slice(lo - step0, hi - step0)
            cols = np.searchsorted(ids, blk.inst_ids)
            vm[dst, cols] = blk.vm[src]
            node_of[dst, cols] = blk.node_of[src]
            p[dst, cols] = blk.p[src]
            vm_mask[dst, cols] = blk.vm_mask[src]
            host[dst] = blk.host[src]
            host_mask[dst] = blk.host_mask[src]
        ts = self.timestamps[step0:step1]
        logs = LogEvents.concat([blk.logs for blk in blocks])
        t_lo, t_hi = int(ts[0]) * 1000, (int(ts[-1]) + self.config.step_seconds) * 1000
        logs = logs.take(np.flatnonzero((logs.ts_ms >= t_lo) & (logs.ts_ms < t_hi)))
        return Chunk(step0, ts, ids, node_of, vm, host, p, vm_mask, host_mask, logs)

    def chunks(
        self, chunk_steps: int | None = None, start_step: int = 0, end_step: int | None = None
    ) -> Iterator[Chunk]:
        size = chunk_steps or self.config.steps_per_block
        end = self.n_steps if end_step is None else min(end_step, self.n_steps)
        for s in range(start_step, end, size):
            yield self.simulate_chunk(s, min(size, end - s))

    def run(
        self, start: float | None = None, end: float | None = None, chunk_seconds: int = 3600
    ) -> Iterator[Chunk]:
        """Chunks covering [start, end) in epoch seconds (default: the whole period)."""
        s0 = 0 if start is None else max(self.step_of(start), 0)
        s1 = self.n_steps if end is None else min(self.step_of(end - 1) + 1, self.n_steps)
        step = max(1, chunk_seconds // self.config.step_seconds)
        return self.chunks(step, s0, s1)

    def inject(
        self,
        scenario: str,
        start: int,
        duration_s: int,
        intensity: float = 0.8,
        instance: int | None = None,
        node: int | None = None,
    ) -> Case:
        """Add a labeled case on demand (demos, tests). Call before simulating its time range.
        Injected node faults raise no unhealthy event and move no instances."""
        spec = CATALOGUE.get(scenario)
        t0, dt = int(self.config.start or 0), self.config.step_seconds
        start = max(int(start) - (int(start) - t0) % dt, t0)
        end = min(start + max(dt, int(duration_s) // dt * dt), self.config.end)
        if spec.level == "vm":
            if instance is None:
                raise ValueError(f"{scenario} targets an instance")
            node = self.placements.node_at(instance, (start - t0) // dt)
            if node < 0:
                raise ValueError(f"instance {instance} is not running at {start}")
        elif node is None:
            raise ValueError(f"{scenario} targets a node")
        case = Case(
            case_id=max((c.case_id for c in self.cases), default=-1) + 1,
            kind=spec.kind,
            scenario=scenario,
            level=spec.level,
            node=int(node),
            instance=-1 if instance is None else int(instance),
            start=start,
            end=end,
            intensity=float(intensity),
            variant=f"{scenario}/injected",
            split="injected",
            context=spec.context,
            injected=True,
        )
        if spec.node_down:
            p = self.placements
            s0, s1 = (start - t0) // dt, (end - t0) // dt
            p.down_node, p.down_start = np.append(p.down_node, node), np.append(p.down_start, s0)
            p.down_end = np.append(p.down_end, s1)
            p.down_reason.append(scenario)
        self.cases.append(case)
        self._index_cases()
        self._blocks.clear()
        return case

    def predict_p(
        self, instance: int, node: int, step: int, neighbours: list[int] | None = None
    ) -> float:
        """Ground-truth expected P of ``instance`` if it ran on ``node`` at ``step`` next to
        ``neighbours`` (default: whoever runs there then). For evaluating placement what-ifs;
        loads are the calendar part of each load pattern (no bursts, no noise, no scenarios)."""
        f = self.fleet
        if neighbours is None:
            _, node_of = self.placements.block(step, step + 1)
            ids = self.block_instances_at(step)
            neighbours = [
                int(i) for i, n in zip(ids, node_of[0], strict=True) if n == node and i != instance
            ]
        ts = np.array([float(self.timestamps[step])])

        def placed(i: int) -> PlacedInstance:
            tz = f.cluster_tz_hours[f.inst_cluster[[i]]]
            load = deterministic_load(f.load, np.array([i]), ts, float(self.config.start or 0), tz)[
                0, 0
            ]
            name = ARCHETYPES[int(f.inst_arch[i])].name
            return PlacedInstance(name, int(f.inst_vcpus[i]), float(load), float(f.inst_scale[i]))

        gen = int(f.node_gen[node])
        return predict_p_given_placement(placed(instance), [placed(i) for i in neighbours], gen)

    def counterfactual_p(
        self, block: int, placements: Sequence[Mapping[int, int]]
    ) -> list[np.ndarray]:
        """P [S, I] of hour block ``block`` had instances run on other nodes: one array per
        mapping {instance id: node index}, columns as ``simulate_chunk`` of that block gives
        them. Unlike ``predict_p``, loads, bursts, scenario effects and P noise are the
        block's own, so the answer is what the simulator would have recorded as ``p``."""
        if not 0 <= block < self.n_blocks:
            raise ValueError(f"no block {block} in a {self.n_steps}-step period")
        return counterfactual_p(self, block, placements)

    @property
    def n_blocks(self) -> int:
        """Hour blocks in the period (the last may be shorter)."""
        return -(-self.n_steps // self.config.steps_per_block)

    def block_instances_at(self, step: int) -> np.ndarray:
        return self.placements.block(step, step + 1)[0]

    def cases_frame(self) -> pd.DataFrame:
        rows = []
        for c in sorted(self.cases, key=lambda c: c.case_id):
            row = c.as_dict()
            row["node_name"] = self.fleet.node_names[c.node]
            row["vm"] = self.fleet.instance_names[c.instance] if c.instance >= 0 else ""
            rows.append(row)
        return pd.DataFrame(rows)

    def mitigation(self) -> MitigationData:
        """Unhealthy-node events of this run: observed (X, A, Y) and counterfactuals apart."""
        recs = self.placements.unhealthy
        x = {k: np.array([r.x[k] for r in recs], dtype=float) for k in COVARIATES}
        x["fault"] = x["fault"].astype(np.int64)
        n_actions = len(ACTIONS)
        realized = {
            o: np.array([r.realized[o] for r in recs]).reshape(len(recs), n_actions)
            for o in OUTCOMES
        }
        t0, dt = int(self.config.start or 0), self.config.step_seconds
        extra = {
            "ts": np.array([t0 + r.step * dt for r in recs], dtype=np.int64),
            "node": np.array([self.fleet.node_names[r.node] for r in recs], dtype=object),
            "case_id": np.array([r.case_id for r in recs], dtype=np.int64),
        }
        actions = np.array([r.action for r in recs], dtype=np.int64)
        return mitigation_frames(x, actions, realized, np.arange(len(recs)), extra)

    def iter_series(self, chunk: Chunk) -> Iterator[SeriesSamples]:
        """Samples as Prometheus series (labels include ``__name__``); a migration starts new
        series because the ``node`` label changes."""
        ts_ms = [int(t) * 1000 for t in chunk.ts]
        for col, inst in enumerate(chunk.instance_idx):
            nodes = chunk.node_of[:, col]
            edges = np.flatnonzero(np.diff(nodes)) + 1
            for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(nodes)], strict=True):
                if nodes[lo] < 0:
                    continue
                labels = self.fleet.instance_labels(int(inst), int(nodes[lo]))
                yield from _series(VM_METRIC_NAMES, labels, ts_ms[lo:hi], chunk.vm[lo:hi, col])
        for n in range(self.fleet.n_nodes):
            yield from _series(
                HOST_METRIC_NAMES, self.fleet.node_labels(n), ts_ms, chunk.host[:, n]
            )

    def line_context(self, logs: LogEvents, i: int) -> LineContext:
        inst, node, case_id = int(logs.instance[i]), int(logs.node[i]), int(logs.case[i])
        f = self.fleet
        case = self._case_by_id.get(case_id)
        key = int(logs.seed[i])
        batch = ""
        if case is not None:
            key = (case.group if case.group >= 0 else case.case_id) * 7919 + self.config.seed
            batch = f"{case.group_pos + 1}/{case.group_size}"
        vm = f.instance_names[inst] if inst >= 0 else ""
        return LineContext(
            host=vm or f.node_names[node],
            node=f.node_names[node],
            vm=vm,
            service=f.service_names[f.inst_service[inst]] if inst >= 0 else "hypervisor",
            case_key=key,
            batch=batch,
            vm_names=f.instance_names,
        )

    def render_line(self, logs: LogEvents, i: int) -> str:
        return render_line(
            int(logs.template[i]),
            int(logs.seed[i]),
            logs.ts_ms[i] / 1000,
            float(logs.value[i]),
            self.line_context(logs, i),
        )

    def log_entries(self, logs: LogEvents) -> Iterator[LogEntry]:
        """Rendered lines as ingest ``LogEntry`` rows (what a syslog or OTLP client sends)."""
        for i in range(len(logs)):
            ctx = self.line_context(logs, i)
            t = TEMPLATES[int(logs.template[i])]
            message = render_message(
                t.id, int(logs.seed[i]), logs.ts_ms[i] / 1000, float(logs.value[i]), ctx
            )
            yield LogEntry(
                ts_ns=int(logs.ts_ms[i]) * 1_000_000,
                message=message,
                severity=t.severity,
                severity_text=severity_name(t.severity),
                node=ctx.node,
                instance=ctx.vm or None,
                attributes={"app": t.app},
                source="simulator",
            )

    def metadata(self) -> dict:
        return {
            "config": self.config.as_dict(),
            "start": int(self.config.start or 0),
            "step_seconds": self.config.step_seconds,
            "n_steps": self.n_steps,
            "vm_metrics": [m.as_dict() for m in VM_METRICS],
            "host_metrics": [m.as_dict() for m in HOST_METRICS],
            "vm_labels": ["vm", "node", "cluster", "rack", "workload"],
            "host_labels": ["node", "cluster", "rack"],
            "scenario_bits": list(CATALOGUE.names()),
        }

    # ------------------------------------------------------------------ used by the engine
    def block_steps(self, b: int) -> int:
        per = self.config.steps_per_block
        return max(0, min(per, self.n_steps - b * per))

    def block_instances(self, b: int) -> np.ndarray:
        if b not in self._block_ids:
            per = self.config.steps_per_block
            s0, s1 = b * per, b * per + self.block_steps(b)
            p = self.placements
            hit = (p.seg_start < s1) & (p.seg_end > s0)
            self._block_ids[b] = np.unique(p.seg_inst[hit])
        return self._block_ids[b]

    def case_steps(self, case: Case) -> tuple[int, int]:
        t0, dt = int(self.config.start or 0), self.config.step_seconds
        return (case.start - t0) // dt, (case.end - t0) // dt

    def cases_touching(self, s0: int, s1: int) -> list[Case]:
        hit = (self._c0 < s1) & ((self._c1 > s0) | self._persist)
        return [self.cases[k] for k in np.flatnonzero(hit)]

    def cases_logging(self, t_lo: float, t_hi: float) -> list[Case]:
        hit = (self._log_lo < t_hi) & (self._log_hi > t_lo)
        return [self.cases[k] for k in np.flatnonzero(hit)]

    def case_lines(self, case: Case) -> list[PlannedLine]:
        if case.case_id not in self._lines:
            self._lines[case.case_id] = plan_case_logs(
                self.config.seed, case, CATALOGUE.get(case.scenario)
            )
        return self._lines[case.case_id]

    def counter_background(self, kind: str, s0: int, s1: int) -> np.ndarray:
        base = {
            "ecc": self.fleet.node_ecc0,
            "smart": self.fleet.node_smart0,
            "flaps": self.fleet.node_flaps0,
        }[kind]
        steps = np.arange(s0, s1)
        out = np.empty((s1 - s0, self.fleet.n_nodes))
        for n, times in enumerate(self._counters[kind]):
            out[:, n] = base[n] + np.searchsorted(times, steps, side="right")
        return out

    # ------------------------------------------------------------------ internals
    def _block(self, b: int) -> Block:
        if b in self._blocks:
            self._blocks.move_to_end(b)
            return self._blocks[b]
        blk = compute_block(self, b)
        self._blocks[b] = blk
        if len(self._blocks) > 2:
            self._blocks.popitem(last=False)
        return blk

    def _index_cases(self) -> None:
        self.cases.sort(key=lambda c: c.case_id)
        self._case_by_id = {c.case_id: c for c in self.cases}
        steps = np.array([self.case_steps(c) for c in self.cases], dtype=np.int64).reshape(-1, 2)
        self._c0, self._c1 = steps[:, 0], steps[:, 1]
        self._persist = np.array(
            [
                any(e.op in ("count", "bump") for e in CATALOGUE.get(c.scenario).effects)
                for c in self.cases
            ],
            dtype=bool,
        )
        pre = [
            max((cue.offset_s for cue in CATALOGUE.get(c.scenario).logs), default=0.0)
            for c in self.cases
        ]
        self._log_lo = np.array(
            [c.start - p - 10 for c, p in zip(self.cases, pre, strict=True)], dtype=float
        )
        self._log_hi = np.array([c.end + 10 for c in self.cases], dtype=float)

    def _counter_events(self) -> dict[str, list[np.ndarray]]:
        days = self.n_steps * self.config.step_seconds / SECONDS_PER_DAY
        age = self.fleet.node_age_days / 365.25
        out: dict[str, list[np.ndarray]] = {}
        for kind, rate in _COUNTER_RATES.items():
            rng = rng_for(self.config.seed, "counter", kind)
            per_day = rate * (age if kind != "flaps" else np.ones_like(age))
            counts = rng.poisson(per_day * days)
            out[kind] = [np.sort(rng.integers(0, max(self.n_steps, 1), k)) for k in counts]
        return out


def _series(
    names: tuple[str, ...], labels: dict[str, str], ts_ms: list[int], values: np.ndarray
) -> Iterator[SeriesSamples]:
    for m, name in enumerate(names):
        col = values[:, m]
        keep = ~np.isnan(col)
        if not keep.any():
            continue
        lab = tuple(sorted({**labels, "__name__": name}.items()))
        yield SeriesSamples(
            labels=lab,
            timestamps_ms=[t for t, k in zip(ts_ms, keep, strict=True) if k],
            values=col[keep].astype(float).tolist(),
        )
