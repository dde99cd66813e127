"""Same config and seed, same data; any chunking, same data; another seed, another fleet."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ingest.simulator import ScenarioRates, SimConfig, Simulator, build_fleet, export_dataset

from .conftest import T0

CFG = SimConfig(
    seed=7, n_nodes=5, hours=3, start=T0, rates=ScenarioRates(1.0, 1.0, 1.0, scheduled=True)
)


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.instance_idx, b.instance_idx)
    np.testing.assert_array_equal(a.node_of, b.node_of)
    np.testing.assert_array_equal(a.vm, b.vm)
    np.testing.assert_array_equal(a.host, b.host)
    np.testing.assert_array_equal(a.p, b.p)
    np.testing.assert_array_equal(a.vm_mask, b.vm_mask)
    for field in a.logs.FIELDS:
        np.testing.assert_array_equal(getattr(a.logs, field), getattr(b.logs, field))


def test_same_seed_same_everything():
    a, b = Simulator(CFG), Simulator(CFG)
    assert [c.as_dict() for c in a.cases] == [c.as_dict() for c in b.cases]
    _same(a.simulate_chunk(0, a.n_steps), b.simulate_chunk(0, b.n_steps))
    assert a.mitigation().events.equals(b.mitigation().events)


def test_chunking_does_not_change_the_data():
    """A live stream in odd-sized chunks, computed out of order, equals one batch run."""
    whole = Simulator(CFG).simulate_chunk(0, CFG.n_steps)
    sim = Simulator(CFG)
    sizes = [37, 200, 1, 311]
    parts, s = [], 0
    while s < CFG.n_steps:
        n = sizes[len(parts) % len(sizes)]
        parts.append(sim.simulate_chunk(s, n))
        s += n
    late_first = Simulator(CFG)
    late_first.simulate_chunk(600, 50)  # compute a later block before the earlier ones
    again = late_first.simulate_chunk(0, CFG.n_steps)
    _same(whole, again)
    for part in parts:
        rows = slice(part.step0, part.step0 + part.n_steps)
        cols = np.searchsorted(whole.instance_idx, part.instance_idx)
        np.testing.assert_array_equal(whole.vm[rows][:, cols], part.vm)
        np.testing.assert_array_equal(whole.host[rows], part.host)
        np.testing.assert_array_equal(whole.p[rows][:, cols], part.p)
    logs = [p.logs.ts_ms for p in parts]
    np.testing.assert_array_equal(np.concatenate(logs), whole.logs.ts_ms)


def test_noise_is_continuous_across_hour_blocks():
    day = Simulator(
        SimConfig(seed=1, n_nodes=3, hours=6, start=T0, rates=ScenarioRates(0, 0, 0, False))
    )
    chunk = day.simulate_chunk(0, day.n_steps)
    p = chunk.p[:, ~np.isnan(chunk.p).any(axis=0)]
    jumps = np.abs(np.diff(p, axis=0))
    boundary = jumps[[239, 479, 719, 959, 1199]].mean()
    assert boundary < 3 * jumps.mean()


def test_different_seeds_give_different_fleets():
    a = build_fleet(SimConfig(seed=1, n_nodes=20, start=T0))
    b = build_fleet(SimConfig(seed=2, n_nodes=20, start=T0))
    assert a.instance_names != b.instance_names
    assert not np.array_equal(a.node_gen, b.node_gen) or not np.array_equal(
        a.inst_arch, b.inst_arch
    )


def test_exports_are_byte_identical(tmp_path: Path):
    small = SimConfig(seed=4, n_nodes=3, hours=2, start=T0)
    export_dataset(small, tmp_path / "a", log_text=True, mitigation_history=50)
    export_dataset(small, tmp_path / "b", log_text=True, mitigation_history=50)

    def digest(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_a_new_scenario_stream_leaves_others_alone():
    """Restricting the catalogue changes nothing about the scenarios that remain."""
    full = Simulator(CFG)
    only = Simulator(SimConfig(**{**CFG.__dict__, "scenarios": ("scheduled_backup", "cpu_hog")}))

    def key(c):
        return (c.scenario, c.start, c.end, c.node, c.instance, c.intensity)

    kept = {key(c) for c in full.cases if c.scenario == "scheduled_backup"}
    assert kept == {key(c) for c in only.cases if c.scenario == "scheduled_backup"}
