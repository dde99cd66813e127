"""Export, load, and the streaming helpers the Django side uses."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.simulator import (
    HOST_METRIC_NAMES,
    VM_METRIC_NAMES,
    ScenarioRates,
    SimConfig,
    Simulator,
    export_dataset,
    load_dataset,
)
from ingest.simulator.__main__ import main
from ingest.types import LogEntry, SeriesSamples

from .conftest import T0

CFG = SimConfig(
    seed=9, n_nodes=4, hours=3, start=T0, rates=ScenarioRates(1.0, 2.0, 1.0, scheduled=True)
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    began = time.perf_counter()
    summary = export_dataset(CFG, out, log_text=True, mitigation_history=200)
    return out, summary, time.perf_counter() - began


def test_layout(exported):
    out, summary, seconds = exported
    assert seconds < 10
    for name in (
        "README.md", "fleet.json", "metrics_instances.npz", "metrics_nodes.npz", "logs.npz",
        "log_templates.json", "logs.txt.gz", "placements.csv", "labels/cases.csv",
        "labels/interference_p.npz", "labels/scenario_mask.npz", "labels/log_cases.npz",
        "mitigation/events.csv", "mitigation/counterfactuals.csv",
        "mitigation/history_events.csv", "mitigation/history_counterfactuals.csv",
    ):  # fmt: skip
        assert (out / name).is_file(), name
    assert summary.steps == CFG.n_steps and summary.log_events > 1000
    meta = json.loads((out / "fleet.json").read_text())
    assert [m["name"] for m in meta["vm_metrics"]] == list(VM_METRIC_NAMES)
    assert "interference" not in (out / "metrics_instances.npz").read_bytes()[:4096].decode(
        "latin1"
    )
    with np.load(out / "logs.npz") as logs:
        assert "case" not in logs.files  # which case printed a line is ground truth
    with gzip.open(out / "logs.txt.gz", "rt") as fh:
        lines = fh.read().splitlines()
    assert len(lines) == summary.log_events


def test_round_trip(exported):
    out, _, _ = exported
    data = load_dataset(out)
    sim = Simulator(CFG)
    whole = sim.simulate_chunk(0, sim.n_steps)
    np.testing.assert_array_equal(data.vm[:, whole.instance_idx], whole.vm)
    np.testing.assert_array_equal(data.host, whole.host)
    np.testing.assert_array_equal(data.p[:, whole.instance_idx], whole.p)
    np.testing.assert_array_equal(data.vm_mask[:, whole.instance_idx], whole.vm_mask)
    np.testing.assert_array_equal(data.logs.template, whole.logs.template)
    np.testing.assert_array_equal(data.logs.case, whole.logs.case)
    np.testing.assert_array_equal(data.ts, sim.timestamps)
    assert data.vm_metric_names == list(VM_METRIC_NAMES)
    assert data.host_metric_names == list(HOST_METRIC_NAMES)
    assert data.instance_names == sim.fleet.instance_names
    assert len(data.cases) == len(sim.cases)
    assert list(data.cases["scenario"]) == [c.scenario for c in sim.cases]
    assert data.counterfactuals is None and data.history_counterfactuals is None
    assert data.history_events is not None and len(data.history_events) == 200
    full = load_dataset(out, include_counterfactuals=True)
    assert len(full.counterfactuals) == len(full.mitigation_events)
    assert not any(c.startswith(("y_", "mu_")) for c in data.mitigation_events.columns)


def test_cli(tmp_path: Path, capsys):
    assert (
        main(["--export", str(tmp_path / "cli"), "--nodes", "2", "--hours", "1", "--seed", "3"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["nodes"] == 2 and report["steps"] == 240
    assert (tmp_path / "cli" / "README.md").is_file()


def test_streaming_helpers():
    sim = Simulator(CFG)
    chunk = next(sim.run(T0 + 3600, T0 + 3600 + 600))
    assert chunk.ts[0] == T0 + 3600 and chunk.n_steps == 40
    series = list(sim.iter_series(chunk))
    assert all(isinstance(s, SeriesSamples) for s in series)
    names = {s.metric for s in series}
    assert "vm_cpu_utilization_ratio" in names and "host_load1" in names
    assert not any("interference" in n or n == "p" for n in names)
    vm_series = next(s for s in series if s.metric == "vm_ipc")
    assert {k for k, _ in vm_series.labels} == {
        "__name__",
        "vm",
        "node",
        "cluster",
        "rack",
        "workload",
    }
    assert all(not np.isnan(v) for s in series for v in s.values)
    entries = list(sim.log_entries(chunk.logs.take(np.arange(50))))
    assert all(isinstance(e, LogEntry) and e.message and e.node for e in entries)
    assert entries[0].ts_ns // 1_000_000_000 >= T0 + 3600
    assert sim.metadata()["scenario_bits"][0] == "cpu_hog"


def test_inject_validates_targets():
    sim = Simulator(CFG)
    with pytest.raises(ValueError):
        sim.inject("cpu_hog", T0, 600, node=0)
    with pytest.raises(ValueError):
        sim.inject("ecc_memory_errors", T0, 600, instance=0)
    case = sim.inject("ecc_memory_errors", T0 + 60, 600, node=1)
    assert case.injected and case.case_id == max(c.case_id for c in sim.cases)
