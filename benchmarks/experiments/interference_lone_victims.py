"""Lone victims (no neighbour in the window) on a sparse simulated fleet: what the nets of an
artefact predict for them against what the predictor serves (P = 1, ``serve_lone``).

    PYTHONPATH=. .venv/bin/python benchmarks/experiments/interference_lone_victims.py MODEL_DIR

MODEL_DIR: an interference artefact, e.g. a partition kept by ``evaluate --keep DIR``. The
fleet (seed 99, 50 nodes, 70 instances, 4 hours) is far sparser than the training fleets
(400 instances on 50 nodes), so many victims run alone. Prints JSON.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from models.interference.calibration import apply_margin, interval_metrics
from models.interference.data import simulated_windows
from models.interference.features import without_neighbours
from models.interference.module import ensemble_mean
from models.interference.predictor import InterferencePredictor


def _figures(out: np.ndarray, p: np.ndarray) -> dict:
    return {"mae_pp": float(100 * np.abs(out[:, 0] - p).mean()), **interval_metrics(out, p)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--instances", type=int, default=70)
    args = parser.parse_args()
    model = InterferencePredictor.load(args.model_dir)
    w = simulated_windows(
        [args.seed], n_nodes=50, n_instances=args.instances, hours=4, window=20, stride=60
    )
    w = w.take(~np.isnan(w.p))
    lone = without_neighbours(w)
    members = model.member_predictions(w)
    nets = apply_margin(ensemble_mean(list(members.values())), model.margin)
    served = model.served(w, members)
    result = {
        "windows": len(w),
        "lone": int(lone.sum()),
        "lone_true_p_mean": float(w.p[lone].mean()),
        "lone_true_p_min": float(w.p[lone].min()),
        "margin": model.margin,
        "nets": {"lone": _figures(nets[lone], w.p[lone]), "all": _figures(nets, w.p)},
        "served": {"lone": _figures(served[lone], w.p[lone]), "all": _figures(served, w.p)},
        "p_equal_to_one": _figures(np.ones((int(lone.sum()), 3)), w.p[lone]),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
