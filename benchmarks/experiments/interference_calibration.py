"""Dev-seed probe: how wide must the interval be to cover unseen workloads?

    PYTHONPATH=. python benchmarks/experiments/interference_calibration.py --seed 7 \
        --artefacts DIR        # DIR = evaluate --keep DIR of a run on the same seed

For each partition, rebuilds the validation windows as the evaluation draws them, recomputes
the margin as the largest per-validation-workload conformal margin at several levels, and
reports coverage and width on the test windows, plus the margin each test workload would
need for 90 %. Only the margin changes; the nets are the kept ones. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ingest.simulator import ARCHETYPES
from models.interference.calibration import apply_margin, conformal_margin, interval_metrics
from models.interference.data import simulated_windows, subsample
from models.interference.module import predict_array
from models.interference.predictor import InterferencePredictor
from models.interference.train import split_by_group

FLEET = {"n_nodes": 50, "n_instances": 400, "hours": 24, "window": 20, "stride": 60}


def per_group(pred: np.ndarray, y: np.ndarray, groups: np.ndarray, coverage: float) -> list:
    return [
        conformal_margin(pred[groups == g], y[groups == g], coverage) for g in np.unique(groups)
    ]


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
        raw_val = predict_array(model.net, model.scaler.encode(val))
        raw_test = predict_array(model.net, model.scaler.encode(test))
        row: dict = {"partition": k + 1, "stored_margin": model.margin}
        for level in (0.9, 0.95, 0.99):
            margin = max(per_group(raw_val, val.p, val.group, level))
            row[f"val_max_at_{level}"] = {
                "margin": margin,
                **interval_metrics(apply_margin(raw_test, margin), test.p),
            }
        row["test_workloads_need_at_0.9"] = per_group(raw_test, test.p, test.group, 0.9)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
