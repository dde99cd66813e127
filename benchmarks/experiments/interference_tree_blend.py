"""Probe (development seeds only): blend the served nets with gradient boosting, the blend
weight chosen on each partition's validation workloads.

On fresh test fleet 23 the nets were 10-22 pp too optimistic for every workload they had not
seen (validation ones included) while the trees stayed near the training mean. If the
validation workloads show the nets failing, a weight chosen there could hand such partitions
to the trees. This scores, per partition of `evaluate --dataset sim --seed S --partitions P
--methods telltale --keep DIR`: the nets as served, gradient boosting, their fixed average,
and the average with the weight w in {0, 0.1, ..., 1} that minimises validation MAE.

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/experiments/interference_tree_blend.py \
        --seed S --partitions P --artefacts DIR
Prints one JSON line per partition and one for the mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ingest.simulator import ARCHETYPES
from models.interference.baselines import Baseline, BaselineConfig
from models.interference.data import simulated_windows, subsample
from models.interference.predictor import InterferencePredictor
from models.interference.train import TrainConfig, split_by_group

WEIGHTS = np.round(np.linspace(0, 1, 11), 1)


def mae(pred: np.ndarray, p: np.ndarray) -> float:
    return float(100 * np.abs(pred - p).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--artefacts", required=True)
    args = ap.parse_args()
    fleet = {"n_nodes": 50, "n_instances": 400, "hours": 24.0}
    win = {"window": 20, "stride": 60}
    cfg_defaults = TrainConfig()
    test_all = simulated_windows([args.seed], **fleet, **win)
    rng = np.random.default_rng(args.seed)
    rows = []
    for k in range(args.partitions):
        held = sorted(int(a) for a in rng.choice(len(ARCHETYPES), 3, False))
        pool = simulated_windows([args.seed + 1_000_003 * (k + 1)], **fleet, **win, exclude=held)
        pool = pool.take(~np.isnan(pool.p))
        fit, val, _ = split_by_group(pool, 2, args.seed + k)
        test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
        model = InterferencePredictor.load(Path(args.artefacts) / f"partition{k + 1}")
        fit_s = subsample(fit, cfg_defaults.max_train_windows, k)
        val_s = subsample(val, cfg_defaults.max_val_windows, k + 1)
        gb = Baseline("gradient_boosting", BaselineConfig(threads=1)).fit(
            model.scaler.encode(fit_s), model.scaler.encode(val_s)
        )
        nets = {
            name: model.calibrated_mean(model.member_predictions(w))[:, 0]
            for name, w in (("val", val), ("test", test))
        }
        trees = {
            name: gb.predict(model.scaler.encode(w)) for name, w in (("val", val), ("test", test))
        }
        val_mae = [mae(w * nets["val"] + (1 - w) * trees["val"], val.p) for w in WEIGHTS]
        w_best = float(WEIGHTS[int(np.argmin(val_mae))])
        row = {
            "partition": k + 1,
            "unseen": [ARCHETYPES[a].name for a in held],
            "val_nets": round(mae(nets["val"], val.p), 2),
            "val_trees": round(mae(trees["val"], val.p), 2),
            "w": w_best,
            "nets": round(mae(nets["test"], test.p), 2),
            "trees": round(mae(trees["test"], test.p), 2),
            "half": round(mae(0.5 * nets["test"] + 0.5 * trees["test"], test.p), 2),
            "chosen": round(mae(w_best * nets["test"] + (1 - w_best) * trees["test"], test.p), 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = {
        key: round(float(np.mean([r[key] for r in rows])), 3)
        for key in ("nets", "trees", "half", "chosen")
    }
    print(json.dumps({"seed": args.seed, "mean": mean}))


if __name__ == "__main__":
    main()
