"""Policies Telltale is compared with: the legacy runbook (what was logged), always taking
one action, a naive outcome regression, and the simulator's oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor

from models.mitigation.data import ACTIONS, COVARIATES, Featurizer


class NaiveRegression:
    """One gradient-boosted model of the raw outcome on X and the action taken; recommends
    the action with the lowest prediction. It adjusts for X only as far as a single tree
    model happens to, and is the "just fit a model to the history" approach that causal
    estimation has to beat."""

    def __init__(
        self,
        actions: tuple[str, ...] = ACTIONS,
        covariates: tuple[str, ...] = COVARIATES,
        categorical: tuple[str, ...] = ("fault",),
        random_state: int = 0,
    ) -> None:
        self.actions = tuple(actions)
        self.featurizer = Featurizer(covariates, categorical)
        self.random_state = random_state

    def fit(self, frame: pd.DataFrame, actions, y: np.ndarray) -> NaiveRegression:
        Z = self.featurizer.fit(frame).transform(frame)
        a_idx = np.array([self.actions.index(a) for a in actions])
        self.model = LGBMRegressor(
            n_estimators=400, learning_rate=0.05, num_leaves=31, min_child_samples=20,
            random_state=self.random_state, verbose=-1, n_jobs=1,
        )  # fmt: skip
        self.model.fit(np.hstack([Z, np.eye(len(self.actions))[a_idx]]), y)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted outcome under every action [n, K]."""
        Z = self.featurizer.transform(frame)
        eye = np.eye(len(self.actions))
        cols = [
            self.model.predict(np.hstack([Z, np.tile(eye[a], (len(Z), 1))]))
            for a in range(len(self.actions))
        ]
        return np.stack(cols, axis=1)

    def actions_for(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict(frame).argmin(axis=1)


def always(action: int, n: int) -> np.ndarray:
    return np.full(n, action, dtype=int)
