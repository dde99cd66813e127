"""train(cfg) end to end: fast_dev_run, artefact contents, splits and calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingest.simulator import VM_METRIC_NAMES
from models.interference.calibration import (
    apply_margin,
    conformal_margin,
    interval_metrics,
    serve_lone,
)
from models.interference.data import simulator_excluding
from models.interference.predictor import InterferencePredictor
from models.interference.train import (
    MEMBER_FILES,
    TrainConfig,
    kept_members,
    parse_members,
    split_by_group,
    train,
)


def test_fast_dev_run_writes_a_loadable_artefact(tmp_path, sim_windows):
    fit, val, _ = split_by_group(sim_windows, 2, seed=1)
    cfg = TrainConfig(out_dir=str(tmp_path), fast_dev_run=True, d_model=16, dim_ff=32, threads=1)
    result = train(cfg, data=(fit, val, list(VM_METRIC_NAMES)))
    assert result.n_train == len(fit) and result.n_val == min(len(val), cfg.max_val_windows)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["data_hash"] == result.data_hash and config["architecture"]["d_model"] == 16
    assert set(result.metrics["val_groups"]) == set(np.unique(val.group).tolist())
    model = InterferencePredictor.load(tmp_path)
    out = model.predict_windows(val.take(np.arange(10)))
    assert out.shape == (10, 3) and np.all((out >= 0) & (out <= 1))


def test_each_member_logs_its_epochs_and_its_validation_error(tmp_path, sim_windows, caplog):
    fit, val, _ = split_by_group(sim_windows, 2, seed=1)
    cfg = TrainConfig(
        out_dir=str(tmp_path), epochs=2, lstm_epochs=1, patience=0, d_model=16, dim_ff=32,
        max_train_windows=500, threads=1,
    )  # fmt: skip
    with caplog.at_level("INFO", logger="models.interference.train"):
        result = train(cfg, data=(fit, val, list(VM_METRIC_NAMES)))
    lines = [r.getMessage() for r in caplog.records if r.name == "models.interference.train"]
    assert any(line.startswith("transformer epoch 2/2 done") for line in lines), lines
    assert any(line.startswith("lstm epoch 1/1 done") for line in lines), lines
    members = result.metrics["members"]
    assert sorted(members) == ["lstm", "transformer"]
    assert members["lstm"]["epochs_run"] == 1 and members["transformer"]["epochs_run"] == 2
    # The ensemble is scored as a whole: its error is not one member's.
    assert result.metrics["val_mae_pp"] <= max(m["val_mae_pp"] for m in members.values())
    # ... and the recorded figure is the served model's error on those validation windows.
    assert len(val) <= cfg.max_val_windows  # so training validated on all of them
    served = InterferencePredictor.load(tmp_path).predict_windows(val)[:, 0]
    assert abs(100 * np.abs(served - val.p).mean() - result.metrics["val_mae_pp"]) < 1e-6


def test_members_are_the_transformer_first_then_known_names_once():
    assert parse_members("transformer, lstm") == ("transformer", "lstm")
    assert parse_members(["transformer"]) == ("transformer",)
    for bad in ("", "lstm", "lstm,transformer", "transformer,forest", "transformer,lstm,lstm"):
        with pytest.raises(ValueError, match="members"):
            parse_members(bad)


def test_the_transformer_alone_is_an_ensemble_of_one(tmp_path, sim_windows):
    fit, val, _ = split_by_group(sim_windows, 2, seed=1)
    cfg = TrainConfig(out_dir=str(tmp_path), fast_dev_run=True, members=("transformer",), threads=1)
    train(cfg, data=(fit, val, list(VM_METRIC_NAMES)))
    assert not (tmp_path / "lstm.pt").exists()
    assert list(InterferencePredictor.load(tmp_path).nets) == ["transformer"]
    with pytest.raises(ValueError, match="members"):
        train(
            TrainConfig(out_dir=str(tmp_path), fast_dev_run=True, members=("lstm",)),
            data=(fit, val, list(VM_METRIC_NAMES)),
        )


def test_a_member_far_worse_on_validation_than_the_transformer_is_left_out(tmp_path, sim_windows):
    assert kept_members({"transformer": 4.0, "lstm": 7.9}, 2.0) == ["transformer", "lstm"]
    assert kept_members({"transformer": 4.0, "lstm": 8.1}, 2.0) == ["transformer"]
    assert kept_members({"transformer": 9.0, "lstm": 4.0}, 2.0) == ["transformer", "lstm"]
    fit, val, _ = split_by_group(sim_windows, 2, seed=1)
    # At tolerance 0.5 the LSTM (one epoch) would have to be twice as good as the transformer.
    cfg = TrainConfig(
        out_dir=str(tmp_path), epochs=3, lstm_epochs=1, patience=0, d_model=16, dim_ff=32,
        max_train_windows=500, threads=1, member_tolerance=0.5,
    )  # fmt: skip
    members = train(cfg, data=(fit, val, list(VM_METRIC_NAMES))).metrics["members"]
    assert members["transformer"]["kept"] and not members["lstm"]["kept"]
    assert list(InterferencePredictor.load(tmp_path).nets) == ["transformer"]
    assert not (tmp_path / MEMBER_FILES["lstm"]).exists()


def test_split_holds_out_whole_workloads(sim_windows):
    fit, val, groups = split_by_group(sim_windows, 2, seed=3)
    assert len(groups) == 2
    assert not set(np.unique(fit.group)) & set(groups)
    assert set(np.unique(val.group)) == set(groups)
    with pytest.raises(ValueError, match="workload groups"):
        split_by_group(sim_windows.take(sim_windows.group == sim_windows.group[0]), 2, seed=0)


def test_load_refuses_a_directory_that_is_not_an_artefact(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an interference artefact"):
        InterferencePredictor.load(tmp_path)


def test_held_out_archetypes_do_not_exist_in_training_fleets():
    from ingest.simulator import SimConfig

    sim = simulator_excluding(SimConfig(seed=2, n_nodes=4, hours=1, start=1736121600), [0, 3])
    assert not np.isin(sim.fleet.inst_arch, [0, 3]).any()
    chunk = sim.simulate_chunk(0, 10)
    assert np.isfinite(chunk.p[chunk.node_of >= 0]).all()


def test_conformal_margin_reaches_the_target_coverage():
    rng = np.random.default_rng(0)
    y = rng.uniform(0.3, 0.9, 2000)
    point = y + rng.normal(0, 0.05, len(y))
    pred = np.stack([point, point - 0.01, point + 0.01], axis=1)  # far too narrow
    margin = conformal_margin(pred[:1000], y[:1000], 0.9)
    assert margin > 0
    cov = interval_metrics(apply_margin(pred[1000:], margin), y[1000:])["coverage"]
    assert 0.87 < cov < 0.93


def test_lone_victims_are_served_one_with_the_margin_below_it():
    pred = np.array([[0.8, 0.7, 0.9], [0.86, 0.8, 0.92]])
    lone = np.array([False, True])
    out = serve_lone(pred, lone, 0.05)
    np.testing.assert_array_equal(out[0], pred[0])
    np.testing.assert_allclose(out[1], [1.0, 0.95, 1.0])
    assert pred[1, 0] == 0.86  # the input is left as it was
    np.testing.assert_allclose(serve_lone(pred, lone, -0.02)[1], [1.0, 1.0, 1.0])


def test_training_on_simulated_fleets_calibrates_the_what_if_margin(tmp_path):
    cfg = TrainConfig(
        out_dir=str(tmp_path), n_nodes=4, n_instances=32, hours=2.0, stride_steps=20,
        epochs=1, lstm_epochs=1, patience=0, d_model=16, dim_ff=32, threads=1,
        what_if_moves=20,
    )  # fmt: skip
    train(cfg)
    calibration = json.loads((tmp_path / "calibration.json").read_text())
    assert 0 < calibration["what_if_n"] <= 20
    # Each validation workload is calibrated at 0.99, so unseen ones reach about 0.9.
    assert calibration["workload_coverage"] == cfg.workload_coverage == 0.99
    assert calibration["validation"]["coverage"] >= 0.97
    assert calibration["what_if_validation"]["coverage"] >= cfg.coverage
    model = InterferencePredictor.load(tmp_path)
    assert model.what_if_extra_margin == calibration["what_if_extra_margin"] >= 0.0
