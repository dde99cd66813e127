"""Training and test windows from the fleet simulator, with workloads held out strictly.

``simulator_excluding`` builds a simulated fleet in which the excluded archetypes do not
exist at all: their instances are redrawn as other archetypes (with that archetype's memory
profile and load pattern) before scheduling. A model trained on such a fleet has never seen
a held-out workload, neither as a victim nor as a neighbour, which is the strict reading of
"unseen workloads". The simulator is only a data source here: P is the target, the
archetype only decides splits, and neither is ever a model input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ingest.simulator import ARCHETYPES, SimConfig, Simulator, build_fleet
from ingest.simulator.config import rng_for
from ingest.simulator.workloads import sample_load_params
from models.interference.features import Windows, windows_from_simulator

SIM_START = 1736121600  # 2025-01-06 00:00 UTC, the simulator CLI's fixed default


def archetype_ids(names: Sequence[str]) -> list[int]:
    known = {a.name: i for i, a in enumerate(ARCHETYPES)}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown archetypes {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]


def simulator_excluding(config: SimConfig, exclude: Sequence[int] = ()) -> Simulator:
    """A simulator whose fleet contains no instance of the ``exclude`` archetype ids."""
    fleet = build_fleet(config)
    if not len(exclude):
        return Simulator(config, fleet)
    allowed = np.setdiff1d(np.arange(len(ARCHETYPES)), np.asarray(exclude))
    if not len(allowed):
        raise ValueError("cannot exclude every archetype")
    rng = rng_for(config.seed, "interference-holdout")
    redraw = np.isin(fleet.inst_arch, exclude)
    arch = np.where(redraw, rng.choice(allowed, len(redraw)), fleet.inst_arch).astype(np.int32)
    fresh = sample_load_params(rng, arch)
    load = dataclasses.replace(
        fleet.load,
        **{
            f.name: np.where(redraw, getattr(fresh, f.name), getattr(fleet.load, f.name))
            for f in dataclasses.fields(fresh)
        },
    )
    mem_per_vcpu = np.array([ARCHETYPES[a].mem_gb_per_vcpu for a in arch])
    mem_util = np.array([ARCHETYPES[a].mem_util for a in arch])
    fleet = dataclasses.replace(
        fleet,
        inst_arch=arch,
        load=load,
        inst_mem_gb=np.where(redraw, fleet.inst_vcpus * mem_per_vcpu, fleet.inst_mem_gb),
        inst_mem_util=np.where(
            redraw,
            np.clip(mem_util + rng.normal(0, 0.06, len(arch)), 0.2, 0.93),
            fleet.inst_mem_util,
        ),
    )
    return Simulator(config, fleet)


def simulated_windows(
    seeds: Sequence[int],
    *,
    n_nodes: int,
    n_instances: int,
    hours: float,
    window: int,
    stride: int,
    exclude: Sequence[int] = (),
    victims: Sequence[int] | None = None,
    step_seconds: int = 15,
) -> Windows:
    """Windows of one simulated fleet per seed; ``exclude`` removes archetypes from the fleets,
    ``victims`` keeps only windows whose victim has one of these archetypes."""
    parts = []
    for seed in seeds:
        config = SimConfig(
            seed=int(seed),
            n_nodes=n_nodes,
            n_instances=n_instances,
            hours=hours,
            step_seconds=step_seconds,
            start=SIM_START,
        )
        sim = simulator_excluding(config, exclude)
        parts.append(windows_from_simulator(sim, window=window, stride=stride, archetypes=victims))
    return Windows.concat(parts)


def subsample(w: Windows, n: int, seed: int) -> Windows:
    if len(w) <= n:
        return w
    idx = np.sort(np.random.default_rng(seed).choice(len(w), n, replace=False))
    return w.take(idx)
