"""Training artefacts round-trip; the evaluation has the agreed JSON shape."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from models.mitigation import evaluate
from models.mitigation.data import OUTCOMES, data_hash
from models.mitigation.engine import EngineConfig
from models.mitigation.policy import CapacityRules, PolicyConfig
from models.mitigation.train import TrainConfig, load, load_splits, train

from .conftest import SMALL


@pytest.fixture(scope="module")
def artefact(tmp_path_factory):
    out = tmp_path_factory.mktemp("mitigation-model")
    cfg = TrainConfig(
        n_events=1500, seed=2000, val_events=600,
        engine=EngineConfig(**SMALL),
        policy=PolicyConfig(rules=CapacityRules(max_out_for_repair_per_cluster=4)),
        out_dir=str(out),
    )  # fmt: skip
    return train(cfg), out


def test_artefact_is_self_contained_and_loads_back(artefact, probe):
    result, out = artefact
    assert {p.name for p in out.iterdir()} == {
        "engine.joblib", "config.json", "policy.json", "metrics.json",
    }  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data_hash"] == result.data_hash and len(result.data_hash) == 16
    assert metrics["n_train"] == 1500 and metrics["n_validation"] == 600
    assert metrics["tuning"]["chosen"] in metrics["tuning"]["candidates"]
    loaded = load(out)
    assert loaded.policy_config == result.policy_config
    assert loaded.policy_config.rules.max_out_for_repair_per_cluster == 4
    assert loaded.config.engine == result.config.engine
    events, _ = probe
    a = result.policy().recommend(events.iloc[0].to_dict(), legacy_action="observe")
    b = loaded.policy().recommend(events.iloc[0].to_dict(), legacy_action="observe")
    assert a == b


def test_same_data_same_hash(artefact):
    result, _ = artefact
    cfg = TrainConfig(n_events=1500, seed=2000, val_events=600)
    train_frame = load_splits(cfg).train
    cols = (*cfg.engine.covariates, "action", *OUTCOMES)
    assert data_hash(train_frame, cols) == result.data_hash
    changed = train_frame.copy()
    changed.loc[changed.index[0], "severity"] += 0.01
    assert data_hash(changed, cols) != result.data_hash


def _args(**over) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    argv = ["--dataset", "sim", "--quick", "--train-events", "1500", "--val-events", "600",
            "--test-events", "800", "--trees", "40", "--seed", "11"]  # fmt: skip
    args = parser.parse_args(argv)
    for k, v in over.items():
        setattr(args, k, v)
    return args


def test_evaluate_json_shape(tmp_path):
    result = evaluate.run(_args(repeats=2))
    assert result["dataset"] == "sim"
    names = [r["policy"] for r in result["rows"]]
    assert {"telltale", "legacy", "oracle", "naive_regression"} <= set(names)
    assert {f"always_{a}" for a in EngineConfig().actions} <= set(names)
    keys = {"policy", "mean_downtime", "interruption_rate", "capacity_cost", "regret",
            "fallback_share", "override_share", "ope_estimate", "ope_error"}  # fmt: skip
    for row in result["rows"]:
        assert keys <= set(row)
    rows = {r["policy"]: r for r in result["rows"]}
    assert rows["oracle"]["regret"] == pytest.approx(0.0)
    assert rows["legacy"]["downtime_reduction"] == pytest.approx(0.0)
    assert rows["oracle"]["mean_downtime"] < rows["legacy"]["mean_downtime"]
    assert 0 <= rows["telltale"]["fallback_share"] <= 1
    assert rows["telltale_capacity_limits"]["override_share"] > 0
    for r in result["rows"]:
        assert r["ope_error"] == pytest.approx(r["ope_estimate"] - r["mean_downtime"])
    assert set(result["targets"]) == {"downtime_reduction", "regret_share",
                                      "interruption_reduction"}  # fmt: skip
    assert result["repeats"]["seeds"] == [11, 12]
    assert 0 <= result["repeats"]["ope"]["telltale"]["coverage_95"] <= 1
    json.dumps(result)  # plain JSON types only
    table = evaluate.format_table(result)
    assert "telltale" in table and "target downtime_reduction" in table


def test_evaluate_refuses_a_test_seed_used_in_training():
    with pytest.raises(ValueError, match="must differ"):
        evaluate.run(_args(seed=1000))
    with pytest.raises(ValueError, match="must differ"):
        evaluate.run(_args(seed=1001))


def test_evaluate_history_csv_is_off_policy_only(tmp_path):
    from models.mitigation.data import simulated_history

    events, _ = simulated_history(2500, seed=21)
    events.loc[0, "severity"] = 7.0  # one bad row, reported and skipped
    path = tmp_path / "history.csv"
    events.to_csv(path, index=False)
    args = _args(dataset="history", path=str(path))
    result = evaluate.run(args)
    rows = {r["policy"]: r for r in result["rows"]}
    assert "oracle" not in rows
    assert rows["telltale"]["mean_downtime"] is None and rows["telltale"]["ope_error"] is None
    assert np.isfinite(rows["telltale"]["ope_estimate"])
    assert result["targets"] is None
    assert any("1 rows rejected" in n for n in result["notes"])
