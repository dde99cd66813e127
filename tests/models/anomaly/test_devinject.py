"""Label-free development sets: anomalies injected into the end of the training part."""

import argparse
import pickle

import numpy as np
import pytest

from models.anomaly import evalsets, evaluate
from models.anomaly.datasets import Split, series_group, with_history
from models.anomaly.datasets.devinject import (
    KINDS,
    MAGNITUDE,
    dev_splits,
    inject,
    robust_scale,
)


def _normal(n: int, m: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return (
        np.sin(2 * np.pi * t / (50 + 10 * np.arange(m))) + 0.1 * rng.normal(size=(n, m))
    ).astype(np.float32)


def test_labels_mark_exactly_the_changed_steps_and_segments_keep_apart():
    fit, held = _normal(3000), _normal(2000, seed=1)
    out, label, done = inject(held, fit, np.random.default_rng(3), gap=60, kinds=("level_shift",))
    changed = (np.abs(out - held) > 1e-6).any(axis=1)
    assert np.array_equal(changed, label == 1)
    assert not label[:60].any()
    starts = sorted(d["start"] for d in done)
    ends = sorted(d["start"] + d["steps"] for d in done)
    assert len(done) == 4  # one per 400 held-out steps after the first gap
    assert all(s - e >= 60 for s, e in zip(starts[1:], ends[:-1], strict=False))
    # Sizes are in units of each metric's spread in the fitting part.
    for d in done:
        m = d["metrics"][0]
        shift = out[d["start"], m] - held[d["start"], m]
        assert abs(abs(shift) / robust_scale(fit)[m] - d["size"]) < 1e-3


def test_each_kind_changes_what_it_says():
    fit, held = _normal(3000), _normal(1000, seed=1)
    for kind in KINDS:
        out, _, done = inject(held, fit, np.random.default_rng(5), 60, (kind,))
        d = done[0]
        a, b, m = d["start"], d["start"] + d["steps"], d["metrics"][0]
        seg = out[a:b, m]
        added = seg - held[a:b, m]
        size = d["size"] * robust_scale(fit)[m]
        if kind == "stuck":
            assert np.all(seg == held[a, m])
        elif kind == "decouple":
            windows = np.lib.stride_tricks.sliding_window_view(fit[:, m], len(seg))
            assert (np.abs(windows - seg).max(axis=1) < 1e-6).any()
        elif kind in ("spike", "level_shift"):
            assert np.allclose(np.abs(added), size, rtol=1e-3)  # one constant step
            assert (1 <= d["steps"] <= 5) == (kind == "spike")
        elif kind == "drift":
            assert np.all(np.diff(np.abs(added)) > 0)  # grows, up to the full size at the end
            assert np.isclose(abs(added[-1]), size, rtol=1e-3)
        else:  # variance: noise around the old values, not a shift
            assert (added > 0).any() and (added < 0).any()
        assert not np.allclose(seg, held[a:b, m])


def test_a_surge_leaves_the_fitting_range_by_its_size():
    fit, held = _normal(3000), _normal(2000, seed=1)
    out, _, done = inject(held, fit, np.random.default_rng(4), 60, ("surge",))
    for d in done:
        a, b = d["start"], d["start"] + d["steps"]
        for m in d["metrics"]:
            beyond = np.maximum(out[a:b, m] - fit[:, m].max(), fit[:, m].min() - out[a:b, m])
            assert np.allclose(beyond, d["size"] * robust_scale(fit)[m], rtol=1e-3)
    # Asked for by name only: the default mixture is the six kinds measured first.
    assert "surge" not in KINDS
    (dev,) = dev_splits([_split(4000, 1000)], window_steps=60, kinds=("surge",))
    assert dev.meta["kinds"] == "surge"


def test_constant_metrics_are_left_alone_and_all_constant_is_refused():
    fit, held = _normal(3000), _normal(1000, seed=1)
    fit[:, 0], held[:, 0] = 1.0, 1.0
    out, _, done = inject(held, fit, np.random.default_rng(0), 60)
    assert all(0 not in d["metrics"] for d in done) and np.all(out[:, 0] == 1.0)
    with pytest.raises(ValueError, match="no metric varies"):
        inject(np.ones((1000, 2)), np.ones((3000, 2)), np.random.default_rng(0), 60)


def _split(n_train: int, n_val: int, test_value: float = np.nan, val_history: int = 0) -> Split:
    """A loaded split; ``val_history`` > 0 gives its validation part the fit's last steps as
    history, as the SMD/ASD/NAB loaders do."""
    whole = _normal(n_train + n_val)
    fit = series_group("machine", whole[:n_train], 60, "m")
    val = series_group("machine", whole[n_train:], 60, "m", ts=60 * np.arange(n_train, len(whole)))
    val, val_from = with_history(fit, val, val_history)
    test = series_group("machine", np.full((500, 4), test_value), 60, "m", np.ones(500))
    return Split("m", [fit], [val], [test], segments=[], meta={"val_from": val_from})


@pytest.mark.parametrize("val_history", [0, 59])
def test_a_development_split_is_cut_from_the_training_part_only(val_history):
    sp = _split(4000, 1000, val_history=val_history)
    (dev,) = dev_splits([sp], window_steps=60, seed=0)
    assert dev.name == "m-dev" and dev.meta["dev_of"] == "m"
    # The training part, once: a loaded split's validation history is not counted twice.
    whole = _normal(5000)[:, None, :]
    assert np.array_equal(dev.train[0].values, whole[:2500])
    # The dev validation part is scored after the fit's last 59 steps, like its test part.
    val_from = dev.meta["val_from"]
    assert val_from == 59
    assert np.array_equal(dev.val[0].values, whole[2500 - 59 : 3500])
    assert np.array_equal(dev.val[0].ts, 60 * np.arange(2500 - 59, 3500))
    test = dev.test[0]
    assert not np.isnan(test.values).any()  # nothing of the (all-NaN) test part
    clean = test.label[dev.test_from :, 0] == 0
    assert np.array_equal(test.values[dev.test_from :][clean], whole[3500:][clean])
    assert len(dev.segments) == dev.meta["injected"] > 0
    # The same seed gives the same set; another seed another one.
    (again,) = dev_splits([sp], window_steps=60, seed=0)
    (other,) = dev_splits([sp], window_steps=60, seed=1)
    assert np.array_equal(again.test[0].values, test.values)
    assert not np.array_equal(other.test[0].label, test.label)


def test_development_splits_refuse_what_they_cannot_cut():
    with pytest.raises(ValueError, match="too few"):
        dev_splits([_split(300, 100)], window_steps=60)
    two = _split(4000, 1000)
    two.train.append(two.train[0])
    with pytest.raises(ValueError, match="one fit and one validation part"):
        dev_splits([two], window_steps=60)
    with pytest.raises(ValueError, match="unknown anomaly kinds"):
        dev_splits([_split(4000, 1000)], window_steps=60, kinds=("meteor",))


def test_dev_sizes_bound_every_injected_size():
    fit, held = _normal(3000), _normal(4000, seed=1)
    _, _, done = inject(held, fit, np.random.default_rng(2), 60, magnitude=(20.0, 30.0))
    assert len(done) >= 5 and all(20.0 <= d["size"] <= 30.0 for d in done)
    (dev,) = dev_splits([_split(4000, 1000)], window_steps=60, magnitude=(20.0, 30.0))
    assert dev.meta["sizes"] == "20-30"
    for bad in ((0.0, 5.0), (9.0, 3.0)):
        with pytest.raises(ValueError, match="anomaly sizes"):
            dev_splits([_split(4000, 1000)], window_steps=60, magnitude=bad)
    assert evalsets.dev_sizes(None) == MAGNITUDE
    assert evalsets.dev_sizes("8,40") == (8.0, 40.0)
    with pytest.raises(ValueError, match="--dev-sizes"):
        evalsets.dev_sizes("big")


def _args(argv):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(argv)


def test_the_dev_protocol_never_reads_the_test_part(tmp_path):
    """Two SMD-layout folders that differ only in their test files give the same result."""
    results = []
    for i, fill in enumerate((0.0, 1.0)):
        folder = tmp_path / f"smd{i}" / "processed"
        folder.mkdir(parents=True)
        arrays = {
            "m_train.pkl": _normal(2500, 5),
            "m_test.pkl": np.full((400, 5), fill, np.float32),
            "m_test_label.pkl": np.full(400, int(fill), np.int8),
        }
        for name, arr in arrays.items():
            (folder / name).write_bytes(pickle.dumps(arr))
        argv = ["--dataset", "smd", "--quick", "--threads", "1", "--dev", "--path"]
        results.append(evaluate.run(_args([*argv, str(folder.parent)])))
    first, second = results
    assert first["protocol"] == "dev" and [s["name"] for s in first["splits"]] == ["m-dev"]
    assert any(note.startswith("--dev: the test part is not used") for note in first["notes"])
    assert first["rows"] == second["rows"]
    assert first["splits"][0]["meta"]["injected"] >= 1


def test_dev_kinds_choose_what_is_injected(tmp_path):
    folder = tmp_path / "smd" / "processed"
    folder.mkdir(parents=True)
    arrays = {
        "m_train.pkl": _normal(2500, 5),
        "m_test.pkl": _normal(400, 5),
        "m_test_label.pkl": np.zeros(400, np.int8),
    }
    for name, arr in arrays.items():
        (folder / name).write_bytes(pickle.dumps(arr))
    argv = ["--dataset", "smd", "--quick", "--threads", "1", "--dev", "--path", str(folder.parent)]
    result = evaluate.run(_args([*argv, "--dev-kinds", "stuck, drift", "--dev-sizes", "2,3"]))
    assert set(result["splits"][0]["meta"]["kinds"].split(",")) <= {"stuck", "drift"}
    assert result["splits"][0]["meta"]["sizes"] == "2-3"
    assert any("kinds stuck, drift, sizes 2-3 spreads" in note for note in result["notes"])
    with pytest.raises(ValueError, match="unknown anomaly kinds"):
        evaluate.run(_args([*argv, "--dev-kinds", "meteor"]))
    with pytest.raises(ValueError, match="no anomaly kinds"):
        evaluate.run(_args([*argv, "--dev-kinds", ","]))


def test_dev_is_refused_where_no_development_set_can_be_cut():
    with pytest.raises(ValueError, match="only smd, asd"):
        evaluate.run(_args(["--dataset", "nab", "--dev"]))
