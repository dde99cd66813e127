"""The scheduler: where each instance runs over time, node outages, and unhealthy-node events.

A discrete-event loop over arrivals, departures, rebalancing migrations and node faults.
Placement is spread-with-anti-affinity (most free capacity first, fewer replicas of the same
service preferred), with vCPU overcommit and no memory overcommit, as in common cloud
schedulers. When a node fault is detected the legacy policy picks an action, the structural
causal model in ``health`` draws what happens, and the scheduler carries it out: reboots
take the node down, redeploys and migrations move instances, escalations crash the node.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ingest.simulator.catalogue import CATALOGUE
from ingest.simulator.config import SECONDS_PER_DAY, SimConfig, rng_for
from ingest.simulator.fleet import Fleet
from ingest.simulator.health import ACTIONS, FAULT_INDEX, legacy_policy, realize_with_details
from ingest.simulator.scenarios import Case
from ingest.simulator.workloads import archetype_table

CPU_OVERCOMMIT = 1.6
MEM_LIMIT = 0.92
# Event priorities within one step: capacity is freed before it is claimed.
_DEPART, _RETURN, _ESCALATE, _FAULT, _RESUME, _ARRIVE, _MIGRATE, _DRAIN = range(8)


@dataclass
class UnhealthyRecord:
    event_id: int
    case_id: int
    step: int
    node: int
    x: dict[str, float]
    action: int
    realized: dict[str, np.ndarray]  # outcome -> value under every action


@dataclass
class Placements:
    seg_inst: np.ndarray
    seg_node: np.ndarray
    seg_start: np.ndarray  # step, inclusive
    seg_end: np.ndarray  # step, exclusive
    down_node: np.ndarray
    down_start: np.ndarray
    down_end: np.ndarray
    down_reason: list[str]
    unhealthy: list[UnhealthyRecord] = field(default_factory=list)

    def block(self, s0: int, s1: int) -> tuple[np.ndarray, np.ndarray]:
        """Instances placed at some step of [s0, s1) and their node per step (-1: not running)."""
        hit = np.flatnonzero((self.seg_start < s1) & (self.seg_end > s0))
        inst_ids = np.unique(self.seg_inst[hit])
        node_of = np.full((s1 - s0, len(inst_ids)), -1, dtype=np.int32)
        cols = np.searchsorted(inst_ids, self.seg_inst[hit])
        for k, col in zip(hit, cols, strict=True):
            lo, hi = max(self.seg_start[k], s0) - s0, min(self.seg_end[k], s1) - s0
            node_of[lo:hi, col] = self.seg_node[k]
        return inst_ids, node_of

    def node_down(self, s0: int, s1: int, n_nodes: int) -> np.ndarray:
        down = np.zeros((s1 - s0, n_nodes), dtype=bool)
        hit = np.flatnonzero((self.down_start < s1) & (self.down_end > s0))
        for k in hit:
            lo, hi = max(self.down_start[k], s0) - s0, min(self.down_end[k], s1) - s0
            down[lo:hi, self.down_node[k]] = True
        return down

    def node_at(self, inst: int, step: int) -> int:
        hit = np.flatnonzero(
            (self.seg_inst == inst) & (self.seg_start <= step) & (self.seg_end > step)
        )
        return int(self.seg_node[hit[0]]) if len(hit) else -1

    def frame(self, fleet: Fleet, config: SimConfig) -> pd.DataFrame:
        t0, dt = int(config.start or 0), config.step_seconds
        return pd.DataFrame(
            {
                "instance": self.seg_inst,
                "vm": [fleet.instance_names[i] for i in self.seg_inst],
                "node_index": self.seg_node,
                "node": [fleet.node_names[n] for n in self.seg_node],
                "start": t0 + self.seg_start * dt,
                "end": t0 + self.seg_end * dt,
            }
        )


class _Scheduler:
    def __init__(self, fleet: Fleet, config: SimConfig):
        self.fleet, self.config = fleet, config
        self.n_steps = config.n_steps
        cap = fleet.capacity()
        self.cap_cpu = cap["cores"] * CPU_OVERCOMMIT
        self.cap_mem = cap["mem_gb"] * MEM_LIMIT
        self.cores, self.mem = cap["cores"], cap["mem_gb"]
        n, n_services = fleet.n_nodes, len(fleet.service_names)
        self.alloc_cpu = np.zeros(n)
        self.alloc_mem = np.zeros(n)
        self.same = np.zeros((n, n_services))
        self.schedulable = np.ones(n, dtype=bool)
        self.members: list[set[int]] = [set() for _ in range(n)]
        self.where = np.full(fleet.n_instances, -1)
        self.since = np.zeros(fleet.n_instances, dtype=np.int64)
        self.segments: list[tuple[int, int, int, int]] = []
        self.down: list[tuple[int, int, int, str]] = []
        self.repairs: list[list[int]] = [[] for _ in range(n)]
        self.events: list[tuple[int, int, int, tuple]] = []
        self.seq = 0
        self.rng = rng_for(config.seed, "scheduler")
        table = archetype_table()
        a = fleet.inst_arch
        self.expected_cpu = table["cpu_base"][a] * fleet.inst_vcpus * fleet.inst_scale * 0.7
        self.expected_mem = fleet.inst_mem_util * fleet.inst_mem_gb
        age_years = fleet.node_age_days / 365.25
        self.prior_repairs = rng_for(config.seed, "repairs").poisson(0.15 * age_years)
        self.unhealthy: list[UnhealthyRecord] = []

    def push(self, step: int, priority: int, payload: tuple) -> None:
        if step < self.n_steps:
            heapq.heappush(self.events, (step, priority, self.seq, payload))
            self.seq += 1

    # ---------------------------------------------------------------- placement primitives
    def place(self, i: int, t: int, exclude: int = -1) -> bool:
        v, m = self.fleet.inst_vcpus[i], self.fleet.inst_mem_gb[i]
        svc = self.fleet.inst_service[i]
        fits = (
            self.schedulable
            & (self.alloc_cpu + v <= self.cap_cpu)
            & (self.alloc_mem + m <= self.cap_mem)
        )
        fits &= self.fleet.node_cluster == self.fleet.inst_cluster[i]
        if exclude >= 0:
            fits[exclude] = False
        if not fits.any():
            return False
        free = np.minimum(
            1 - (self.alloc_cpu + v) / self.cap_cpu, 1 - (self.alloc_mem + m) / self.cap_mem
        )
        score = free - 0.15 * self.same[:, svc] + self.rng.uniform(0, 0.05, len(free))
        node = int(np.argmax(np.where(fits, score, -np.inf)))
        self.where[i], self.since[i] = node, t
        self.alloc_cpu[node] += v
        self.alloc_mem[node] += m
        self.same[node, svc] += 1
        self.members[node].add(i)
        return True

    def remove(self, i: int, t: int) -> int:
        node = int(self.where[i])
        if node < 0:
            return -1
        if t > self.since[i]:
            self.segments.append((i, node, int(self.since[i]), t))
        self.alloc_cpu[node] -= self.fleet.inst_vcpus[i]
        self.alloc_mem[node] -= self.fleet.inst_mem_gb[i]
        self.same[node, self.fleet.inst_service[i]] -= 1
        self.members[node].discard(i)
        self.where[i] = -1
        return node

    def move_all(self, node: int, t: int, pause_steps: int) -> None:
        """Move every instance off ``node``: live (pause 0) or restarted after a pause."""
        for i in sorted(self.members[node]):
            self.remove(i, t)
            if pause_steps == 0:
                if not self.place(i, t, exclude=node):
                    self.push(t + 1, _RESUME, ("resume", i, node))
            else:
                self.push(t + pause_steps, _RESUME, ("resume", i, node))

    def steps(self, minutes: float) -> int:
        return max(1, round(minutes * 60 / self.config.step_seconds))

    # ---------------------------------------------------------------- node faults
    def covariates(
        self, case: Case, node: int, t: int, rng: np.random.Generator
    ) -> dict[str, float]:
        spec = CATALOGUE.get(case.scenario)
        fault = FAULT_INDEX[spec.fault or "host_agent"]
        severity = float(np.clip(0.15 + 0.75 * case.intensity + rng.normal(0, 0.08), 0, 1))
        counting = spec.fault in ("disk", "memory", "nic")
        members = sorted(self.members[node])
        cpu = sum(self.expected_cpu[i] for i in members) / self.cores[node]
        mem = sum(self.expected_mem[i] for i in members) / self.mem[node] + 0.05
        day = SECONDS_PER_DAY / self.config.step_seconds
        recent = sum(1 for r in self.repairs[node] if t - r < 90 * day)
        return {
            "fault": float(fault),
            "severity": round(severity, 4),
            "error_count": float(
                rng.poisson(np.exp(1 + 4 * severity) if counting else 1 + 3 * severity)
            ),
            "node_age_days": round(float(self.fleet.node_age_days[node] + t / day), 1),
            "hw_generation": float(self.fleet.node_gen[node] + 1),
            "instances_hosted": float(len(members)),
            "cpu_utilization": round(float(min(cpu, 1.0)), 4),
            "memory_utilization": round(float(min(mem, 1.0)), 4),
            "recent_repairs": float(self.prior_repairs[node] + recent),
        }

    def fault(self, case: Case, t: int) -> None:
        node = case.node
        # Keyed by what the fault is, not its case number, so other scenarios cannot shift it.
        rng = rng_for(self.config.seed, "unhealthy", case.scenario, case.start, case.node)
        x = self.covariates(case, node, t, rng)
        xa = {k: np.array([v]) for k, v in x.items()}
        action = int(legacy_policy(xa, rng)[0])
        realized, details = realize_with_details(xa, rng)
        self.unhealthy.append(
            UnhealthyRecord(
                len(self.unhealthy),
                case.case_id,
                t,
                node,
                x,
                action,
                {k: v[0] for k, v in realized.items()},
            )
        )
        escalates = bool(details["escalates"][0, action])
        fail = self.steps(float(details["fail_minutes"][0]))
        restart = self.steps(float(details["restart_minutes"][0]))
        repair = self.steps(float(details["repair_hours"][0]) * 60)
        name = ACTIONS[action]
        if name == "reboot_host":
            self.down.append(
                (
                    node,
                    t,
                    min(t + self.steps(float(details["reboot_minutes"][0])), self.n_steps),
                    "reboot",
                )
            )
        elif name in ("redeploy_instances", "live_migrate_then_repair"):
            live = name == "live_migrate_then_repair" and not bool(details["migration_fails"][0])
            self.move_all(node, t, 0 if live else restart)
            self.take_out(node, t, repair)
            escalates = False  # nothing left on the node to crash
        elif name == "mark_out_for_repair":
            self.schedulable[node] = False
            self.push(t + self.steps(12 * 60), _DRAIN, ("drain", node, repair))
        if escalates:
            later = t + self.steps(float(rng.uniform(30, 360)))
            self.push(later, _ESCALATE, ("escalate", node, fail, repair))

    def take_out(self, node: int, t: int, repair_steps: int) -> None:
        self.schedulable[node] = False
        self.push(t + repair_steps, _RETURN, ("return", node))

    def escalate(self, node: int, t: int, fail_steps: int, repair_steps: int) -> None:
        self.down.append((node, t, min(t + fail_steps, self.n_steps), "crash"))
        self.move_all(node, t, fail_steps)
        self.take_out(node, t, fail_steps + repair_steps)

    # ---------------------------------------------------------------- the loop
    def run(self, node_cases: list[Case]) -> Placements:
        f, cfg = self.fleet, self.config
        n_steps = self.n_steps
        first = np.flatnonzero(f.inst_arrive == 0)
        for i in first[np.argsort(-f.inst_vcpus[first], kind="stable")]:
            self.place(int(i), 0)
        for i in np.flatnonzero(f.inst_arrive > 0):
            self.push(int(f.inst_arrive[i]), _ARRIVE, ("arrive", int(i)))
        for i in range(f.n_instances):
            if f.inst_depart[i] < n_steps:
                self.push(int(f.inst_depart[i]), _DEPART, ("depart", i))
        days = n_steps * cfg.step_seconds / SECONDS_PER_DAY
        n_mig = int(self.rng.poisson(cfg.migrations_per_instance_day * f.n_instances * days))
        for i, t in zip(
            self.rng.integers(0, f.n_instances, n_mig),
            self.rng.integers(1, max(n_steps, 2), n_mig),
            strict=True,
        ):
            self.push(int(t), _MIGRATE, ("migrate", int(i)))
        t0, dt = int(cfg.start or 0), cfg.step_seconds
        for case in node_cases:
            s0, s1 = (case.start - t0) // dt, (case.end - t0) // dt
            spec = CATALOGUE.get(case.scenario)
            if spec.node_down:
                self.down.append((case.node, s0, min(s1, n_steps), case.scenario))
            if spec.fault is not None and not case.injected:
                detect = s0 + max(1, int((s1 - s0) * 0.2))
                self.push(detect, _FAULT, ("fault", case))
        departed = np.zeros(f.n_instances, dtype=bool)
        while self.events:
            t, _, _, payload = heapq.heappop(self.events)
            kind = payload[0]
            if kind == "depart":
                departed[payload[1]] = True
                self.remove(payload[1], t)
            elif kind == "arrive":
                self.place(payload[1], t)
            elif kind == "resume":
                i = payload[1]
                if (
                    not departed[i]
                    and self.where[i] < 0
                    and not self.place(i, t, exclude=payload[2])
                ):
                    self.push(t + self.steps(5), _RESUME, payload)
            elif kind == "migrate":
                i = payload[1]
                old = int(self.where[i])
                if old >= 0 and not departed[i]:
                    self.remove(i, t)
                    if not self.place(i, t, exclude=old):
                        self.place(i, t)
            elif kind == "fault":
                self.fault(payload[1], t)
            elif kind == "escalate":
                self.escalate(payload[1], t, payload[2], payload[3])
            elif kind == "drain":
                self.move_all(payload[1], t, 0)
                self.take_out(payload[1], t, payload[2])
            elif kind == "return":
                self.schedulable[payload[1]] = True
                self.repairs[payload[1]].append(t)
        for i in np.flatnonzero(self.where >= 0):
            self.remove(int(i), n_steps)
        seg = np.array(sorted(self.segments, key=lambda s: (s[2], s[0])), dtype=np.int64).reshape(
            -1, 4
        )
        down = sorted(self.down, key=lambda d: (d[1], d[0]))
        return Placements(
            seg_inst=seg[:, 0],
            seg_node=seg[:, 1],
            seg_start=seg[:, 2],
            seg_end=seg[:, 3],
            down_node=np.array([d[0] for d in down], dtype=np.int64),
            down_start=np.array([d[1] for d in down], dtype=np.int64),
            down_end=np.array([d[2] for d in down], dtype=np.int64),
            down_reason=[d[3] for d in down],
            unhealthy=self.unhealthy,
        )


def schedule(fleet: Fleet, config: SimConfig, node_cases: list[Case]) -> Placements:
    return _Scheduler(fleet, config).run(node_cases)
