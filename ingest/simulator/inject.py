"""From catalogue to labeled cases, and from cases to changes in metrics and log lines.

Each scenario draws its cases from its own random stream, so adding or removing a scenario
leaves every other scenario's cases as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.simulator.catalogue import CATALOGUE
from ingest.simulator.config import SECONDS_PER_DAY, SimConfig, rng_for
from ingest.simulator.fleet import Fleet
from ingest.simulator.logs import TEMPLATE_INDEX
from ingest.simulator.placement import Placements
from ingest.simulator.scenarios import Case, Effect, ScenarioSpec, Variant
from ingest.simulator.workloads import ARCHETYPES

MIN_CASE_SECONDS = 120


def _selected(config: SimConfig, spec: ScenarioSpec) -> bool:
    return config.scenarios is None or spec.name in config.scenarios


def _draw(rng: np.random.Generator, variant: Variant, step: int) -> tuple[float, int]:
    intensity = float(rng.uniform(*variant.intensity))
    lo, hi = variant.duration_s
    duration = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return round(intensity, 3), max(step, int(duration // step) * step)


def _random_share(config: SimConfig, spec: ScenarioSpec) -> float:
    """This scenario's share of its kind's random-case rate, per target per day."""
    rates = config.rates
    peers = [
        s
        for s in CATALOGUE
        if s.kind == spec.kind
        and s.level == spec.level
        and s.schedule is None
        and _selected(config, s)
    ]
    total = sum(s.weight for s in peers) or 1.0
    if spec.level == "host":
        base = rates.node_fault_per_node_day if spec.kind == "anomaly" else 0.0
    else:
        base = (
            rates.anomaly_per_instance_day
            if spec.kind == "anomaly"
            else rates.deceptive_per_instance_day
        )
    return base * spec.weight / total


def _eligible(fleet: Fleet, archetypes: tuple[str, ...] | None) -> np.ndarray:
    names = np.array([a.name for a in ARCHETYPES])[fleet.inst_arch]
    return np.isin(names, archetypes or ())


def _running_at(placements: Placements, step: int) -> np.ndarray:
    hit = (placements.seg_start <= step) & (placements.seg_end > step)
    return np.unique(placements.seg_inst[hit])


def plan_cases(
    config: SimConfig, fleet: Fleet, level: str, placements: Placements | None
) -> list[Case]:
    """Random and scheduled cases of one level ("host" before scheduling, "vm" after)."""
    out: list[Case] = []
    t0, dt, n_steps = int(config.start or 0), config.step_seconds, config.n_steps
    horizon = n_steps * dt
    days = horizon / SECONDS_PER_DAY
    for spec in CATALOGUE:
        if spec.level != level or not _selected(config, spec):
            continue
        variants = spec.variants_for(config.variant_set)
        if not variants:
            continue
        rng = rng_for(config.seed, "cases", spec.name)
        if spec.schedule is not None:
            if config.rates.scheduled:
                out += _scheduled(config, fleet, spec, variants, rng, placements)
            continue
        share = _random_share(config, spec)
        targets = fleet.n_nodes if level == "host" else fleet.n_instances
        if spec.rollout:
            targets = len(fleet.service_names) * 20  # per service: each deploy covers all replicas
        count = int(rng.poisson(share * targets * days))
        for _ in range(count):
            variant = variants[int(rng.integers(0, len(variants)))]
            intensity, duration = _draw(rng, variant, dt)
            duration = min(duration, horizon - dt)
            start_step = int(rng.integers(0, max(1, (horizon - duration) // dt)))
            start = t0 + start_step * dt
            if level == "host":
                node = int(rng.integers(0, fleet.n_nodes))
                out.append(_case(spec, variant, node, -1, start, start + duration, intensity))
                continue
            assert placements is not None
            running = _running_at(placements, start_step)
            running = running[_eligible(fleet, variant.archetypes)[running]]
            if len(running) == 0:
                continue
            if spec.rollout:
                out += _rollout(
                    config, fleet, placements, spec, variant, rng, running, start, duration
                )
                continue
            inst = int(running[rng.integers(0, len(running))])
            end = min(start + duration, t0 + int(fleet.inst_depart[inst]) * dt)
            if end - start >= MIN_CASE_SECONDS:
                node = placements.node_at(inst, start_step)
                out.append(_case(spec, variant, node, inst, start, end, intensity))
    return out


def _case(
    spec: ScenarioSpec,
    variant: Variant,
    node: int,
    inst: int,
    start: int,
    end: int,
    intensity: float,
) -> Case:
    return Case(
        case_id=-1,
        kind=spec.kind,
        scenario=spec.name,
        level=spec.level,
        node=node,
        instance=inst,
        start=int(start),
        end=int(end),
        intensity=intensity,
        variant=variant.id,
        split=variant.split,
        context=spec.context,
    )


def _rollout(
    config: SimConfig,
    fleet: Fleet,
    placements: Placements,
    spec: ScenarioSpec,
    variant: Variant,
    rng: np.random.Generator,
    running: np.ndarray,
    start: int,
    duration: int,
) -> list[Case]:
    t0, dt = int(config.start or 0), config.step_seconds
    service = fleet.inst_service[running[rng.integers(0, len(running))]]
    members = running[fleet.inst_service[running] == service]
    gap = int(rng.integers(2, 6)) * 60
    group = int(rng.integers(0, 2**31 - 1))
    intensity = round(float(rng.uniform(*variant.intensity)), 3)
    out = []
    for pos, inst in enumerate(members):
        s = start + pos * gap
        e = min(s + duration, t0 + int(fleet.inst_depart[inst]) * dt, config.end)
        if e - s < MIN_CASE_SECONDS:
            continue
        case = _case(
            spec, variant, placements.node_at(int(inst), (s - t0) // dt), int(inst), s, e, intensity
        )
        case.group, case.group_pos, case.group_size = group, pos, len(members)
        out.append(case)
    return out


def _scheduled(
    config: SimConfig,
    fleet: Fleet,
    spec: ScenarioSpec,
    variants: tuple[Variant, ...],
    rng: np.random.Generator,
    placements: Placements | None,
) -> list[Case]:
    sched = spec.schedule
    assert sched is not None
    t0, dt = int(config.start or 0), config.step_seconds
    period = int(sched.every_hours * 3600)
    p_occur = min(1.0, sched.probability * config.rates.scheduled_scale)
    out: list[Case] = []
    if spec.level == "host":
        targets = np.arange(fleet.n_nodes)
        tz = fleet.cluster_tz_hours[fleet.node_cluster[targets]]
    else:
        targets = np.flatnonzero(_eligible(fleet, spec.archetypes))
        node_cluster = fleet.node_cluster
        tz = np.array(
            [
                fleet.cluster_tz_hours[node_cluster[max(_first_node(placements, i), 0)]]
                for i in targets
            ]
        )
    chosen = rng.random(len(targets)) < sched.fraction
    phase_local = rng.uniform(sched.hours[0] * 3600, sched.hours[1] * 3600, len(targets))
    for target, pick, phase, zone in zip(targets, chosen, phase_local, tz, strict=True):
        if not pick:
            continue
        # First occurrence at or after t0, at the same local time every period.
        first = int(phase - zone * 3600) % period
        k0 = -(-(t0 - first) // period)
        minute = int(first // 60) % (24 * 60)
        when = f"every {sched.every_hours:g} h at {minute // 60:02d}:{minute % 60:02d} UTC"
        for at in range(first + k0 * period, config.end, period):
            at = at - at % dt
            ok = rng.random() < p_occur
            names = [v for v in variants if spec.level == "host" or _arch_ok(fleet, int(target), v)]
            variant = names[int(rng.integers(0, len(names)))] if names else None
            intensity, duration = _draw(rng, variant or variants[0], dt)
            if not ok or variant is None:
                continue
            end = min(at + duration, config.end)
            if spec.level == "host":
                case = _case(spec, variant, int(target), -1, at, end, intensity)
            else:
                assert placements is not None
                step = (at - t0) // dt
                node = placements.node_at(int(target), step)
                end = min(end, t0 + int(fleet.inst_depart[target]) * dt)
                if node < 0 or end - at < MIN_CASE_SECONDS:
                    continue
                case = _case(spec, variant, node, int(target), at, end, intensity)
            case.scheduled = True
            case.context = f"{spec.context}; {when}"
            out.append(case)
    return out


def _arch_ok(fleet: Fleet, inst: int, variant: Variant) -> bool:
    return ARCHETYPES[int(fleet.inst_arch[inst])].name in (variant.archetypes or ())


def _first_node(placements: Placements | None, inst: int) -> int:
    if placements is None:
        return 0
    hit = np.flatnonzero(placements.seg_inst == inst)
    return int(placements.seg_node[hit[0]]) if len(hit) else 0


def number_cases(cases: list[Case], first_id: int = 0) -> list[Case]:
    cases.sort(key=lambda c: (c.start, c.scenario, c.node, c.instance))
    for k, case in enumerate(cases):
        case.case_id = first_id + k
    return cases


# ------------------------------------------------------------------ applying effects
def shape(name: str, u: np.ndarray) -> np.ndarray:
    """Effect profile over the case, ``u`` in [0, 1) is the elapsed fraction."""
    if name == "step":
        return np.ones_like(u)
    if name == "ramp":
        return 0.1 + 0.9 * u
    if name == "spike":
        return np.exp(-4 * u)
    if name == "decay":
        return (1 - u) ** 1.5
    if name == "saw":
        return (u * 4) % 1.0
    if name == "pulse":
        return ((u * 6) % 1.0 < 0.5).astype(float)
    raise ValueError(name)


def apply_effect(
    x: np.ndarray, effect: Effect, intensity: float, s: np.ndarray, minutes: np.ndarray
) -> np.ndarray:
    """The metric ``x`` [rows, ...] with one effect applied; ``s`` and ``minutes`` are per row."""
    extra = (slice(None),) + (None,) * (x.ndim - 1)
    s, minutes = s[extra], minutes[extra]
    if effect.op == "mul":
        return x * np.maximum(1 + effect.mag * intensity * s, 0.0)
    if effect.op == "add":
        return x + effect.mag * intensity * s
    if effect.op == "to":
        return x + (effect.mag - x) * np.clip(s * (0.5 + 0.5 * intensity), 0.0, 1.0)
    if effect.op == "count":
        return x + np.floor(effect.mag * intensity * minutes)
    if effect.op == "bump":
        return x + effect.mag
    raise ValueError(effect.op)


@dataclass(frozen=True)
class PlannedLine:
    ts: float
    template: int
    cue: int  # index into the spec's logs
    seed: int


def plan_case_logs(seed: int, case: Case, spec: ScenarioSpec) -> list[PlannedLine]:
    """Every line a case emits, with its time; drawn from the case's own stream."""
    rng = rng_for(seed, "case-logs", case.scenario, case.start, case.node, case.instance)
    out: list[tuple[float, int, int]] = []
    minutes = (case.end - case.start) / 60
    for k, cue in enumerate(spec.logs):
        tid = TEMPLATE_INDEX[cue.template]
        if cue.phase == "pre":
            out.append((case.start - cue.offset_s + float(rng.uniform(0, 5)), tid, k))
        elif cue.phase == "start":
            out.append((case.start + cue.offset_s + float(rng.uniform(0, 2)), tid, k))
        elif cue.phase == "end":
            out.append((case.end - float(rng.uniform(1, 5)) + cue.offset_s, tid, k))
        else:
            n = max(1, int(rng.poisson(cue.rate_per_min * minutes * (0.5 + 0.5 * case.intensity))))
            times = case.start + rng.uniform(0.02, 1.0, n) * (case.end - case.start)
            out += [(float(t), tid, k) for t in np.sort(times)]
    seeds = rng.integers(0, 2**32, len(out), dtype=np.uint64)
    return [PlannedLine(t, tid, k, int(sd)) for (t, tid, k), sd in zip(out, seeds, strict=True)]
