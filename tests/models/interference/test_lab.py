"""interference_lab: refusals, the plan, and a very short bounded real run."""

from __future__ import annotations

import argparse
import shutil

import numpy as np
import pandas as pd
import pytest

from models.interference import lab


def _args(tmp_path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    lab.add_arguments(parser)
    return parser.parse_args(["--out", str(tmp_path / "lab"), *extra])


def test_refuses_single_core_hosts_and_too_much_load(monkeypatch):
    with pytest.raises(lab.LabError, match="at least 2"):
        lab.check_host(1, cores=1)
    with pytest.raises(lab.LabError, match="3 busy cores"):
        lab.check_host(2, cores=2)
    monkeypatch.setattr(lab.shutil, "which", lambda _: None)
    with pytest.raises(lab.LabError, match="stress-ng is not installed"):
        lab.check_host(1, cores=4)


def test_refuses_a_plan_that_does_not_fit_the_budget(tmp_path):
    with pytest.raises(lab.LabError, match="do not fit"):
        lab.run(_args(tmp_path, "--duration", "5"), log=lambda _: None)
    with pytest.raises(lab.LabError, match="unknown victims"):
        lab.run(_args(tmp_path, "--victims", "nope"), log=lambda _: None)


def test_plan_brackets_every_victim_with_alone_runs():
    runs = lab.plan(["matrix", "cache"], ["cpu", "io"], [0.5, 1.0])
    assert len(runs) == 2 * (2 + 4)
    assert runs[0].corunner is None and runs[5].corunner is None and runs[6].victim == "cache"
    assert [r.index for r in runs] == list(range(len(runs)))


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng is not installed")
def test_short_real_run_writes_the_dataset_layout(tmp_path):
    from ingest.simulator import load_dataset
    from models.interference.features import windows_from_dataset

    args = _args(
        tmp_path, "--duration", "14", "--victims", "matrix", "--corunners", "cpu",
        "--intensities", "1.0",
    )  # fmt: skip
    summary = lab.run(args, log=lambda _: None)
    assert summary["runs"] == 3 and summary["seconds"] < 30
    data = load_dataset(tmp_path / "lab")
    assert data.vm.shape[1] == 4  # three victim runs and one co-runner
    assert data.vm_metric_names[0] == "vm_cpu_utilization_ratio"
    assert np.nanmax(data.p) <= 1.0
    w, groups = windows_from_dataset(str(tmp_path / "lab"), window=2, stride=2)
    assert "victim:matrix" in groups and "corunner:cpu" in groups
    victims = w.take(~np.isnan(w.p))
    assert len(victims) >= 3 and victims.nbr_count.max() == 1
    assert (tmp_path / "lab" / "lab_runs.csv").read_text().count("\n") == 4
    runs = pd.read_csv(tmp_path / "lab" / "lab_runs.csv")
    assert summary["load1_max"] == pytest.approx(runs["load1_before"].max(), abs=0.01)
