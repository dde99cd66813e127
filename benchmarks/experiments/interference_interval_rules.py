"""Experiment: which margin rule makes the interval cover what it says on unseen workloads?

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/experiments/interference_interval_rules.py \
        --seed 7 --partitions 3 --artefacts DIR

DIR is ``--keep DIR`` of ``models.interference.evaluate --dataset sim --seed S --partitions P
--methods telltale`` (default fleet and model seed 0). For each partition this rebuilds the
validation and test windows exactly as the evaluation drew them, takes the kept ensemble's
raw interval (before any margin) and recomputes the conformal margin under each rule:

- ``max@L``: the largest per-validation-workload margin at level L (the served rule at
  L = the coverage target, 0.90);
- ``pooled@0.9``: one margin over the validation windows pooled (for reference).

It then reports the coverage and mean width of each rule's interval on the test workloads,
the coverage of the worst test workload, and the 90 % margin each test workload would have
needed. Only the margin changes; the nets are the kept ones. One JSON line per partition and
a last one with the means over partitions.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ingest.simulator import ARCHETYPES
from models.interference.calibration import (
    apply_margin,
    conformal_margin,
    group_margin,
    interval_metrics,
    serve_lone,
)
from models.interference.data import simulated_windows, subsample
from models.interference.features import without_neighbours
from models.interference.module import ensemble_mean
from models.interference.predictor import InterferencePredictor
from models.interference.train import TrainConfig, split_by_group

LEVELS = (0.9, 0.95, 0.975, 0.99)


def _served(raw: np.ndarray, lone: np.ndarray, margin: float) -> np.ndarray:
    return serve_lone(apply_margin(raw, margin), lone, margin)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--model-seed", type=int, default=0)
    parser.add_argument("--artefacts", required=True)
    args = parser.parse_args()
    fleet = {"n_nodes": 50, "n_instances": 400, "hours": 24.0, "window": 20, "stride": 60}
    test_all = simulated_windows([args.seed], **fleet)
    rng = np.random.default_rng(args.seed)
    rows = []
    for k in range(args.partitions):
        held = sorted(int(a) for a in rng.choice(len(ARCHETYPES), 3, False))
        pool = simulated_windows([args.seed + 1_000_003 * (k + 1)], **fleet, exclude=held)
        pool = pool.take(~np.isnan(pool.p))
        _, val, _ = split_by_group(pool, 2, args.seed + k)
        val = subsample(val, TrainConfig.max_val_windows, k + args.model_seed + 1)
        test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
        model = InterferencePredictor.load(f"{args.artefacts}/partition{k + 1}")
        raw_val = ensemble_mean(list(model.member_predictions(val).values()))
        raw_test = ensemble_mean(list(model.member_predictions(test).values()))
        lone_val, lone_test = without_neighbours(val), without_neighbours(test)
        fit_on = ~lone_val
        rules = {
            f"max@{level}": group_margin(raw_val[fit_on], val.p[fit_on], val.group[fit_on], level)
            for level in LEVELS
        }
        rules["pooled@0.9"] = conformal_margin(raw_val[fit_on], val.p[fit_on], 0.9)
        row: dict = {
            "partition": k + 1,
            "test_workloads": [ARCHETYPES[a].name for a in held],
            "stored_margin": model.margin,
            "max@0.9_reproduces_stored": bool(np.isclose(rules["max@0.9"], model.margin)),
        }
        for name, margin in rules.items():
            served = _served(raw_test, lone_test, margin)
            per = [
                interval_metrics(served[test.group == g], test.p[test.group == g])["coverage"]
                for g in np.unique(test.group)
            ]
            row[name] = {
                "margin": round(margin, 4),
                **{k2: round(v, 4) for k2, v in interval_metrics(served, test.p).items()},
                "worst_workload_coverage": round(min(per), 3),
            }
        row["test_workloads_need_at_0.9"] = [
            round(conformal_margin(raw_test[test.group == g], test.p[test.group == g], 0.9), 4)
            for g in np.unique(test.group)
        ]
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary: dict = {"seed": args.seed, "partitions": len(rows)}
    for name in [*(f"max@{level}" for level in LEVELS), "pooled@0.9"]:
        summary[name] = {
            key: round(float(np.mean([r[name][key] for r in rows])), 4)
            for key in ("coverage", "interval_width", "worst_workload_coverage")
        }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
