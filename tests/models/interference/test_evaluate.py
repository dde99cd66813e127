"""The evaluation command's quick mode: every method, the JSON shape the app reads."""

from __future__ import annotations

import argparse
import json

import pytest

from models.interference.evaluate import add_arguments, format_table, run


def test_quick_sim_evaluation_writes_rows_for_every_method(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "result.json"
    # A fleet smaller than --quick's: this test checks the protocol and the JSON, not figures.
    small = ["--nodes", "6", "--instances", "48", "--hours", "3", "--threads", "1"]
    args = parser.parse_args(
        ["--dataset", "sim", "--quick", "--partitions", "1", "--seed", "3", "--json", str(out),
         *small]
    )  # fmt: skip
    result = run(args, log=lambda _: None)
    saved = json.loads(out.read_text())
    assert saved["dataset"] == "sim"
    methods = [r["method"] for r in saved["rows"]]
    assert methods == ["telltale", "random_forest", "gradient_boosting", "linear", "lstm", "mean",
                       "no_interference"]  # fmt: skip
    tt = saved["rows"][0]
    for key in ("mae", "mae_std", "mse", "coverage", "interval_width"):
        assert isinstance(tt[key], float)
    assert saved["rows"][1]["coverage"] is None
    assert sorted(tt["member_mae"]) == ["lstm", "transformer"]  # each member alone, reported
    assert "each member alone" in format_table(result)
    rows = {r["method"]: r["mae"] for r in saved["rows"]}
    word = "lower" if rows["telltale"] < rows["random_forest"] else "higher"
    assert f"% {word} than the random forest's" in format_table(result)
    part = saved["partitions"][0]
    assert not set(part["test_workloads"]) & set(part["val_workloads"])
    assert part["train_seed"] != 3
    assert "telltale" in format_table(result) and "random_forest" in format_table(result)


def test_model_seed_changes_the_model_not_the_fleets_or_partitions():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    small = ["--nodes", "6", "--instances", "48", "--hours", "3", "--threads", "1"]
    base = ["--dataset", "sim", "--quick", "--partitions", "1", "--seed", "3", *small]
    results = [
        run(
            parser.parse_args([*base, "--methods", "telltale", "--model-seed", m]),
            log=lambda _: None,
        )
        for m in ("0", "5")
    ]
    parts = [r["partitions"][0] for r in results]
    for key in ("test_workloads", "val_workloads", "train_seed", "n_fit", "n_test"):
        assert parts[0][key] == parts[1][key]
    assert [r["protocol"]["model_seed"] for r in results] == [0, 5]
    assert parts[0]["rows"]["telltale"]["mae"] != parts[1]["rows"]["telltale"]["mae"]


def test_members_are_checked_before_anything_is_simulated():
    import pytest

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for bad in ("lstm", "lstm,transformer", "transformer,forest"):
        args = parser.parse_args(["--dataset", "sim", "--quick", "--members", bad])
        with pytest.raises(SystemExit, match="--members"):
            run(args, log=lambda _: None)


def test_member_figures_average_over_the_partitions_that_kept_the_member():
    from models.interference.evaluate import _summarise

    def part(mae, members):
        row = {"mae": mae, "mse": 1.0, "seconds": 1.0, "coverage": 0.9, "interval_width": 20.0}
        return {"rows": {"telltale": {**row, "member_mae": members}}}

    parts = [
        part(4.0, {"transformer": 4.2, "lstm": 4.4}),
        part(6.0, {"transformer": 6.0}),  # the gate left the LSTM out here
    ]
    (row,) = _summarise(parts, ["telltale"])
    assert row["mae"] == 5.0
    assert row["member_mae"] == {"transformer": 5.1, "lstm": 4.4}


def _synthetic_lab(path, n_steps: int = 4) -> None:
    """A lab dataset (interference_lab's layout) of three victims measured on two metrics."""
    import numpy as np

    from ingest.simulator import VM_METRIC_NAMES
    from models.interference.lab import plan
    from models.interference.lab_writer import write_dataset

    rng = np.random.default_rng(0)
    cpu = VM_METRIC_NAMES.index("vm_cpu_utilization_ratio")
    mem = VM_METRIC_NAMES.index("vm_memory_utilization_ratio")

    def sample(level: float) -> np.ndarray:
        m = np.full((n_steps, len(VM_METRIC_NAMES)), np.nan, dtype=np.float32)
        m[:, cpu] = level + rng.normal(0, 0.01, n_steps)
        m[:, mem] = 0.2
        return m

    results = []
    for lab_run in plan(["matrix", "cache", "qsort"], ["cpu", "io"], [0.5, 1.0]):
        slowed = 0.0 if lab_run.corunner is None else 0.3 * lab_run.intensity
        results.append(
            {
                "run": lab_run,
                "rate": 100.0 * (1 - slowed),
                "victim": sample(0.9 - slowed),
                "co": sample(lab_run.intensity),
                "host": np.full((n_steps, 1), np.nan, dtype=np.float32),
                "load1": 0.5,
            }
        )
    capacity = {"cores": 2.0, "mem_gb": 16.0, "llc_mb": 8.0, "membw": 2e10, "net": 1.25e8,
                "disk": 1e8}  # fmt: skip
    write_dataset(path, results, capacity, step=1.0, n_steps=n_steps, workers=1)


def test_transfer_protocol_trains_on_the_simulator_only_and_scores_each_lab_victim(tmp_path):
    lab = tmp_path / "lab"
    _synthetic_lab(lab)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    small = ["--nodes", "6", "--instances", "48", "--hours", "3", "--threads", "1"]
    args = parser.parse_args(
        ["--dataset", "lab", "--path", str(lab), "--train-on", "sim", "--quick",
         "--methods", "telltale,random_forest,mean,no_interference", "--keep",
         str(tmp_path / "kept"), *small]
    )  # fmt: skip
    result = run(args, log=lambda _: None)
    # The simulated training windows lack what the lab cannot measure, as the lab's do.
    from models.interference.features import TOKEN_STATS
    from models.interference.predictor import InterferencePredictor

    scaler = InterferencePredictor.load(tmp_path / "kept" / "sim").scaler
    missing = dict(
        zip(scaler.metric_names, scaler.token_mean[:, TOKEN_STATS.index("v_missing")], strict=True)
    )
    assert missing["vm_ipc"] == 1.0 and missing["vm_cpu_utilization_ratio"] == 0.0
    protocol, (part,) = result["protocol"], result["partitions"]
    assert protocol["metrics_measured"] == [
        "vm_cpu_utilization_ratio",
        "vm_memory_utilization_ratio",
    ]
    assert "simulated fleet" in protocol["training"]
    assert part["test_workloads"] == ["victim:cache", "victim:matrix", "victim:qsort"]
    assert part["n_test"] == 3 * (2 + 2 * 2)  # every lab victim run, none used for fitting
    rows = {r["method"]: r for r in result["rows"]}
    assert sorted(rows["telltale"]["by_workload"]) == part["test_workloads"]
    # Each victim: two alone runs (P = 1) and four slowed by 0.15 or 0.3: 15 pp from P = 1.
    assert rows["no_interference"]["mae"] == pytest.approx(15.0, abs=0.01)
    assert rows["no_interference"]["by_workload"]["victim:qsort"] == pytest.approx(15.0, abs=0.01)
    assert "MAE pp per workload" in format_table(result)


def test_blanked_metrics_look_as_a_host_that_does_not_measure_them():
    import numpy as np

    from models.interference.evaluate import blank_metrics, measured_metrics
    from models.interference.features import Windows

    full = np.ones((1, 2, 3), dtype=np.float32)
    w = Windows(
        victim=full.copy(), valid=np.ones((1, 2), bool), nbr_mean=full.copy(),
        nbr_max=full.copy(), nbr_sum=full.copy(), nbr_count=np.ones((1, 2), np.float32),
        capacity=np.ones((1, 6), np.float32), p=np.ones(1, np.float32),
        group=np.zeros(1, np.int32), start=np.zeros(1, np.int64),
    )  # fmt: skip
    keep = np.array([True, False, True])
    out = blank_metrics(w, keep)
    assert np.isnan(out.victim[..., 1]).all()
    for name in ("nbr_mean", "nbr_max", "nbr_sum"):  # as aggregate() leaves an unreported one
        assert (getattr(out, name)[..., 1] == 0).all()
    for name in ("victim", "nbr_mean", "nbr_max", "nbr_sum"):
        assert (getattr(out, name)[..., [0, 2]] == 1).all()
    assert (w.victim == 1).all()  # the input is left as it was
    assert measured_metrics(out).tolist() == [True, False, True]


def test_train_on_applies_to_the_lab_only():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit, match="--train-on applies to --dataset lab"):
        run(parser.parse_args(["--dataset", "sim", "--train-on", "sim"]), log=lambda _: None)
