"""Baselines, evaluated on exactly the same windows and splits as the transformer.

- ``random_forest`` and ``gradient_boosting`` (LightGBM) on the pooled statistics (the
  system branch's per-metric statistics flattened, plus the node context): CloudFormer's
  random-forest comparison, and the strongest classical model we know for tabular data.
- ``linear``: ridge regression on the same pooled statistics (clipped to [0, 1]).
- ``lstm``: an LSTM over the per-step features the temporal branch sees, trained through
  the same LightningModule (log-cosh, warm-up + cosine), last valid state → MLP → sigmoid.
- ``mean``: the mean P of the training windows, the floor any model has to beat.
- ``no_interference``: P = 1 for everyone, what a tool without interference prediction
  implicitly says; on a real host whose P differs from the training data's, the floor
  that matters.

All are tuned once with sensible defaults, never on test data. Each ``fit`` receives the
validation windows too; only the LSTM uses them (best epoch), the others ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch import nn

from models.interference.components import LSTMNet
from models.interference.encoding import Encoded
from models.interference.module import fit_best_epoch, predict_array

METHODS: tuple[str, ...] = (
    "random_forest", "gradient_boosting", "linear", "lstm", "mean", "no_interference",
)  # fmt: skip


@dataclass
class BaselineConfig:
    rf_trees: int = 200
    gbm_trees: int = 400
    lstm_hidden: int = 64
    lstm_epochs: int = 10
    lstm_batch: int = 256
    threads: int = 2
    seed: int = 0


class Baseline:
    def __init__(self, method: str, cfg: BaselineConfig | None = None):
        if method not in METHODS:
            raise ValueError(f"unknown baseline {method!r}; known: {METHODS}")
        self.method = method
        self.cfg = cfg or BaselineConfig()
        self.model: object | None = None

    def fit(self, train: Encoded, val: Encoded) -> Baseline:
        c = self.cfg
        x, y = train.pooled(), train.p
        if self.method == "random_forest":
            from sklearn.ensemble import RandomForestRegressor

            # Bootstrap half the rows per tree: same accuracy here, half the time.
            self.model = RandomForestRegressor(
                n_estimators=c.rf_trees,
                min_samples_leaf=5,
                max_features=0.3,
                max_samples=0.5,
                n_jobs=c.threads,
                random_state=c.seed,
            ).fit(x, y)
        elif self.method == "gradient_boosting":
            import lightgbm as lgb

            self.model = lgb.LGBMRegressor(
                n_estimators=c.gbm_trees,
                learning_rate=0.05,
                num_leaves=31,
                min_child_samples=20,
                subsample=0.8,
                subsample_freq=1,
                colsample_bytree=0.5,
                n_jobs=c.threads,
                random_state=c.seed,
                verbose=-1,
            ).fit(x, y)
        elif self.method == "mean":
            self.model = float(np.mean(y))
        elif self.method == "no_interference":
            self.model = 1.0
        elif self.method == "linear":
            from sklearn.linear_model import Ridge

            self.model = Ridge(alpha=1.0).fit(x, y)
        else:
            self.model = _fit_lstm(train, val, c)
        return self

    def predict(self, enc: Encoded) -> np.ndarray:
        """P [N] in [0, 1]."""
        if self.model is None:
            raise RuntimeError("fit first")
        if isinstance(self.model, float):
            return np.full(len(enc), self.model)
        if isinstance(self.model, nn.Module):
            return predict_array(self.model, enc)[:, 0]
        return np.clip(self.model.predict(enc.pooled()), 0.0, 1.0)  # type: ignore[attr-defined]


def _fit_lstm(train: Encoded, val: Encoded, c: BaselineConfig) -> nn.Module:
    torch.set_num_threads(c.threads)
    L.seed_everything(c.seed, verbose=False)
    net = LSTMNet(train.steps.shape[2], c.lstm_hidden)
    fit_best_epoch(net, train, val, epochs=c.lstm_epochs, batch_size=c.lstm_batch, seed=c.seed)
    return net
