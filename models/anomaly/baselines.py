"""Baselines in the same code path as Telltale: each scores the same windows (its score
belongs to the window's last patch) and goes through the same calibration, threshold,
event and metric steps.

- ``RobustZ``: robust z-score per series, 0.6745 (x - median) / MAD, max over metrics,
  averaged over the last patch. Median and MAD come from the training part of the same
  series; for targets unseen in training (a new simulated fleet) from the window's own
  history instead.
- ``IsolationForestBaseline``: scikit-learn IsolationForest on per-window summaries of the
  last patch (mean and spread of the normalised metrics, and their level relative to the
  window's history).
- ``LogTfidfLR``: TF-IDF of the window's template buckets (last patch and whole window)
  with logistic regression; only where labels exist.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import sparse
from sklearn.ensemble import IsolationForest
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression

from models.anomaly.datamodule import window_labels
from models.anomaly.features import FeatureSpec, SeriesGroup, metric_summaries, transform
from models.anomaly.logmining import TemplateTable

MAX_FIT_WINDOWS = 20_000


def _sample(keys: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    if len(keys) <= n:
        return keys
    rng = np.random.default_rng(seed)
    return keys[np.sort(rng.choice(len(keys), n, replace=False))]


class RobustZ:
    name = "robust_z"

    def __init__(self, window_steps: int, patch_steps: int):
        self.window_steps, self.patch_steps = window_steps, patch_steps
        self.stats: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def fit(self, groups: list[SeriesGroup], specs: list[FeatureSpec | None]) -> RobustZ:
        for g, spec in zip(groups, specs, strict=True):
            if not g.values.shape[-1] or spec is None:
                continue
            x = transform(np.moveaxis(g.values, 0, 1), spec.kinds)  # [K, T, M]
            med = np.nanmedian(x, axis=1)
            mad = np.nanmedian(np.abs(x - med[:, None]), axis=1)
            floor = 0.01 * np.asarray(spec.scale, dtype=np.float64)
            for k, name in enumerate(g.target_names):
                self.stats[(g.name, name)] = (med[k], np.maximum(np.nan_to_num(mad[k]), floor))
        return self

    def raw(self, group: SeriesGroup, keys: np.ndarray, spec: FeatureSpec | None) -> dict:
        W, p = self.window_steps, self.patch_steps
        out = np.zeros(len(keys))
        for i in range(0, len(keys), 2048):
            k = keys[i : i + 2048]
            x = transform(group.window_values(k[:, 0], k[:, 1], W), spec.kinds)
            med = np.empty((len(k), x.shape[-1]))
            mad = np.empty_like(med)
            missing = []
            for j, t in enumerate(k[:, 0]):
                st = self.stats.get((group.name, group.target_names[t]))
                if st is None:
                    missing.append(j)
                else:
                    med[j], mad[j] = st
            if missing:
                hist = x[missing, :-p]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # targets that just started
                    m = np.nanmedian(hist, axis=1)
                    spread = np.nanmedian(np.abs(hist - m[:, None]), axis=1)
                med[missing] = m
                mad[missing] = np.maximum(np.nan_to_num(spread), 0.01 * np.asarray(spec.scale))
            z = np.abs(0.6745 * (x[:, -p:] - med[:, None]) / mad[:, None])
            z = np.nan_to_num(z, nan=0.0)
            out[i : i + len(k)] = z.max(axis=2).mean(axis=1)
        return {"raw": out}


class IsolationForestBaseline:
    name = "isolation_forest"

    def __init__(self, window_steps: int, patch_steps: int, seed: int = 0):
        self.window_steps, self.patch_steps, self.seed = window_steps, patch_steps, seed
        self.models: dict[str, IsolationForest] = {}

    def _features(self, group: SeriesGroup, keys: np.ndarray, spec: FeatureSpec) -> np.ndarray:
        parts = []
        for i in range(0, len(keys), 2048):
            k = keys[i : i + 2048]
            summary = metric_summaries(
                group.window_values(k[:, 0], k[:, 1], self.window_steps),
                spec,
                self.patch_steps,
                [group.target_names[t] for t in k[:, 0]],
            )
            last = summary[:, -1]  # [B, M, 5]: global mean, spread, local mean, ...
            parts.append(last[..., :3].reshape(len(k), -1))
        return np.concatenate(parts) if parts else np.zeros((0, 0))

    def fit(
        self, groups: list[SeriesGroup], keys: list[np.ndarray], specs: list[FeatureSpec | None]
    ) -> IsolationForestBaseline:
        feats: dict[str, list[np.ndarray]] = {}
        for g, k, spec in zip(groups, keys, specs, strict=True):
            if not g.values.shape[-1] or spec is None or not len(k):
                continue
            if g.label is not None:  # fit on windows not known to be anomalous
                lab, _ = window_labels(g, k, self.patch_steps)
                k = k[lab == 0] if (lab == 0).any() else k
            feats.setdefault(g.name, []).append(
                self._features(g, _sample(k, MAX_FIT_WINDOWS), spec)
            )
        for name, f in feats.items():
            x = np.concatenate(f)
            x = _sample(x, MAX_FIT_WINDOWS, self.seed)
            self.models[name] = IsolationForest(
                n_estimators=100, random_state=self.seed, n_jobs=1
            ).fit(x)
        return self

    def raw(self, group: SeriesGroup, keys: np.ndarray, spec: FeatureSpec | None) -> dict:
        model = self.models[group.name]
        return {"raw": -model.score_samples(self._features(group, keys, spec))}


class LogTfidfLR:
    name = "tfidf_logreg"

    def __init__(self, window_steps: int, patch_steps: int, table: TemplateTable, seed: int = 0):
        self.window_steps, self.patch_steps, self.table, self.seed = (
            window_steps,
            patch_steps,
            table,
            seed,
        )
        self.tfidf: dict[str, TfidfTransformer] = {}
        self.models: dict[str, LogisticRegression] = {}

    def _counts(self, group: SeriesGroup, keys: np.ndarray) -> sparse.csr_matrix:
        V = self.table.vocab_size
        win, in_w, tmpl, count = group.logs.window_entries(
            keys[:, 0], keys[:, 1], self.window_steps
        )
        if not len(win):
            return sparse.csr_matrix((len(keys), 2 * V))
        uniq, t_local = np.unique(tmpl, return_inverse=True)
        rows, offsets, weights = self.table.gather(uniq)
        lengths = np.diff(np.r_[offsets, len(rows)])
        # Expand each entry to its template's buckets.
        rep = lengths[t_local]
        entry = np.repeat(np.arange(len(win)), rep)
        start = np.repeat(offsets[t_local], rep)
        pos = start + np.arange(rep.sum()) - np.repeat(np.cumsum(rep) - rep, rep)
        col = rows[pos]
        val = count[entry] * weights[pos]
        last = in_w[entry] >= self.window_steps - self.patch_steps
        r = np.r_[win[entry][last], win[entry]]
        c = np.r_[col[last], col + V]
        v = np.r_[val[last], val]
        return sparse.csr_matrix((v, (r, c)), shape=(len(keys), 2 * V))

    def fit(self, groups: list[SeriesGroup], keys: list[np.ndarray]) -> LogTfidfLR:
        by: dict[str, tuple[list, list]] = {}
        for g, k in zip(groups, keys, strict=True):
            if g.logs is None or g.label is None or not len(k):
                continue
            k = _sample(k, 4 * MAX_FIT_WINDOWS, self.seed)
            lab, _ = window_labels(g, k, self.patch_steps)
            keep = lab >= 0
            xs, ys = by.setdefault(g.name, ([], []))
            xs.append(self._counts(g, k[keep]))
            ys.append(lab[keep])
        for name, (xs, ys) in by.items():
            y = np.concatenate(ys)
            if len(np.unique(y)) < 2:
                continue
            tf = TfidfTransformer(sublinear_tf=True).fit(sparse.vstack(xs))
            self.tfidf[name] = tf
            self.models[name] = LogisticRegression(
                C=1.0, class_weight="balanced", max_iter=2000, random_state=self.seed
            ).fit(tf.transform(sparse.vstack(xs)), y)
        return self

    def covers(self, group: str) -> bool:
        return group in self.models

    def raw(self, group: SeriesGroup, keys: np.ndarray, spec: FeatureSpec | None) -> dict:
        if group.name not in self.models:  # no labelled positives to learn from: no alarms
            return {"raw": np.zeros(len(keys))}
        x = self.tfidf[group.name].transform(self._counts(group, keys))
        return {"raw": self.models[group.name].decision_function(x)}
