"""Dev-seed probe: does a linear map of the served P, fitted on the validation workloads,
undo the shrinkage towards the middle that unseen workloads show?

    PYTHONPATH=. python benchmarks/experiments/interference_recalibrate.py --seed 7 \
        --artefacts DIR        # DIR = evaluate --keep DIR of a run on the same seed

Rebuilds each partition's validation and test windows as the evaluation draws them (model
seed 0), predicts with the kept ensemble, fits P' = a + b * P on the validation windows
(least squares; least absolute deviation; per-validation-workload weights) and reports test
MAE with and without it. Only validation windows are used for fitting. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.optimize import minimize

from ingest.simulator import ARCHETYPES
from models.interference.data import simulated_windows, subsample
from models.interference.predictor import InterferencePredictor
from models.interference.train import split_by_group

FLEET = {"n_nodes": 50, "n_instances": 400, "hours": 24, "window": 20, "stride": 60}


def lad(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    b0 = np.polyfit(x, y, 1, w=np.sqrt(w))
    res = minimize(lambda ab: (w * np.abs(ab[1] + ab[0] * x - y)).sum(), b0, method="Nelder-Mead")
    return float(res.x[0]), float(res.x[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--artefacts", required=True)
    args = parser.parse_args()
    test_all = simulated_windows([args.seed], **FLEET)
    rng = np.random.default_rng(args.seed)
    for k in range(args.partitions):
        held = sorted(int(a) for a in rng.choice(len(ARCHETYPES), 3, False))
        pool = simulated_windows([args.seed + 1_000_003 * (k + 1)], **FLEET, exclude=held)
        pool = pool.take(~np.isnan(pool.p))
        _, val, _ = split_by_group(pool, 2, args.seed + k)
        val = subsample(val, 3000, k + 1)  # as train() does at model seed 0
        test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
        model = InterferencePredictor.load(f"{args.artefacts}/partition{k + 1}")
        pv = model.calibrated_mean(model.member_predictions(val))[:, 0]
        pt = model.calibrated_mean(model.member_predictions(test))[:, 0]
        row = {"partition": k + 1, "test_mae": float(100 * np.abs(pt - test.p).mean())}
        row["val_mae"] = float(100 * np.abs(pv - val.p).mean())
        ones = np.ones(len(pv))
        per_wl = np.array([1.0 / (val.group == g).sum() for g in val.group])
        fits = {
            "ls": tuple(np.polyfit(pv, val.p, 1)),
            "lad": lad(pv, val.p, ones),
            "lad_per_workload": lad(pv, val.p, per_wl),
        }
        for name, (b, a) in fits.items():
            adj = np.clip(a + b * pt, 0.0, 1.0)
            row[name] = {"slope": b, "intercept": a, "test_mae": float(100 * np.abs(adj - test.p).mean())}
        # How the test error splits by true P (shrinkage shows as opposite signs).
        for lo, hi in ((0, 0.7), (0.7, 0.95), (0.95, 1.01)):
            sel = (test.p >= lo) & (test.p < hi)
            if sel.any():
                row[f"bias_p{lo}-{hi}"] = float(100 * (pt[sel] - test.p[sel]).mean())
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
