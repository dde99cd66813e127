"""Window construction and encoding."""

from __future__ import annotations

import numpy as np

from ingest.simulator import VM_METRIC_NAMES
from models.interference.encoding import FeatureScaler
from models.interference.features import (
    aggregate,
    counters_to_increments,
    fit_window,
    leave_one_out,
    windows_from_placement,
)


def _members(rng: np.random.Generator, t: int = 6, k: int = 4, m: int = 3):
    x = rng.uniform(0, 10, (t, k, m))
    present = rng.random((t, k)) > 0.25
    x[rng.random((t, k, m)) < 0.1] = np.nan
    return x, present


def test_leave_one_out_matches_brute_force():
    rng = np.random.default_rng(0)
    x, present = _members(rng)
    mean, mx, total, count = leave_one_out(x, present)
    for k in range(x.shape[1]):
        others = [j for j in range(x.shape[1]) if j != k]
        m2, x2, s2, c2 = aggregate(x[:, others], present[:, others])
        np.testing.assert_allclose(mean[k], m2, atol=1e-9)
        np.testing.assert_allclose(mx[k], x2, atol=1e-9)
        np.testing.assert_allclose(total[k], s2, atol=1e-9)
        np.testing.assert_allclose(count[k], c2)


def test_aggregate_with_no_neighbours_is_zero():
    mean, mx, total, count = aggregate(np.zeros((5, 0, 3)), np.zeros((5, 0), bool))
    assert mean.shape == (5, 3) and not mean.any() and not mx.any() and not total.any()
    assert not count.any()


def test_counters_become_increments():
    x = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 7.0], [np.nan, 7.0], [4.0, 2.0]])
    out = counters_to_increments(x, [1])
    np.testing.assert_array_equal(out[:, 0], x[:, 0])
    np.testing.assert_array_equal(out[:, 1], [0, 0, 2, 0, 0])  # a reset counts as 0


def test_fit_window_pads_at_the_start_and_cuts_old_steps():
    m = np.arange(6, dtype=float).reshape(3, 2)
    padded = fit_window(m, 5)
    assert np.isnan(padded[:2]).all() and (padded[2:] == m).all()
    assert (fit_window(m, 2) == m[1:]).all()


def test_windows_from_placement_excludes_the_victim_from_its_neighbours():
    # 3 instances; 0 and 1 share node 0, 2 is alone on node 1; instance 1 leaves halfway.
    s, m = 8, 2
    vm = np.ones((s, 3, m))
    vm[:, 1] = 2.0
    vm[4:, 1] = np.nan
    node_of = np.array([[0, 0, 1]] * s)
    node_of[4:, 1] = -1
    cap = np.ones((2, 6))
    p = np.full((s, 3), 0.8)
    w = windows_from_placement(vm, node_of, cap, window=8, stride=8, min_valid=4, p=p)
    assert len(w) == 3
    np.testing.assert_array_equal(w.nbr_count[0], [1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(w.nbr_sum[0, :4, 0], 2.0)
    np.testing.assert_array_equal(w.nbr_sum[1, :4, 0], 1.0)
    assert w.valid[1].sum() == 4 and not w.nbr_count[2].any()
    np.testing.assert_allclose(w.p, 0.8)


def test_simulator_windows_encode_without_nans(sim_windows):
    w = sim_windows
    assert len(w) > 100 and w.victim.shape[1:] == (20, len(VM_METRIC_NAMES))
    assert np.all((w.p > 0) & (w.p <= 1))
    scaler = FeatureScaler.fit(w, VM_METRIC_NAMES)
    enc = scaler.encode(w.take(np.arange(50)))
    for arr in (enc.steps, enc.tokens, enc.context):
        assert np.isfinite(arr).all()
    assert enc.pooled().shape == (
        50,
        enc.tokens.shape[1] * enc.tokens.shape[2] + enc.context.shape[1],
    )
    again = FeatureScaler.from_dict(scaler.to_dict()).encode(w.take(np.arange(50)))
    np.testing.assert_array_equal(again.steps, enc.steps)
