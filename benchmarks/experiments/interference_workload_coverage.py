"""Dev-seed check of why intervals under-cover unseen workloads: per partition, the 90 %
conformal margin each validation workload needs and each test workload would need.

    PYTHONPATH=. python benchmarks/experiments/interference_workload_coverage.py --seed S \
        --artefacts DIR     # DIR = evaluate --keep DIR of `--seed S --partitions 3`

If workloads' margins are exchangeable, a test workload needs more than the larger of two
validation margins with probability 1/3. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ingest.simulator import ARCHETYPES
from models.interference.calibration import conformal_margin
from models.interference.data import simulated_windows, subsample
from models.interference.module import predict_array
from models.interference.predictor import InterferencePredictor
from models.interference.train import split_by_group

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=7)
parser.add_argument("--partitions", type=int, default=3)
parser.add_argument("--artefacts", required=True)
ARGS = parser.parse_args()
FLEET = {"n_nodes": 50, "n_instances": 400, "hours": 24.0, "window": 20, "stride": 60}


def margins(model, w) -> dict[str, float]:
    raw = predict_array(model.net, model.scaler.encode(w))
    return {
        ARCHETYPES[g].name: round(conformal_margin(raw[w.group == g], w.p[w.group == g], 0.9), 4)
        for g in np.unique(w.group)
    }


def main() -> None:
    test_all = simulated_windows([ARGS.seed], **FLEET)
    rng = np.random.default_rng(ARGS.seed)
    for k in range(ARGS.partitions):
        held = sorted(int(a) for a in rng.choice(len(ARCHETYPES), 3, False))
        pool = simulated_windows([ARGS.seed + 1_000_003 * (k + 1)], **FLEET, exclude=held)
        pool = pool.take(~np.isnan(pool.p))
        _, val, _ = split_by_group(pool, 2, ARGS.seed + k)
        test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
        art = Path(ARGS.artefacts) / f"partition{k + 1}"
        model = InterferencePredictor.load(art)
        cfg = json.loads((art / "config.json").read_text())["train"]
        val = subsample(val, cfg["max_val_windows"], cfg["seed"] + 1)
        val_m, test_m = margins(model, val), margins(model, test)
        used = max(val_m.values())
        print(json.dumps({
            "partition": k + 1, "margin_used": used, "val": val_m, "test": test_m,
            "test_needing_more": sorted(n for n, m in test_m.items() if m > used),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
