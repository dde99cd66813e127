"""Serving API: predictions, attribution, what-if and its validation."""

from __future__ import annotations

import numpy as np
import pytest

from models.interference.predictor import (
    InterferencePredictor,
    NeighbourInput,
    Prediction,
    VictimInput,
    WhatIfError,
)

CAP = {"cores": 64, "mem_gb": 384, "llc_mb": 38.5, "membw": 110e9, "net": 3.125e9, "disk": 1.2e9}


@pytest.fixture(scope="module")
def model(trained) -> InterferencePredictor:
    return InterferencePredictor.load(trained)


def _victim(w, i: int, k: int = 3, t: int | None = None) -> VictimInput:
    """Victim i of the windows with k neighbours borrowed from other windows."""
    t = t or w.victim.shape[1]
    nbrs = [NeighbourInput(f"n{j}", w.victim[(i + j + 1) % len(w)][-t:]) for j in range(k)]
    return VictimInput(f"v{i}", w.victim[i][-t:], nbrs, CAP)


def test_artefact_is_self_contained(trained, model):
    for name in (
        "model.pt",
        "lstm.pt",
        "scaler.json",
        "calibration.json",
        "config.json",
        "metrics.json",
    ):
        assert (trained / name).exists()
    assert sorted(model.nets) == ["lstm", "transformer"]
    assert model.metric_names[0] == "vm_cpu_utilization_ratio" and model.window_steps == 20
    assert 0 < model.coverage < 1


def test_predict_variable_length_nan_and_no_neighbours(model, sim_windows):
    w = sim_windows
    victims = [_victim(w, 0), _victim(w, 1, k=0), _victim(w, 2, t=7), _victim(w, 3, k=1, t=40)]
    victims[0].matrix = victims[0].matrix.copy()
    victims[0].matrix[::3, 4] = np.nan
    preds = model.predict(victims)
    assert [p.instance_id for p in preds] == ["v0", "v1", "v2", "v3"]
    for p in preds:
        assert isinstance(p, Prediction)
        assert 0 <= p.p_low <= p.p <= p.p_high <= 1
    assert model.predict([]) == []


def test_an_instance_without_neighbours_is_not_slowed(model, sim_windows):
    """The nets never see a lone instance in training and predict one slowed; P = 1 is
    served instead, in place, as the last neighbour's blame and on an empty target."""
    alone = _victim(sim_windows, 1, k=0)
    raw = model.member_predictions(model._windows([alone]))
    assert np.mean([m[0, 0] for m in raw.values()]) < 0.99  # what the nets alone would say
    lone = Prediction("v1", 1.0, pytest.approx(min(1.0, 1.0 - model.margin)), 1.0)
    assert model.predict([alone])[0] == lone
    with_one = _victim(sim_windows, 1, k=1)
    p = model.predict([with_one])[0].p
    assert p < 1.0
    ((_, gain),) = model.attribute(with_one)
    assert gain == pytest.approx(1.0 - p, abs=1e-6)
    moved = model.what_if(sim_windows.victim[0], [], CAP, moved_id="m")
    assert (moved.moved.p, moved.moved.p_high, moved.existing) == (1.0, 1.0, [])


def test_a_neighbour_for_part_of_the_window_still_counts(model, sim_windows):
    v = _victim(sim_windows, 2, k=1)
    late = v.neighbours[0].matrix.copy()
    late[:-5] = np.nan  # arrived five steps before the end
    partly = VictimInput(v.instance_id, v.matrix, [NeighbourInput("late", late)], CAP)
    w = model._windows([partly])
    raw = model.served(w, model.member_predictions(w))
    assert raw[0, 0] < 1.0 and model.predict([partly])[0].p == raw[0, 0]


def test_input_unlike_the_training_windows_is_named(model, sim_windows):
    from models.interference.features import CAPACITY_KEYS

    w = sim_windows
    own = dict(zip(CAPACITY_KEYS, w.capacity[0].tolist(), strict=True))
    usual = VictimInput("v", w.victim[0], [], own)
    assert model.unfamiliar_many([usual]) == [[]]
    tiny = {**own, "cores": 2.0}
    (reasons,) = model.unfamiliar_many([VictimInput("v", w.victim[0], [], tiny)])
    assert len(reasons) == 1 and reasons[0].startswith("node capacity unlike the training")
    assert "CPU cores 2 (it learnt from about" in reasons[0]
    blind = w.victim[0].copy()
    blind[:, model.metric_names.index("vm_ipc")] = np.nan  # a host without perf counters
    (reasons,) = model.unfamiliar_many([VictimInput("v", blind, [], own)])
    assert len(reasons) == 1 and reasons[0].startswith("sends no vm_ipc (1 of the ")


def test_predict_rejects_bad_inputs(model, sim_windows):
    v = _victim(sim_windows, 0)
    with pytest.raises(ValueError, match="matrix"):
        model.predict([VictimInput("x", np.zeros((5, 3)), [], CAP)])
    with pytest.raises(ValueError, match="capacity"):
        model.predict([VictimInput("x", v.matrix, [], {"cores": 4})])


def test_a_neighbour_without_samples_counts_as_absent(model, sim_windows):
    """A resident that stopped reporting must neither fail the fleet's prediction nor count
    as a neighbour; a victim without samples is still refused."""
    v = _victim(sim_windows, 4, k=2)
    silent = NeighbourInput("gone", np.full_like(v.matrix, np.nan))
    with_silent = VictimInput(v.instance_id, v.matrix, [*v.neighbours, silent], CAP)
    assert model.predict([with_silent])[0] == model.predict([v])[0]
    gains = dict(model.attribute(with_silent))
    assert gains["gone"] == pytest.approx(0.0, abs=1e-6) and len(gains) == 3
    with pytest.raises(ValueError, match="no metric samples"):
        model.predict([VictimInput("x", np.full_like(v.matrix, np.nan), [], CAP)])


def test_attribution_is_leave_one_out(model, sim_windows):
    v = _victim(sim_windows, 5, k=4)
    gains = model.attribute(v)
    assert sorted(g[0] for g in gains) == ["n0", "n1", "n2", "n3"]
    assert [g[1] for g in gains] == sorted((g[1] for g in gains), reverse=True)
    base = model.predict([v])[0].p
    without = VictimInput(
        v.instance_id, v.matrix, [n for n in v.neighbours if n.instance_id != gains[0][0]], CAP
    )
    assert model.predict([without])[0].p - base == pytest.approx(gains[0][1], abs=1e-5)
    assert model.attribute(_victim(sim_windows, 5, k=0)) == []
    assert len(model.attribute_many([v, _victim(sim_windows, 6, k=2)])) == 2


def test_what_if_predicts_moved_and_existing(model, sim_windows):
    w = sim_windows
    target = [NeighbourInput(f"t{j}", w.victim[10 + j]) for j in range(3)]
    result = model.what_if(w.victim[0], target, CAP, moved_id="m")
    assert result.moved.instance_id == "m"
    assert [p.instance_id for p in result.existing] == ["t0", "t1", "t2"]
    empty = model.what_if(w.victim[0], [], CAP)
    assert empty.existing == [] and empty.moved.p == 1.0


def test_a_target_instance_without_samples_is_absent_not_an_error(model, sim_windows):
    w = sim_windows
    live = [NeighbourInput(f"t{j}", w.victim[10 + j]) for j in range(2)]
    silent = NeighbourInput("stopped", np.full_like(w.victim[12], np.nan))
    result = model.what_if(w.victim[0], [live[0], silent, live[1]], CAP, moved_id="m")
    assert result.absent == ["stopped"]
    assert [p.instance_id for p in result.existing] == ["t0", "t1"]
    # Not running there: the answers are those of a target without it.
    without = model.what_if(w.victim[0], live, CAP, moved_id="m")
    assert (result.moved, result.existing) == (without.moved, without.existing)
    # Old samples outside the window the model reads do not make it present.
    stale = np.concatenate([w.victim[12], np.full_like(w.victim[12], np.nan)])
    late = model.what_if(w.victim[0], [*live, NeighbourInput("stale", stale)], CAP)
    assert late.absent == ["stale"]
    with pytest.raises(WhatIfError, match="no metric samples in the window"):
        model.what_if(stale, live, CAP)


def test_only_the_moved_instances_interval_is_widened_by_the_what_if_margin(trained, sim_windows):
    w = sim_windows
    plain = InterferencePredictor.load(trained)
    assert plain.what_if_extra_margin == 0.0  # calibrated without moves: as in place
    wide = InterferencePredictor.load(trained)
    wide.what_if_extra_margin = 0.05
    target = [NeighbourInput(f"t{j}", w.victim[10 + j]) for j in range(3)]
    a = plain.what_if(w.victim[0], target, CAP, moved_id="m")
    b = wide.what_if(w.victim[0], target, CAP, moved_id="m")
    assert b.moved.p == a.moved.p
    assert b.moved.p_low == pytest.approx(max(0.0, a.moved.p_low - 0.05))
    assert b.moved.p_high == pytest.approx(min(1.0, a.moved.p_high + 0.05))
    assert b.existing == a.existing
    # An in-place prediction of the same instance is not widened.
    victim = VictimInput("m", w.victim[0], target, CAP)
    assert wide.predict([victim]) == plain.predict([victim])


def test_what_if_validation(model, sim_windows):
    m = sim_windows.victim[0]
    target = [NeighbourInput("t0", sim_windows.victim[1])]
    with pytest.raises(WhatIfError, match="capacity"):
        model.what_if(m, target, {})
    with pytest.raises(WhatIfError, match="capacity"):
        model.what_if(m, target, None)
    with pytest.raises(WhatIfError, match="capacity is missing"):
        model.what_if(m, target, {"cores": 8})
    with pytest.raises(WhatIfError, match="nothing to move"):
        model.what_if(None, target, CAP)
    with pytest.raises(WhatIfError, match="no metric samples"):
        model.what_if(np.full_like(m, np.nan), target, CAP)
    with pytest.raises(WhatIfError, match="already on the target"):
        model.what_if(m, target, CAP, moved_id="t0")
    metrics = {"a": m, "b": sim_windows.victim[1], "c": sim_windows.victim[2]}
    node_of = {"a": "n1", "b": "n2", "c": "n3"}
    caps = {"n1": CAP, "n2": CAP, "n3": None}
    assert model.what_if_placement("a", "n2", metrics, node_of, caps).moved.instance_id == "a"
    with pytest.raises(WhatIfError, match="unknown instance 'zz'"):
        model.what_if_placement("zz", "n2", metrics, node_of, caps)
    with pytest.raises(WhatIfError, match="unknown node 'n9'"):
        model.what_if_placement("a", "n9", metrics, node_of, caps)
    with pytest.raises(WhatIfError, match="no capacity recorded"):
        model.what_if_placement("a", "n3", metrics, node_of, caps)
    with pytest.raises(WhatIfError, match="already runs"):
        model.what_if_placement("a", "n1", metrics, node_of, caps)


def test_more_neighbour_pressure_lowers_predicted_p(model, sim_windows):
    """Monotonic sanity on simulator data: a second copy of every neighbour (twice the
    demand on the node, same kind of neighbours) lowers predicted P on average."""
    w = sim_windows.take(np.flatnonzero(sim_windows.nbr_count.max(axis=1) > 0)[:400])
    base = model.predict_windows(w)[:, 0]
    crowded = w.take(np.arange(len(w)))  # a copy
    crowded.nbr_sum = 2 * w.nbr_sum
    crowded.nbr_count = 2 * w.nbr_count
    more = model.predict_windows(crowded)[:, 0]
    assert more.mean() < base.mean() - 0.005
    assert (more < base).mean() > 0.6


def test_the_prediction_is_the_calibrated_mean_of_the_members(model, sim_windows):
    w = sim_windows.take(np.arange(40))
    members = model.member_predictions(w)
    assert sorted(members) == ["lstm", "transformer"]
    assert not np.allclose(members["lstm"][:, 0], members["transformer"][:, 0])
    out = model.predict_windows(w)
    mean = (members["lstm"] + members["transformer"]) / 2
    np.testing.assert_allclose(out[:, 0], mean[:, 0], atol=1e-9)
    np.testing.assert_allclose(out[:, 1], np.clip(mean[:, 1] - model.margin, 0, 1), atol=1e-9)
    assert np.all((out[:, 1] <= out[:, 0]) & (out[:, 0] <= out[:, 2]))


def test_an_artefact_of_the_transformer_alone_still_loads(trained, tmp_path, sim_windows):
    """Version 1 artefacts (before the ensemble) have no members list and no lstm.pt."""
    import json
    import shutil

    old = tmp_path / "v1"
    shutil.copytree(trained, old)
    (old / "lstm.pt").unlink()
    config = json.loads((old / "config.json").read_text())
    del config["members"], config["lstm"]
    (old / "config.json").write_text(json.dumps({**config, "version": 1}))
    v1 = InterferencePredictor.load(old)
    w = sim_windows.take(np.arange(10))
    assert list(v1.nets) == ["transformer"]
    full = InterferencePredictor.load(trained).member_predictions(w)["transformer"]
    np.testing.assert_allclose(v1.predict_windows(w)[:, 0], full[:, 0], atol=1e-9)
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    (broken / "lstm.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"lstm\.pt"):
        InterferencePredictor.load(broken)
