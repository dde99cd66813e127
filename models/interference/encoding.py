"""Raw windows → normalised model inputs, with the statistics stored in the artefact.

Three views of one window, all computed from the same transformed values:

- ``steps`` [N, T, F]: per step, the victim's metrics, the neighbours' mean, max and sum,
  which victim metrics are missing, the neighbour count and resource pressures (neighbour
  demand over node capacity). Input of the temporal branch and of the LSTM baseline.
- ``tokens`` [N, M, S]: per metric, time-pooled statistics (victim level, spread, extremes,
  last value, trend, missing fraction; neighbour mean/max/sum levels). Input of the system
  branch; flattened, the "pooled statistics" the tree and linear baselines use.
- ``context`` [N, C]: node capacity (log), pooled pressures and neighbour counts.

Byte rates, counts and latencies span orders of magnitude and act multiplicatively, so
they are log-transformed (``log1p(x / scale)``); ratios and IPC stay linear. Every feature
is then z-scored with training statistics, and NaN becomes 0 (the training mean) with the
missing flags telling the model it happened.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.interference.features import CAPACITY_KEYS, PRESSURE_PAIRS, TOKEN_STATS, Windows

N_PRESSURE = 2 * len(PRESSURE_PAIRS)
CONTEXT_NAMES: tuple[str, ...] = (
    *(f"log_{k}" for k in CAPACITY_KEYS),
    *(f"{w}_{r}_{s}" for s in ("mean", "max") for w in ("nbr", "own") for _, r in PRESSURE_PAIRS),
    "nbr_count_mean",
    "nbr_count_max",
    "valid_fraction",
)


def metric_scales(names: Sequence[str]) -> np.ndarray:
    """Scale of the log transform per metric; 0 means 'keep linear'."""
    out = []
    for n in names:
        if n.endswith("_ratio") or n == "vm_ipc":
            out.append(0.0)
        elif n.endswith("_seconds"):
            out.append(1e-4)  # latencies are fractions of a millisecond to seconds
        else:
            out.append(1.0)
    return np.array(out)


def transform(x: np.ndarray, scales: np.ndarray) -> np.ndarray:
    lin = scales == 0
    logged = np.log1p(np.maximum(x, 0.0) / np.where(lin, 1.0, scales))
    return np.where(lin, x, logged)


@dataclass
class Encoded:
    steps: np.ndarray  # float32 [N, T, F]
    pad: np.ndarray  # bool [N, T], True where the step is padding or the victim is absent
    tokens: np.ndarray  # float32 [N, M, S]
    context: np.ndarray  # float32 [N, C]
    p: np.ndarray  # float32 [N]

    def __len__(self) -> int:
        return len(self.p)

    def pooled(self) -> np.ndarray:
        """Flat pooled statistics [N, M*S + C] for the non-sequence baselines."""
        return np.concatenate([self.tokens.reshape(len(self), -1), self.context], axis=1)


def _masked_stats(x: np.ndarray, has: np.ndarray) -> list[np.ndarray]:
    """Mean, std, min, max, last and half-to-half change over steps where ``has`` [N, T, M]."""
    cnt = has.sum(axis=1)
    z = np.where(has, x, 0.0)
    mean = np.where(cnt > 0, z.sum(axis=1) / np.maximum(cnt, 1), np.nan)
    var = np.where(has, (x - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(cnt, 1)
    std = np.where(cnt > 0, np.sqrt(var), np.nan)
    mn = np.where(cnt > 0, np.where(has, x, np.inf).min(axis=1), np.nan)
    mx = np.where(cnt > 0, np.where(has, x, -np.inf).max(axis=1), np.nan)
    T = x.shape[1]
    last_idx = T - 1 - np.argmax(has[:, ::-1], axis=1)
    last = np.take_along_axis(x, last_idx[:, None, :], axis=1)[:, 0]
    last = np.where(cnt > 0, last, np.nan)
    h = T // 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = z[:, :h].sum(1) / has[:, :h].sum(1)
        b = z[:, h:].sum(1) / has[:, h:].sum(1)
    delta = np.where(np.isfinite(a) & np.isfinite(b), b - a, 0.0)
    return [mean, std, mn, mx, last, delta]


def raw_features(w: Windows, metric_names: Sequence[str]) -> tuple[np.ndarray, ...]:
    """Unnormalised (steps, tokens, context) with NaN where undefined."""
    names = list(metric_names)
    scales = metric_scales(names)
    valid = w.valid
    v = transform(w.victim.astype(np.float64), scales)
    nm = transform(w.nbr_mean.astype(np.float64), scales)
    nx = transform(w.nbr_max.astype(np.float64), scales)
    ns = transform(w.nbr_sum.astype(np.float64), scales)
    has_v = valid[..., None] & ~np.isnan(v)
    missing = (valid[..., None] & np.isnan(v)).astype(np.float64)
    cap = w.capacity.astype(np.float64)
    pressure = []
    for source in (w.nbr_sum, w.victim):
        for metrics, key in PRESSURE_PAIRS:
            cols = [names.index(m) for m in metrics]
            demand = np.nan_to_num(source[..., cols].astype(np.float64)).sum(axis=-1)
            pressure.append(demand / cap[:, None, CAPACITY_KEYS.index(key)])
    press = np.stack(pressure, axis=-1)  # [N, T, 6]
    count = w.nbr_count.astype(np.float64)[..., None]
    steps = np.concatenate([v, nm, nx, ns, missing, count, press], axis=-1)
    steps = np.where(valid[..., None], steps, np.nan)

    vstats = _masked_stats(v, has_v)
    vmask = np.broadcast_to(valid[..., None], nm.shape)
    nm_s, nx_s, ns_s = (_masked_stats(a, vmask) for a in (nm, nx, ns))
    miss_frac = missing.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)[:, None]
    tokens = np.stack(
        [*vstats, miss_frac, nm_s[0], nm_s[3], nx_s[0], nx_s[3], ns_s[0], ns_s[1], ns_s[3]],
        axis=-1,
    )
    assert tokens.shape[-1] == len(TOKEN_STATS)
    pmask = np.broadcast_to(valid[..., None], press.shape)
    p_stats = _masked_stats(press, pmask)
    c_stats = _masked_stats(count, valid[..., None])
    context = np.concatenate(
        [
            np.log(np.maximum(cap, 1e-9)),
            p_stats[0],
            p_stats[3],
            c_stats[0],
            c_stats[3],
            valid.mean(axis=1, keepdims=True),
        ],
        axis=1,
    )
    return steps, tokens, context


def _moments(x: np.ndarray, axis: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=axis)
        std = np.nanstd(x, axis=axis)
    mean = np.nan_to_num(mean)
    std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
    return mean, std


@dataclass
class FeatureScaler:
    """Normalisation statistics, fitted on training windows only."""

    metric_names: list[str]
    window: int
    step_mean: np.ndarray
    step_std: np.ndarray
    token_mean: np.ndarray
    token_std: np.ndarray
    context_mean: np.ndarray
    context_std: np.ndarray

    @classmethod
    def fit(cls, w: Windows, metric_names: Sequence[str]) -> FeatureScaler:
        steps, tokens, context = raw_features(w, metric_names)
        sm, ss = _moments(steps, (0, 1))
        tm, ts = _moments(tokens, (0,))
        cm, cs = _moments(context, (0,))
        return cls(list(metric_names), w.victim.shape[1], sm, ss, tm, ts, cm, cs)

    def encode(self, w: Windows) -> Encoded:
        steps, tokens, context = raw_features(w, self.metric_names)

        def z(x: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
            # Clipped: one absurd sample must not dominate attention or the trees' splits.
            return np.clip(np.nan_to_num((x - m) / s), -10, 10).astype(np.float32)

        return Encoded(
            steps=z(steps, self.step_mean, self.step_std),
            pad=~w.valid,
            tokens=z(tokens, self.token_mean, self.token_std),
            context=z(context, self.context_mean, self.context_std),
            p=w.p.astype(np.float32),
        )

    @property
    def dims(self) -> dict[str, int]:
        return {
            "step_features": len(self.step_mean),
            "n_metrics": self.token_mean.shape[0],
            "token_features": self.token_mean.shape[1],
            "context_features": len(self.context_mean),
        }

    def to_dict(self) -> dict:
        return {
            "metric_names": self.metric_names,
            "window": self.window,
            **{
                k: getattr(self, k).tolist()
                for k in ("step_mean", "step_std", "token_mean", "token_std")
            },
            "context_mean": self.context_mean.tolist(),
            "context_std": self.context_std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeatureScaler:
        arrays = {
            k: np.asarray(d[k], dtype=np.float64)
            for k in (
                "step_mean",
                "step_std",
                "token_mean",
                "token_std",
                "context_mean",
                "context_std",
            )
        }
        return cls(list(d["metric_names"]), int(d["window"]), **arrays)
