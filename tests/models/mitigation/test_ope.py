"""Doubly-robust off-policy evaluation recovers known policy values from logged data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.mitigation.ope import crossfit_nuisances, deterministic, dr_value


def _logged(n: int, seed: int):
    """Confounded logging: the action depends on x1, which also moves the outcome."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.uniform(-1, 1, (n, 2)), columns=["x1", "x2"])
    x1, x2 = X["x1"].to_numpy(), X["x2"].to_numpy()
    mu = np.stack([2 + 2 * x1, 1 + x1 + x2, 3 - x1], axis=1)
    logits = np.stack([np.zeros(n), 1.5 * x1, -1.5 * x1], axis=1)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    a = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, 2)
    y = mu[np.arange(n), a] + rng.normal(0, 1.0, n)
    return X, a, y, mu


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dr_estimate_is_close_to_the_true_value(seed):
    X, a, y, mu = _logged(3000, seed)
    nuis = crossfit_nuisances(X, a, y, 3, covariates=("x1", "x2"), categorical=(), seed=seed)
    best = mu.argmin(axis=1)  # a policy the logging rarely follows exactly
    for actions in (best, np.zeros(len(y), dtype=int), np.full(len(y), 2)):
        truth = mu[np.arange(len(y)), actions].mean()
        res = dr_value(deterministic(actions, 3), a, y, nuis)
        assert abs(res.value - truth) < 3 * res.se + 0.02, (res, truth)
        assert 0 < res.se < 0.2
    # The naive mean of logged outcomes under an action is confounded; DR is not.
    naive = y[a == 1].mean()
    truth1 = mu[:, 1].mean()
    dr1 = dr_value(deterministic(np.ones(len(y), dtype=int), 3), a, y, nuis).value
    assert abs(dr1 - truth1) < abs(naive - truth1)


def test_logging_policy_value_is_the_mean_outcome():
    X, a, y, _ = _logged(2000, 5)
    nuis = crossfit_nuisances(X, a, y, 3, covariates=("x1", "x2"), categorical=())
    res = dr_value(nuis.propensity, a, y, nuis)
    assert abs(res.value - y.mean()) < 0.05
    lo, hi = res.interval
    assert lo < res.value < hi
