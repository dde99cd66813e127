"""The evaluation CLI on tiny slices of every dataset format.

Slices are cut from ../shared/datasets into a temporary folder with the same layout and
passed with --path (which is how the command covers other machines or files of the same
dataset); the tests skip when the shared datasets are absent.
"""

import argparse
import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest

from models.anomaly import evaluate
from models.anomaly.datasets import dataset_root, load_array_pickle

ROOT = dataset_root()


def _needs(folder: str):
    return pytest.mark.skipif(
        not (ROOT / folder).exists(),
        reason=f"shared dataset {ROOT / folder} is absent (set TELLTALE_DATASETS)",
    )


def _run(tmp_path, dataset, path=None, **kw):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    out = tmp_path / f"{dataset}.json"
    argv = ["--dataset", dataset, "--quick", "--threads", "1", "--json", str(out)]
    if path is not None:
        argv += ["--path", str(path)]
    for k, v in kw.items():
        argv += [f"--{k}", str(v)]
    args = parser.parse_args(argv)
    result = evaluate.run(args)
    out.write_text(json.dumps(result, default=float))
    table = evaluate.format_table(result)
    loaded = json.loads(out.read_text())
    assert loaded["dataset"] == dataset
    methods = [r["method"] for r in loaded["rows"]]
    assert methods[0] == "telltale" and len(methods) >= 2
    for row in loaded["rows"]:
        for key in evaluate.ROW_KEYS:
            assert key in row
        for key in ("precision", "recall", "f1", "pa_f1", "event_recall"):
            assert row[key] is None or 0.0 <= row[key] <= 1.0
    assert "telltale" in table and loaded["main_metric"] in table
    return loaded


def _dump(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(np.asarray(array), fh)


@_needs("SMD")
def test_smd_slice(tmp_path):
    src = ROOT / "SMD" / "processed"
    dst = tmp_path / "SMD" / "processed"
    _dump(dst / "m_train.pkl", load_array_pickle(src / "machine-2-1_train.pkl")[:1500])
    _dump(dst / "m_test.pkl", load_array_pickle(src / "machine-2-1_test.pkl")[6300:7100])
    _dump(
        dst / "m_test_label.pkl", load_array_pickle(src / "machine-2-1_test_label.pkl")[6300:7100]
    )
    result = _run(tmp_path, "smd", tmp_path / "SMD")
    assert [s["name"] for s in result["splits"]] == ["m"]
    assert result["rows"][0]["deceptive_fpr"] is None and result["rows"][0]["nab_score"] is None


@_needs("ASD")
def test_asd_slice(tmp_path):
    src = ROOT / "ASD" / "data" / "processed"
    dst = tmp_path / "ASD" / "data" / "processed"
    for entity in ("omi-6", "omi-9"):
        _dump(dst / f"{entity}_train.pkl", load_array_pickle(src / f"{entity}_train.pkl")[:600])
        _dump(dst / f"{entity}_test.pkl", load_array_pickle(src / f"{entity}_test.pkl")[300:500])
        labels = load_array_pickle(src / f"{entity}_test_label.pkl")[300:500]
        _dump(dst / f"{entity}_test_label.pkl", labels)
    result = _run(tmp_path, "asd", tmp_path / "ASD")
    assert len(result["splits"]) == 2  # every entity found under --path, plus the mean


@_needs("NAB")
def test_nab_slice(tmp_path):
    dst = tmp_path / "NAB"
    for rel in (
        "data/realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv",
        "data/artificialNoAnomaly/art_daily_small_noise.csv",
        "labels/combined_windows.json",
    ):
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "NAB" / rel, dst / rel)
    result = _run(tmp_path, "nab", dst)
    assert result["rows"][0]["nab_score"] is not None
    # The labelled windows behind the score travel with it (both files' windows).
    for row in result["rows"]:
        assert 0 <= row["nab_detected_windows"] <= row["nab_windows"]
    assert result["rows"][0]["nab_windows"] >= 1


def test_rows_keep_nab_window_totals_only_where_given():
    nab = evaluate._row("telltale", {"f1": 0.5, "nab_detected_windows": 3, "nab_windows": 7})
    assert nab["nab_detected_windows"] == 3 and nab["nab_windows"] == 7
    other = evaluate._row("telltale", {"f1": 0.5})
    assert "nab_windows" not in other and other["f1"] == 0.5 and other["pa_f1"] is None


@_needs("loghub/BGL")
def test_bgl_slice(tmp_path):
    dst = tmp_path / "loghub" / "BGL"
    dst.mkdir(parents=True)
    lines = (ROOT / "loghub" / "BGL" / "BGL_2k.log").read_text().splitlines()[:400]
    (dst / "BGL_2k.log").write_text("\n".join(lines) + "\n")
    result = _run(tmp_path, "bgl", tmp_path / "loghub")
    assert [r["method"] for r in result["rows"]] == ["telltale", "tfidf_logreg"]


@_needs("Nezha")
def test_nezha_slice(tmp_path):
    src = ROOT / "Nezha" / "rca_data" / "2023-01-29"
    dst = tmp_path / "Nezha" / "rca_data" / "2023-01-29"
    (dst / "metric").mkdir(parents=True)
    (dst / "log").mkdir()
    shutil.copy(src / "2023-01-29-fault_list.json", dst)
    for f in sorted((src / "metric").glob("ts-*_metric.csv"))[:6]:
        shutil.copy(f, dst / "metric" / f.name)
    travel = next((src / "metric").glob("ts-travel-service-*_metric.csv"))
    shutil.copy(travel, dst / "metric" / travel.name)
    shutil.copy(src / "log" / "10_20_log.csv", dst / "log")
    result = _run(tmp_path, "nezha", tmp_path / "Nezha")
    assert result["main_metric"] == "event_f1"


def test_sim_quick_run_uses_an_unseen_seed(tmp_path):
    result = _run(tmp_path, "sim", seed=5)
    assert result["test_fleet"]["seed"] == 5
    assert 5 not in (result["training"]["train_seed"], result["training"]["val_seed"])
    row = result["rows"][0]
    assert row["deceptive_fpr"] is None or 0.0 <= row["deceptive_fpr"] <= 1.0
    assert {r["method"] for r in result["rows"]} == {
        "telltale",
        "robust_z",
        "isolation_forest",
        "tfidf_logreg",
    }


class _ConstMethod:
    name = "const"

    def raw(self, group, keys, spec):
        return {"raw": np.zeros(len(keys))}


def test_per_group_test_starts_and_system_k():
    """Nezha's split has two test slices (morning, evening) with their own first scored
    step; the system alarm rule's K counts pods, not pods times slices."""
    from models.anomaly.datasets import Split, series_group
    from models.anomaly.evalsets import _score_split, system_targets, test_starts
    from models.anomaly.train import ModelConfig

    def pods(n_steps, t0):
        g = series_group("pod", np.ones((n_steps, 2), np.float32), 60, "p0")
        g.values = np.ones((n_steps, 3, 2), np.float32)
        g.target_names = ["p0", "p1", "p2"]
        g.ts = g.ts + t0
        return g

    morning, evening, val = pods(30, 0), pods(40, 36_000), pods(25, 30_000)
    sp = Split("day", [val], [val], [morning, evening], test_from=[4, 19], meta={"val_from": 19})
    assert test_starts(sp) == [4, 19]
    mc = ModelConfig(window_steps=20, patch_steps=4, step_seconds=60)
    _, test = _score_split(_ConstMethod(), sp, None, mc)
    assert test[0].keys[:, 1].min() == 5 and test[1].keys[:, 1].min() == 20
    assert system_targets(test) == 3
    assert test_starts(Split("x", [val], [val], [morning], test_from=7)) == [7]
    with pytest.raises(ValueError):
        test_starts(Split("y", [val], [val], [morning], test_from=[1, 2]))


def _full_windows_only(sp, window_steps: int) -> None:
    """The validation windows that calibration sees are scored like the test part's: each
    has a whole window of real history, none is padding."""
    from models.anomaly.baselines import RobustZ
    from models.anomaly.evalsets import _model_config, _score_split
    from models.anomaly.features import fit_spec

    mc = _model_config({"window_steps": window_steps, "patch_steps": 4, "step_seconds": 300,
                        "use_time": False}, True)  # fmt: skip
    spec = fit_spec(sp.train[0].values, sp.train[0].metric_names)
    method = RobustZ(mc.window_steps, mc.patch_steps).fit(sp.train, [spec])
    val, _ = _score_split(method, sp, spec, mc)
    assert val[0].keys[:, 1].min() == window_steps  # first window ends after W real steps
    assert len(val[0].raw) == sp.val[0].n_steps - window_steps + 1


def test_smd_layout_validation_part_reaches_back_into_the_fit_part(tmp_path):
    from models.anomaly.datasets import smd

    rng = np.random.default_rng(0)
    train = rng.normal(size=(1000, 3)).astype(np.float32)
    folder = tmp_path / "SMD" / "processed"
    _dump(folder / "m_train.pkl", train)
    _dump(folder / "m_test.pkl", rng.normal(size=(300, 3)).astype(np.float32))
    _dump(folder / "m_test_label.pkl", np.zeros(300, np.int8))
    (sp,) = smd.load(tmp_path / "SMD")
    W, cut = smd.PROFILE["window_steps"], 800
    assert sp.meta["val_from"] == W - 1
    assert np.array_equal(sp.val[0].values[:, 0], train[cut - W + 1 :])
    assert np.array_equal(np.diff(sp.val[0].ts), np.full(len(sp.val[0].ts) - 1, 60))
    _full_windows_only(sp, W)


def test_nab_layout_validation_part_reaches_back_into_the_fit_part(tmp_path):
    from models.anomaly.datasets import nab

    n = 2000
    stamps = pd.date_range("2014-04-01", periods=n, freq="5min")
    values = np.sin(np.arange(n) / 20.0) + 10
    folder = tmp_path / "NAB"
    (folder / "data" / "cat").mkdir(parents=True)
    (folder / "labels").mkdir()
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(
        folder / "data" / "cat" / "f.csv", index=False
    )
    (folder / "labels" / "combined_windows.json").write_text(json.dumps({"cat/f.csv": []}))
    (sp,) = nab.load(folder)
    W, n_prob = nab.PROFILE["window_steps"], nab.probation(n)
    cut = max(W + 1, 2 * n_prob // 3)
    assert sp.meta["val_from"] == W - 1
    assert np.allclose(sp.val[0].values[:, 0, 0], values[cut - W + 1 : n_prob])
    epoch = (stamps - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    assert np.array_equal(sp.val[0].ts, np.asarray(epoch)[cut - W + 1 : n_prob])
    _full_windows_only(sp, W)
