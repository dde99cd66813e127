"""Off-policy evaluation from logged events only: the doubly-robust (AIPW) estimate of a
policy's mean downtime, with cross-fitted nuisances and a standard error.

For a policy that takes action a with probability pi(a | x), each logged event (x, A, Y)
contributes

    psi = sum_a pi(a | x) mu(x, a) + pi(A | x) / e(A | x) * (Y - mu(x, A))

where mu(x, a) = E[Y | X = x, A = a] and e(a | x) = P(A = a | X = x) of the logging policy
are fitted on the other folds (cross-fitting, so an event's own noise never enters its own
nuisance predictions). The estimate is mean(psi) and its standard error std(psi) / sqrt(n);
it is consistent when either nuisance is right. Propensities are clipped at ``clip`` from
below so that a handful of rare actions cannot dominate; the bias this trades for variance
is small where overlap holds, and a policy that lives off rarely-logged actions shows it
as a wide interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.mitigation.data import COVARIATES, Featurizer


@dataclass
class Nuisances:
    mu: np.ndarray  # [n, K] E[Y | x, a], out of fold
    propensity: np.ndarray  # [n, K] P(A = a | x), out of fold
    chosen: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)


@dataclass
class OPEResult:
    value: float
    se: float

    @property
    def interval(self) -> tuple[float, float]:
        return self.value - 1.96 * self.se, self.value + 1.96 * self.se


def _regressors(trees: int, seed: int) -> dict[str, LGBMRegressor]:
    return {
        "lgbm": LGBMRegressor(
            n_estimators=trees, learning_rate=0.05, num_leaves=15, min_child_samples=40,
            subsample=0.8, subsample_freq=1, random_state=seed, verbose=-1, n_jobs=1,
        ),
        "lgbm_small": LGBMRegressor(
            n_estimators=trees, learning_rate=0.03, num_leaves=7, min_child_samples=80,
            random_state=seed, verbose=-1, n_jobs=1,
        ),
    }  # fmt: skip


def _classifiers(trees: int, seed: int) -> dict:
    return {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "lgbm_small": LGBMClassifier(
            n_estimators=trees, learning_rate=0.03, num_leaves=4, min_child_samples=50,
            random_state=seed, verbose=-1, n_jobs=1,
        ),
    }  # fmt: skip


def crossfit_nuisances(
    frame: pd.DataFrame,
    a_idx: np.ndarray,
    y: np.ndarray,
    n_actions: int,
    *,
    unit: np.ndarray | None = None,
    covariates: tuple[str, ...] = COVARIATES,
    categorical: tuple[str, ...] = ("fault",),
    folds: int = 5,
    trees: int = 200,
    seed: int = 0,
) -> Nuisances:
    """Out-of-fold mu (a model of y / unit on X and the action, times unit) and e (a
    classifier of the logged action).

    Two candidates each, and the one with the lower out-of-fold loss (squared error for mu,
    log-loss for e) is kept: a flexible classifier overfits a few thousand events and turns
    out over-confident propensities whose inverse weights bias the estimate, which
    log-loss on held-out folds detects from logged data alone."""
    Z = Featurizer(covariates, categorical).fit(frame).transform(frame)
    unit = np.ones(len(y)) if unit is None else np.maximum(unit, 1.0)
    onehot = np.eye(n_actions)
    mus = {name: np.zeros((len(y), n_actions)) for name in _regressors(trees, seed)}
    props = {name: np.zeros((len(y), n_actions)) for name in _classifiers(trees, seed)}
    for k, (fit, out) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(Z)):
        for name, reg in _regressors(trees, seed + k).items():
            reg.fit(np.hstack([Z[fit], onehot[a_idx[fit]]]), y[fit] / unit[fit])
            for a in range(n_actions):
                za = np.hstack([Z[out], np.tile(onehot[a], (len(out), 1))])
                mus[name][out, a] = reg.predict(za) * unit[out]
        for name, clf in _classifiers(trees, seed + k).items():
            clf.fit(Z[fit], a_idx[fit])
            # A fold may miss a rare action entirely; its column then stays at the floor.
            p = np.full((len(out), n_actions), 1e-6)
            p[:, clf.classes_] = clf.predict_proba(Z[out])
            props[name][out] = p / p.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    mse = {n: float(((m[rows, a_idx] - y) ** 2).mean()) for n, m in mus.items()}
    logloss = {n: float(-np.log(p[rows, a_idx]).mean()) for n, p in props.items()}
    mu_name, e_name = min(mse, key=mse.get), min(logloss, key=logloss.get)
    return Nuisances(
        mu=mus[mu_name],
        propensity=props[e_name],
        chosen={"outcome_model": mu_name, "propensity_model": e_name},
        losses={"outcome_mse": mse, "propensity_logloss": logloss},
    )


def dr_scores(
    pi: np.ndarray, a_idx: np.ndarray, y: np.ndarray, nuis: Nuisances, clip: float = 0.01
) -> np.ndarray:
    """Per-event doubly-robust scores psi for a policy given as P(a | x) rows [n, K]."""
    rows = np.arange(len(y))
    e = np.maximum(nuis.propensity[rows, a_idx], clip)
    direct = (pi * nuis.mu).sum(axis=1)
    return direct + pi[rows, a_idx] / e * (y - nuis.mu[rows, a_idx])


def dr_value(
    pi: np.ndarray, a_idx: np.ndarray, y: np.ndarray, nuis: Nuisances, clip: float = 0.01
) -> OPEResult:
    psi = dr_scores(pi, a_idx, y, nuis, clip)
    return OPEResult(float(psi.mean()), float(psi.std(ddof=1) / np.sqrt(len(psi))))


def deterministic(actions: np.ndarray, n_actions: int) -> np.ndarray:
    """A policy that takes ``actions[i]`` for event i, as P(a | x) rows."""
    return np.eye(n_actions)[np.asarray(actions, dtype=int)]
