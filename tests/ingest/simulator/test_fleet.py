"""Fleet structure and the scheduler."""

from __future__ import annotations

import numpy as np

from ingest.simulator import GENERATIONS, SimConfig, Simulator, build_fleet
from ingest.simulator.placement import CPU_OVERCOMMIT, MEM_LIMIT

from .conftest import T0


def test_fleet_shape():
    fleet = build_fleet(SimConfig(seed=1, n_nodes=50, start=T0))
    assert fleet.n_nodes == 50
    assert fleet.n_instances >= 400
    assert len(fleet.cluster_names) >= 2 and len(fleet.rack_names) >= 4
    assert len(set(fleet.node_gen.tolist())) >= 3
    assert len(set(fleet.node_names)) == 50 and len(set(fleet.instance_names)) == fleet.n_instances
    assert len(set(fleet.inst_arch.tolist())) >= 10
    assert np.all(fleet.node_age_days > 0)
    labels = fleet.instance_labels(0, 3)
    assert set(labels) == {"vm", "node", "cluster", "rack", "workload"}


def test_scheduler_respects_capacity_and_moves_things():
    sim = Simulator(
        SimConfig(
            seed=2,
            n_nodes=10,
            hours=48,
            start=T0,
            churn_per_day=0.3,
            migrations_per_instance_day=0.1,
        )
    )
    f, p = sim.fleet, sim.placements
    cap = f.capacity()
    for step in range(0, sim.n_steps, 500):
        live = (p.seg_start <= step) & (p.seg_end > step)
        inst, node = p.seg_inst[live], p.seg_node[live]
        assert len(np.unique(inst)) == len(inst)  # one place at a time
        cpu = np.bincount(node, weights=f.inst_vcpus[inst], minlength=f.n_nodes)
        mem = np.bincount(node, weights=f.inst_mem_gb[inst], minlength=f.n_nodes)
        assert np.all(cpu <= cap["cores"] * CPU_OVERCOMMIT + 1e-9)
        assert np.all(mem <= cap["mem_gb"] * MEM_LIMIT + 1e-9)
        assert np.all(f.node_cluster[node] == f.inst_cluster[inst])  # never across clusters
    assert (f.inst_arrive > 0).sum() > 5  # arrivals
    assert (f.inst_depart < sim.n_steps).sum() > 5  # departures
    moved = np.bincount(p.seg_inst, minlength=f.n_instances) > 1
    assert moved.sum() > 5  # migrations


def test_generation_capacity_ordering():
    cores = [g.cores for g in GENERATIONS]
    assert cores == sorted(cores)
    assert len(GENERATIONS) >= 3
