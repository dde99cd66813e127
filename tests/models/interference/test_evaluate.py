"""The evaluation command's quick mode: every method, the JSON shape the app reads."""

from __future__ import annotations

import argparse
import json

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
    assert methods == ["telltale", "random_forest", "gradient_boosting", "linear", "lstm", "mean"]
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
