"""Effect recovery: the engine finds known heterogeneous effects, with honest intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.mitigation.engine import CausalEngine, EngineConfig

from .conftest import synthetic


@pytest.fixture(scope="module")
def recovered():
    X, A, y, _ = synthetic(4000, seed=0)
    # Small leaves and every feature at each split: the settings under which the forest's
    # intervals are valid (its bias shrinks faster than its standard error).
    cfg = EngineConfig(
        actions=("a", "b", "c"), default_action="a", covariates=("x1", "x2", "x3"),
        categorical=(), outcomes=("y",), per_unit={}, n_estimators=200, min_samples_leaf=5,
        max_samples=0.45, max_features=1.0, nuisance_trees=100, explain_sample=500,
    )  # fmt: skip
    engine = CausalEngine().fit(X, A, pd.DataFrame({"y": y}), cfg)
    X_test, _, _, theta_test = synthetic(1000, seed=1)
    return engine, X_test, theta_test


def test_estimated_effects_correlate_with_the_truth(recovered):
    engine, X, theta = recovered
    est = engine.estimate(X)
    for j, action in ((0, 1), (1, 2)):
        r = np.corrcoef(est.theta["y"][:, action], theta[:, j])[0, 1]
        assert r > 0.8, (action, r)
        assert abs(est.theta["y"][:, action].mean() - theta[:, j].mean()) < 0.15
    assert np.all(est.theta["y"][:, 0] == 0)  # the default is the reference


def test_intervals_cover_at_roughly_the_nominal_rate(recovered):
    engine, X, theta = recovered
    est = engine.estimate(X)
    z = 1.645  # 90 % two-sided
    for j, action in ((0, 1), (1, 2)):
        lo = est.theta["y"][:, action] - z * est.theta_se["y"][:, action]
        hi = est.theta["y"][:, action] + z * est.theta_se["y"][:, action]
        coverage = np.mean((lo <= theta[:, j]) & (theta[:, j] <= hi))
        assert 0.8 <= coverage <= 0.97, (action, coverage)


def test_contrast_between_two_non_default_actions(recovered):
    engine, X, theta = recovered
    n = len(X)
    point, se = engine.contrast(X, "y", np.full(n, 1), np.full(n, 2))
    truth = theta[:, 1] - theta[:, 0]
    assert np.corrcoef(point, truth)[0, 1] > 0.8
    assert np.all(se > 0)
    same, same_se = engine.contrast(X, "y", np.full(n, 2), np.full(n, 2))
    assert not same.any() and not same_se.any()


def test_expected_outcomes_are_level_plus_effect(recovered):
    engine, X, _ = recovered
    est = engine.estimate(X)
    mu = est.mu["y"]
    np.testing.assert_allclose(mu[:, 1] - mu[:, 0], est.theta["y"][:, 1])
    base = 1.0 + X["x1"] + 0.5 * X["x3"] ** 2
    assert np.corrcoef(mu[:, 0], base)[0, 1] > 0.8


def test_refuses_actions_that_were_never_taken():
    X, A, y, _ = synthetic(300, seed=2)
    A = np.where(A == "c", "b", A)
    cfg = EngineConfig(actions=("a", "b", "c"), covariates=("x1", "x2", "x3"),
                       categorical=(), outcomes=("y",), per_unit={})  # fmt: skip
    with pytest.raises(ValueError, match="too few logged events for c"):
        CausalEngine().fit(X, A, pd.DataFrame({"y": y}), cfg)


def test_simulator_engine_records_metrics(sim_engine):
    m = sim_engine.metrics
    assert m["default_action"] == "mark_out_for_repair"  # the legacy's most common action
    assert set(m["explainer_r2"]) == set(sim_engine.actions) - {m["default_action"]}
    assert m["fit_seconds"] > 0
