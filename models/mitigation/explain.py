"""Why the model prefers one action over another for this event, in plain words.

SHAP on the causal forest itself (econml's ``shap_values``) takes about a second per event,
too slow for a page that lists recommendations. Instead a small LightGBM surrogate is fitted
to the forest's per-instance effect of each action (vs the default) on a sample of training
events; its exact TreeSHAP contributions (``pred_contrib``) take microseconds. The
surrogate's R² against the forest on held-out events is recorded as ``explainer_r2`` so a
reader knows how faithful the words are.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor

from models.mitigation.data import Featurizer


class Reason(NamedTuple):
    """One line of an explanation; a plain tuple (covariate, contribution, sentence)."""

    covariate: str
    contribution: float  # minutes added to E[Y(better) - Y(worse) | x]; < 0 favours `better`
    sentence: str


class Explainer:
    def __init__(self, featurizer: Featurizer, actions: tuple[str, ...], default: int) -> None:
        self.featurizer = featurizer
        self.actions = actions
        self.default = default

    def fit(self, frame: pd.DataFrame, Z: np.ndarray, theta_unit: np.ndarray) -> Explainer:
        rng = np.random.default_rng(0)
        holdout = rng.random(len(Z)) < 0.25
        self.models: dict[int, LGBMRegressor] = {}
        fidelity = {}
        for a in range(len(self.actions)):
            if a == self.default:
                continue
            model = LGBMRegressor(
                n_estimators=200, learning_rate=0.05, num_leaves=15, verbose=-1, n_jobs=1
            )
            model.fit(Z[~holdout], theta_unit[~holdout, a])
            pred = model.predict(Z[holdout])
            truth = theta_unit[holdout, a]
            denom = float(((truth - truth.mean()) ** 2).sum()) or 1.0
            fidelity[self.actions[a]] = round(1 - float(((truth - pred) ** 2).sum()) / denom, 3)
            # Kept as fitted on 75 %: refitting on all would leave the fidelity unmeasured.
            self.models[a] = model
        self.fidelity = fidelity
        # Sorted training values, to say "higher than 91 % of past events".
        self.reference = {
            c: np.sort(frame[c].to_numpy(dtype=float)) for c in self.featurizer.numeric
        }
        return self

    def _contrib(self, z: np.ndarray, a: int) -> np.ndarray:
        if a == self.default:
            return np.zeros(z.shape[1])
        return self.models[a].predict(z, pred_contrib=True)[0, :-1]

    def _describe(self, covariate: str, value) -> str:
        if covariate in self.featurizer.categorical:
            return f"{covariate} = {value}"
        ref = self.reference[covariate]
        share = np.searchsorted(ref, float(value), side="right") / max(len(ref), 1)
        if share >= 0.5:
            where = f"higher than {100 * share:.0f} % of past events"
        else:
            where = f"lower than {100 * (1 - share):.0f} % of past events"
        return f"{covariate} = {float(value):g} ({where})"

    def explain(
        self, x: pd.DataFrame, z: np.ndarray, better: int, worse: int, unit: float, top: int = 3
    ) -> list[Reason]:
        """The ``top`` covariates with the largest share of E[Y(better) - Y(worse) | x]."""
        if better == worse:
            return []
        contrib = (self._contrib(z[:1], better) - self._contrib(z[:1], worse)) * unit
        per_cov: dict[str, float] = {}
        for cov, c in zip(self.featurizer.feature_covariate, contrib, strict=True):
            per_cov[cov] = per_cov.get(cov, 0.0) + float(c)
        ranked = sorted(per_cov.items(), key=lambda kv: -abs(kv[1]))[:top]
        b, w = self.actions[better], self.actions[worse]
        reasons = []
        for cov, c in ranked:
            desc = self._describe(cov, x[cov].iloc[0])
            if c <= 0:
                text = f"{desc} favours {b} over {w} by about {abs(c):.1f} min for this node"
            else:
                text = f"{desc} counts against {b} (vs {w}) by about {c:.1f} min for this node"
            reasons.append(Reason(cov, round(c, 2), text))
        return reasons
