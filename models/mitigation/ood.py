"""Is an event like the ones the causal model was trained on? An effect estimate far from
the training data is an extrapolation of trees, so the policy hands such events back to the
legacy runbook instead of trusting it."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from models.mitigation.data import Featurizer


class OODDetector:
    """Isolation-forest score plus hard checks.

    The score is ``-IsolationForest.score_samples`` (higher = more unusual). An event is out
    of distribution when its score exceeds the chosen quantile of the training scores, or
    when a hard check fails: a category never seen in training, or a numeric covariate
    beyond the training range by more than ``range_margin`` of that range (trees predict a
    constant there, so the estimate says nothing about the event).
    """

    def __init__(self, range_margin: float = 0.1, random_state: int = 0) -> None:
        self.range_margin = range_margin
        self.random_state = random_state

    def fit(self, frame: pd.DataFrame, featurizer: Featurizer) -> OODDetector:
        self.featurizer = featurizer
        z = featurizer.transform(frame)
        self.center = z.mean(axis=0)
        self.scale = np.where(z.std(axis=0) > 0, z.std(axis=0), 1.0)
        self.forest = IsolationForest(n_estimators=200, random_state=self.random_state).fit(
            (z - self.center) / self.scale
        )
        numeric = frame[list(featurizer.numeric)].to_numpy(dtype=float)
        self.low, self.high = numeric.min(axis=0), numeric.max(axis=0)
        self.train_scores = np.sort(self._forest_score(z))
        return self

    def _forest_score(self, z: np.ndarray) -> np.ndarray:
        return -self.forest.score_samples((z - self.center) / self.scale)

    def hard_violation(self, frame: pd.DataFrame) -> np.ndarray:
        numeric = frame[list(self.featurizer.numeric)].to_numpy(dtype=float)
        margin = self.range_margin * np.maximum(self.high - self.low, 1e-9)
        outside = (numeric < self.low - margin) | (numeric > self.high + margin)
        return outside.any(axis=1) | self.featurizer.unknown_category(frame)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Unusualness per event; ``inf`` where a hard check fails."""
        s = self._forest_score(self.featurizer.transform(frame))
        return np.where(self.hard_violation(frame), np.inf, s)

    def threshold(self, quantile: float) -> float:
        """Score above which an event is out of distribution: ``quantile`` of training."""
        if quantile >= 1.0:
            return float("inf")
        return float(np.quantile(self.train_scores, quantile))

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Share of training events that look more ordinary than each score (0..1)."""
        return np.searchsorted(self.train_scores, scores, side="right") / len(self.train_scores)
