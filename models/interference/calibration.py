"""Split-conformal calibration of the quantile heads (conformalised quantile regression).

The quantile heads give a raw interval [low, high]; on held-out validation windows we find
the margin q by which it must be widened (or narrowed, q < 0) so that the target share of
windows falls inside. With validation workloads held out from fitting, the margin reflects
the error on workloads the model has not seen, which is the situation of a real fleet.

Windows of one workload are not exchangeable with those of another (each unseen workload
has its own bias), so with several validation workloads the margin is the largest of the
per-workload margins: the interval then covers the target share of *every* validation
workload, not only of their pooled windows, which transfers better to the next new one.
Training calibrates each validation workload at a higher level than the target
(``TrainConfig.workload_coverage``, 0.99 for a 0.9 target): with two validation workloads,
a third new one needs more than the larger of their margins about one time in three.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CALIBRATION_FILE = "calibration.json"  # in the artefact: margin, coverage_target, ...


def read_calibration(artefact_dir: str | Path) -> dict:
    """The artefact's calibration record (raises OSError / ValueError when unreadable)."""
    return json.loads((Path(artefact_dir) / CALIBRATION_FILE).read_text())


def conformal_margin(pred: np.ndarray, y: np.ndarray, coverage: float) -> float:
    """Margin for ``pred`` [N, 3] (P, low, high) so that [low - q, high + q] covers ``coverage``
    of ``y`` with the finite-sample correction."""
    ok = ~np.isnan(y)
    if not ok.any():
        return 0.0
    score = np.maximum(pred[ok, 1] - y[ok], y[ok] - pred[ok, 2])
    n = len(score)
    level = min(np.ceil((n + 1) * coverage) / n, 1.0)
    return float(np.quantile(score, level, method="higher"))


def group_margin(pred: np.ndarray, y: np.ndarray, groups: np.ndarray, coverage: float) -> float:
    """The largest per-group conformal margin (groups under 20 windows are pooled together)."""
    ids, counts = np.unique(groups, return_counts=True)
    big = ids[counts >= 20]
    margins = [conformal_margin(pred[groups == g], y[groups == g], coverage) for g in big]
    small = ~np.isin(groups, big)
    if small.any() or not margins:
        margins.append(conformal_margin(pred[small], y[small], coverage))
    return max(margins)


def serve_lone(pred: np.ndarray, lone: np.ndarray, margin: float) -> np.ndarray:
    """``pred`` [N, 3] with the victims that had no neighbour (``lone`` [N]) at P = 1: nothing
    co-located slows them. Their interval is [1 - margin, 1]: measured P still varies by
    measurement noise, and the calibrated margin, the part of the uncertainty the quantile
    heads miss, is the only width fitted on held-out data (the training fleets are dense, so
    it is not fitted on lone victims; docs/interference.md measures what it covers)."""
    out = pred.copy()
    out[lone] = (1.0, float(np.clip(1.0 - margin, 0.0, 1.0)), 1.0)  # a margin may be < 0
    return out


def apply_margin(pred: np.ndarray, margin: float) -> np.ndarray:
    """[N, 3] with the calibrated interval, clipped to [0, 1] and always containing P."""
    out = pred.copy()
    out[:, 1] = np.clip(np.minimum(pred[:, 1] - margin, pred[:, 0]), 0.0, 1.0)
    out[:, 2] = np.clip(np.maximum(pred[:, 2] + margin, pred[:, 0]), 0.0, 1.0)
    return out


def interval_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Coverage (share of y inside) and mean width, in percentage points of P."""
    inside = (y >= pred[:, 1]) & (y <= pred[:, 2])
    return {
        "coverage": float(inside.mean()) if len(y) else float("nan"),
        "interval_width": float(100 * (pred[:, 2] - pred[:, 1]).mean()) if len(y) else float("nan"),
    }
