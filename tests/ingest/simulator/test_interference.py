"""The contention model: P is monotone in neighbour pressure, shows in metrics, never leaks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ingest.simulator import (
    ARCHETYPES,
    VM_METRIC_NAMES,
    PlacedInstance,
    performance_ratio,
    predict_p_given_placement,
)
from ingest.simulator.config import RESOURCES

GRID = np.linspace(0.0, 2.0, 41)


@pytest.mark.parametrize("arch", ARCHETYPES, ids=lambda a: a.name)
def test_p_is_monotone_in_pressure_on_each_resource(arch):
    sens = np.array(arch.sensitivity)
    rng = np.random.default_rng(0)
    for r in range(len(RESOURCES)):
        background = rng.uniform(0, 0.8, len(RESOURCES))  # other resources under some load
        pressure = np.tile(background, (len(GRID), 1))
        pressure[:, r] = GRID
        p = performance_ratio(sens, pressure, np.full(len(GRID), 0.8))
        assert np.all((p > 0) & (p <= 1))
        assert np.all(np.diff(p) <= 1e-12), (arch.name, RESOURCES[r])
        if sens[r] > 0:
            assert p[-1] < p[0] - 0.01 * sens[r], (arch.name, RESOURCES[r])
        else:
            np.testing.assert_allclose(p, p[0])  # insensitive: exactly unaffected


def test_what_if_placement_llc_pressure():
    """A cache is slowed by more graph-analytics neighbours (LLC and memory bandwidth
    hogs) and untouched by pure disk pressure, to which it is insensitive."""
    victim = PlacedInstance("kv_cache", vcpus=8, load=0.9)
    hog = PlacedInstance("graph_analytics", vcpus=16, load=1.0)
    ps = [predict_p_given_placement(victim, [hog] * k, "gen2") for k in range(6)]
    assert all(b < a for a, b in itertools.pairwise(ps))
    assert ps[-1] < 0.8
    alone = predict_p_given_placement(victim, [], "gen2")
    disk = [
        predict_p_given_placement(victim, [], "gen2", extra_pressure=[0, 0, 0, 0, q]) for q in GRID
    ]
    np.testing.assert_allclose(disk, alone)
    # Newer hardware has more headroom for the same neighbours.
    assert predict_p_given_placement(victim, [hog] * 3, "gen4") > ps[3]


def test_p_ground_truth_is_in_range_and_varies(busy_day):
    p = busy_day.p[~np.isnan(busy_day.p)]
    assert p.min() >= 0 and p.max() <= 1
    assert np.percentile(p, 10) < 0.85 and np.percentile(p, 90) > 0.9


def test_p_never_appears_in_the_metrics(busy_day):
    """No emitted metric equals P or a linear function of it (|corr| > 0.99), per instance or
    pooled."""
    p = busy_day.p.astype(float)
    for m, name in enumerate(VM_METRIC_NAMES):
        x = busy_day.vm[..., m].astype(float)
        ok = ~np.isnan(p) & ~np.isnan(x)
        if ok.sum() > 100 and np.ptp(x[ok]) > 0:
            assert abs(np.corrcoef(x[ok], p[ok])[0, 1]) < 0.99, name
        for col in range(p.shape[1]):
            sel = ok[:, col]
            if sel.sum() < 100 or np.ptp(x[sel, col]) == 0 or np.std(p[sel, col]) < 1e-3:
                continue
            assert abs(np.corrcoef(x[sel, col], p[sel, col])[0, 1]) < 0.99, (name, col)
        assert not np.allclose(np.nan_to_num(x), np.nan_to_num(p))


def _within_corr(day, metric: str) -> float:
    """Median over instances of corr(metric, P) across time."""
    x, p = day.vm_metric(metric), day.p
    out = []
    for col in range(p.shape[1]):
        ok = ~np.isnan(x[:, col]) & ~np.isnan(p[:, col])
        if ok.sum() > 200 and np.std(p[ok, col]) > 0.02 and np.std(x[ok, col]) > 0:
            out.append(np.corrcoef(x[ok, col], p[ok, col])[0, 1])
    return float(np.median(out))


def test_contention_is_visible_like_on_real_hosts(busy_day):
    """Lower P goes with lower IPC, more LLC misses per instruction and higher latency."""
    assert _within_corr(busy_day, "vm_ipc") > 0.2
    assert _within_corr(busy_day, "vm_request_latency_seconds") < -0.2
    cpu = busy_day.vm_metric("vm_cpu_utilization_ratio")
    per_instr = busy_day.vm_metric("vm_llc_misses_per_second") / (
        busy_day.vm_metric("vm_ipc") * np.maximum(cpu, 1e-3)
    )
    ok = ~np.isnan(busy_day.p) & ~np.isnan(per_instr)
    low, high = (
        busy_day.p[ok] < np.percentile(busy_day.p[ok], 20),
        busy_day.p[ok] > np.percentile(busy_day.p[ok], 80),
    )
    # pooled across workloads; normalise by workload through ranks within each instance
    ranks = np.full_like(per_instr, np.nan)
    for col in range(per_instr.shape[1]):
        sel = ok[:, col]
        if sel.sum() > 10:
            ranks[sel, col] = np.argsort(np.argsort(per_instr[sel, col])) / sel.sum()
    r = ranks[ok]
    assert np.nanmean(r[low]) > np.nanmean(r[high])


def test_noisy_neighbour_lowers_p_in_the_simulation():
    """Injecting a CPU hog and a memory-bandwidth-heavy job next to a victim lowers its P."""
    from ingest.simulator import Simulator

    from .conftest import T0, quiet_config

    base = Simulator(quiet_config())
    busy = Simulator(quiet_config())
    node = 0
    on_node = [i for i in range(busy.fleet.n_instances) if busy.placements.node_at(i, 400) == node]
    for i in on_node[:-1]:
        busy.inject("cpu_hog", T0 + 5400, 1800, 1.0, instance=i)
        busy.inject("ml_training_job", T0 + 5400, 1800, 1.0, instance=i)
    victim = on_node[-1]
    a, b = base.simulate_chunk(360, 120), busy.simulate_chunk(360, 120)
    col = int(np.searchsorted(a.instance_idx, victim))
    assert np.nanmean(b.p[:, col]) < np.nanmean(a.p[:, col])


def test_predict_p_tracks_the_simulated_p():
    """The what-if oracle agrees with the simulated ground truth on average (it ignores
    bursts and noise), and moving neighbours away raises it."""
    from ingest.simulator import Simulator

    from .conftest import quiet_config

    sim = Simulator(quiet_config(hours=2))
    chunk = sim.simulate_chunk(200, 1)
    predicted, simulated = [], []
    for col, inst in enumerate(chunk.instance_idx):
        node = int(chunk.node_of[0, col])
        predicted.append(sim.predict_p(int(inst), node, 200))
        simulated.append(float(chunk.p[0, col]))
        assert sim.predict_p(int(inst), node, 200, neighbours=[]) == pytest.approx(1.0)
        assert sim.predict_p(int(inst), node, 200, neighbours=[]) >= predicted[-1]
    assert np.corrcoef(predicted, simulated)[0, 1] > 0.6
    assert abs(np.mean(predicted) - np.mean(simulated)) < 0.1


def test_a_counterfactual_without_moves_is_the_recorded_p():
    from ingest.simulator import Simulator

    from .conftest import quiet_config

    sim = Simulator(quiet_config(hours=2))
    recorded = sim.simulate_chunk(240, 240).p
    [again] = sim.counterfactual_p(1, [{}])
    np.testing.assert_array_equal(again, recorded)


def test_a_counterfactual_move_slows_the_new_neighbours_and_relieves_the_old_ones():
    """The same loads and noise, one instance elsewhere: only the two nodes change, each in
    the direction contention says, exactly where the instance runs."""
    from ingest.simulator import Simulator

    from .conftest import quiet_config

    sim = Simulator(quiet_config(hours=2))
    chunk = sim.simulate_chunk(240, 240)
    demand = np.nansum(chunk.vm_metric("vm_cpu_utilization_ratio"), axis=0)
    col = int(np.argmax(demand))  # the busiest instance: its move matters
    source = int(chunk.node_of[-1, col])
    target = (source + 1) % sim.fleet.n_nodes
    [after] = sim.counterfactual_p(1, [{int(chunk.instance_idx[col]): target}])
    nodes = chunk.node_of[-1]
    new_nbrs = nodes == target
    old_nbrs = (nodes == source) & (np.arange(len(nodes)) != col)
    elsewhere = ~new_nbrs & ~old_nbrs & (np.arange(len(nodes)) != col)
    assert np.all(after[:, new_nbrs] <= chunk.p[:, new_nbrs])
    assert np.nanmean(after[:, new_nbrs]) < np.nanmean(chunk.p[:, new_nbrs])
    assert np.all(after[:, old_nbrs] >= chunk.p[:, old_nbrs])
    assert np.nanmean(after[:, old_nbrs]) > np.nanmean(chunk.p[:, old_nbrs])
    np.testing.assert_array_equal(after[:, elsewhere], chunk.p[:, elsewhere])
    np.testing.assert_array_equal(np.isnan(after[:, col]), np.isnan(chunk.p[:, col]))
    assert not np.array_equal(after[:, col], chunk.p[:, col])


def test_a_counterfactual_names_what_it_cannot_move():
    from ingest.simulator import Simulator

    from .conftest import quiet_config

    sim = Simulator(quiet_config(hours=2))
    chunk = sim.simulate_chunk(0, 240)
    with pytest.raises(ValueError, match="do not run in block 0"):
        sim.counterfactual_p(0, [{sim.fleet.n_instances + 5: 0}])
    with pytest.raises(ValueError, match="no node"):
        sim.counterfactual_p(0, [{int(chunk.instance_idx[0]): sim.fleet.n_nodes}])
    with pytest.raises(ValueError, match="no block 2"):
        sim.counterfactual_p(2, [{}])
