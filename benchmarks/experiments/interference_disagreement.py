"""Dev-seed probe: does the members' disagreement tell which intervals must be wider?

    PYTHONPATH=. python benchmarks/experiments/interference_disagreement.py --seed 7 \
        --artefacts DIR        # DIR = evaluate --keep DIR of an ensemble run on the same seed

For each partition, rebuilds the validation and test windows as the evaluation draws them,
and compares the default margin (largest per-validation-workload conformal margin) with a
normalised one: each window's conformity score divided by (|P_transformer - P_lstm| + c), so
the interval widens where the two members disagree. Reports the rank correlation of
disagreement with the ensemble's absolute error, coverage and width of both, and the
coverage a uniform margin reaches at the normalised interval's mean width (the fair
comparison: any rule buys coverage by widening). Prints JSON lines.
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
from scipy.stats import spearmanr

from ingest.simulator import ARCHETYPES
from models.interference.calibration import apply_margin, group_margin, interval_metrics
from models.interference.data import simulated_windows, subsample
from models.interference.module import ensemble_mean
from models.interference.predictor import InterferencePredictor
from models.interference.train import split_by_group

FLEET = {"n_nodes": 50, "n_instances": 400, "hours": 24, "window": 20, "stride": 60}


def scores(raw: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum(raw[:, 1] - y, y - raw[:, 2])


def normalised_margin(raw, y, scale, groups, coverage) -> float:
    """Largest per-workload quantile of score / scale (finite-sample corrected)."""
    out = []
    for g in np.unique(groups):
        s = scores(raw[groups == g], y[groups == g]) / scale[groups == g]
        n = len(s)
        level = min(np.ceil((n + 1) * coverage) / n, 1.0)
        out.append(float(np.quantile(s, level, method="higher")))
    return max(out)


def widen(raw: np.ndarray, half: np.ndarray) -> np.ndarray:
    out = raw.copy()
    out[:, 1] = np.clip(np.minimum(raw[:, 1] - half, raw[:, 0]), 0, 1)
    out[:, 2] = np.clip(np.maximum(raw[:, 2] + half, raw[:, 0]), 0, 1)
    return out


def width_matched_uniform(raw: np.ndarray, y: np.ndarray, width_pp: float) -> dict:
    lo, hi = -0.5, 0.5
    for _ in range(50):
        mid = (lo + hi) / 2
        if interval_metrics(apply_margin(raw, mid), y)["interval_width"] < width_pp:
            lo = mid
        else:
            hi = mid
    return {"margin": lo, **interval_metrics(apply_margin(raw, lo), y)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--model-seed", type=int, default=0)
    parser.add_argument("--artefacts", required=True)
    parser.add_argument("--offsets", default="0.25,0.5,1,2")
    parser.add_argument("--subsets-only", action="store_true")
    args = parser.parse_args()
    test_all = simulated_windows([args.seed], **FLEET)
    rng = np.random.default_rng(args.seed)
    for k in range(args.partitions):
        held = sorted(int(a) for a in rng.choice(len(ARCHETYPES), 3, False))
        pool = simulated_windows([args.seed + 1_000_003 * (k + 1)], **FLEET, exclude=held)
        pool = pool.take(~np.isnan(pool.p))
        _, val, _ = split_by_group(pool, 2, args.seed + k)
        val = subsample(val, 3000, k + args.model_seed + 1)  # as train() does
        test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
        model = InterferencePredictor.load(f"{args.artefacts}/partition{k + 1}")
        mv, mt = model.member_predictions(val), model.member_predictions(test)
        raw_val, raw_test = ensemble_mean(list(mv.values())), ensemble_mean(list(mt.values()))
        row: dict = {"partition": k + 1, "members": list(mv), "stored_margin": model.margin}
        margin = group_margin(raw_val, val.p, val.group, 0.9)
        row["rebuilt_margin"] = margin
        row["default"] = interval_metrics(apply_margin(raw_test, margin), test.p)
        row["test_mae"] = float(100 * np.abs(raw_test[:, 0] - test.p).mean())
        names = list(mt)
        for r in range(1, len(names) + 1):  # every subset of the members, averaged
            for combo in itertools.combinations(names, r):
                mean = np.mean([mt[n][:, 0] for n in combo], axis=0)
                row.setdefault("subset_mae", {})["+".join(combo)] = float(
                    100 * np.abs(mean - test.p).mean()
                )
        if args.subsets_only:
            print(json.dumps(row), flush=True)
            continue
        if len(mv) < 2:
            print(json.dumps(row), flush=True)
            continue
        d_val = np.abs(mv["transformer"][:, 0] - mv["lstm"][:, 0])
        d_test = np.abs(mt["transformer"][:, 0] - mt["lstm"][:, 0])
        err = np.abs(raw_test[:, 0] - test.p)
        row["spearman_d_err_test"] = float(spearmanr(d_test, err).statistic)
        row["spearman_d_err_val"] = float(spearmanr(d_val, np.abs(raw_val[:, 0] - val.p)).statistic)
        row["median_d_val"] = float(np.median(d_val))
        row["per_workload_test"] = {
            ARCHETYPES[int(g)].name: {
                "mae": float(100 * err[test.group == g].mean()),
                "mean_d_pp": float(100 * d_test[test.group == g].mean()),
            }
            for g in np.unique(test.group)
        }
        med = float(np.median(d_val))
        for c in [float(x) for x in args.offsets.split(",")]:
            scale_val, scale_test = d_val + c * med, d_test + c * med
            q = normalised_margin(raw_val, val.p, scale_val, val.group, 0.9)
            norm = interval_metrics(widen(raw_test, q * scale_test), test.p)
            row[f"normalised_c{c}"] = {
                "q": q,
                **norm,
                "uniform_at_same_width": width_matched_uniform(
                    raw_test, test.p, norm["interval_width"]
                ),
            }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
