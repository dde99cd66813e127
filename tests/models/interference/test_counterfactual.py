"""What-if placement against the simulator's counterfactuals: moves, truths, figures, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from models.interference.counterfactual import (
    DIRECTION_MIN,
    Move,
    Outcome,
    evaluation_fleet,
    run_moves,
    sample_moves,
    summarise,
    what_if_extra_margin,
)
from models.interference.evaluate import add_arguments, format_table, run
from models.interference.predictor import InterferencePredictor

SMALL = {"nodes": 6, "instances": 48, "hours": 2.0}


@pytest.fixture(scope="module")
def fleet():
    return evaluation_fleet(3, **SMALL)


def _args(*extra: str):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    small = ["--nodes", "6", "--instances", "48", "--hours", "2", "--threads", "1"]
    return parser.parse_args(["--dataset", "sim", "--seed", "3", *small, *extra])


def test_moves_leave_a_node_that_the_instance_ran_on_for_the_whole_window(fleet):
    moves = sample_moves(fleet, 30, window=20, seed=1)
    assert len(moves) == 30
    per = fleet.config.steps_per_block
    for m in moves:
        assert m.source != m.target
        chunk = fleet.simulate_chunk(m.block * per, per)
        col = int(np.searchsorted(chunk.instance_idx, m.instance))
        nodes = chunk.node_of[m.end - 19 : m.end + 1, col]
        assert np.all(nodes == m.source)
    assert sample_moves(fleet, 30, window=20, seed=1) == moves  # reproducible


def test_each_outcome_holds_the_simulators_counterfactual(fleet, trained):
    model = InterferencePredictor.load(trained)
    moves = sample_moves(fleet, 6, window=model.window_steps, seed=2)
    outcomes = run_moves(model, fleet, moves)
    per = fleet.config.steps_per_block
    for o in outcomes:
        m = o.move
        chunk = fleet.simulate_chunk(m.block * per, per)
        [after] = fleet.counterfactual_p(m.block, [{m.instance: m.target}])
        col = int(np.searchsorted(chunk.instance_idx, m.instance))
        rows = slice(m.end - model.window_steps + 1, m.end + 1)
        assert o.moved_after == pytest.approx(float(np.nanmean(after[rows, col])))
        assert o.moved_now == pytest.approx(float(np.nanmean(chunk.p[rows, col])))
        on_target = np.flatnonzero((chunk.node_of[rows] == m.target).any(axis=0))
        assert len(o.existing_now) == len(o.existing_after) == len(on_target)
        assert o.answer.shape == (1 + len(on_target), 3)
        assert np.all(o.answer[:, 1] <= o.answer[:, 0]) and np.all(o.answer[:, 0] <= o.answer[:, 2])
        # Someone joins them: the target's instances are never faster after the move.
        assert np.all(o.existing_after <= o.existing_now + 1e-7)


def _outcome(now: float, after: float, answer: float, in_place: float) -> Outcome:
    return Outcome(
        move=Move(0, 19, 1, 0, 1),
        moved_now=now,
        moved_after=after,
        existing_now=np.array([0.9]),
        existing_after=np.array([0.8]),
        answer=np.array([[answer, answer - 0.05, answer + 0.05], [0.8, 0.75, 0.85]]),
        in_place=np.array([in_place, 0.9]),
    )


def test_a_perfect_answer_scores_zero_and_no_change_scores_the_true_change():
    outcomes = [_outcome(0.95, 0.80, 0.80, 0.95), _outcome(0.70, 0.90, 0.90, 0.70)]
    result = summarise(outcomes)
    rows = {r["method"]: r for r in result["rows"]}
    tt = rows["telltale"]
    assert tt["moved_mae"] == tt["existing_mae"] == tt["change_mae"] == 0.0
    assert tt["direction_accuracy"] == 1.0
    assert tt["moved_coverage"] == tt["existing_coverage"] == 1.0
    assert tt["moved_width"] == pytest.approx(10.0)
    for name in ("no_change", "no_change_true"):
        assert rows[name]["moved_mae"] == pytest.approx(17.5)  # |-15| and |+20| pp
        assert rows[name]["existing_mae"] == pytest.approx(10.0)
        assert rows[name]["direction_accuracy"] is None
    assert result["true_change"]["mean_abs_pp"] == pytest.approx(17.5)
    assert result["true_change"]["share_worse"] == 0.5
    assert result["in_place_mae"] == 0.0
    assert tt["moved_bias"] == 0.0
    assert {k: v["moves"] for k, v in result["by_source"].items()} == {"0.0-0.8": 1, "0.9-1.0": 1}


def test_a_wrong_direction_is_scored_and_small_changes_are_not():
    wrong = _outcome(0.95, 0.80, 0.97, 0.95)  # predicts a gain where the move costs 15 pp
    tiny = _outcome(0.95, 0.95 - DIRECTION_MIN / 2, 0.99, 0.95)  # too small to have a sign
    rows = {r["method"]: r for r in summarise([wrong, tiny])["rows"]}
    assert rows["telltale"]["direction_accuracy"] == 0.0
    assert rows["telltale"]["moved_coverage"] == 0.5
    assert rows["telltale"]["moved_bias"] == pytest.approx(11.0)  # optimistic: +17 and +5 pp


def test_what_if_evaluation_from_the_command_line(trained, tmp_path):
    out = tmp_path / "whatif.json"
    result = run(_args("--what-if", str(trained), "--moves", "8", "--json", str(out)))
    saved = json.loads(out.read_text())
    assert saved["protocol"] == "what-if" and saved["moves"] == 8
    assert [r["method"] for r in saved["rows"]] == ["telltale", "no_change", "no_change_true"]
    for key in ("moved_mae", "existing_mae", "change_mae", "moved_coverage", "moved_width"):
        assert isinstance(saved["rows"][0][key], float)
    table = format_table(result)
    assert "what-if placement on simulated fleet seed 3: 8 moves" in table
    assert "no_change_true" in table


def test_what_if_evaluation_refuses_the_lab_and_a_training_fleet(trained):
    lab = _args("--what-if", str(trained))
    lab.dataset = "lab"
    with pytest.raises(ValueError, match="--dataset sim"):
        run(lab)
    trained_seed = InterferencePredictor.load(trained).meta["train"]["seeds"][0]
    args = _args("--what-if", str(trained))
    args.seed = trained_seed
    with pytest.raises(ValueError, match=f"trained on fleet seed {trained_seed}"):
        run(args)


def test_the_what_if_margin_covers_its_own_moves_per_workload(fleet, trained):
    model = InterferencePredictor.load(trained)
    workloads = sorted({int(a) for a in fleet.fleet.inst_arch[:20]})[:2]
    out = what_if_extra_margin(model, fleet, workloads, coverage=0.9, moves=40, seed=4)
    model.what_if_extra_margin = 0.5  # a margin already in the artefact is not counted in
    assert what_if_extra_margin(model, fleet, workloads, 0.9, 40, 4) == out
    assert model.what_if_extra_margin == 0.5
    assert out["what_if_n"] == 40
    assert out["what_if_extra_margin"] >= 0.0
    assert out["what_if_validation"]["coverage"] >= 0.9
    assert out["what_if_validation"]["coverage"] >= out["what_if_in_place_margin"]["coverage"]
    moved = sample_moves(fleet, 40, model.window_steps, 4, workloads)
    assert {int(fleet.fleet.inst_arch[m.instance]) for m in moved} <= set(workloads)
