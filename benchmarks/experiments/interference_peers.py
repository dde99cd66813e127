"""Dev-seed probe with LightGBM on pooled statistics: do same-workload peers help on unseen
workloads?

    PYTHONPATH=. python benchmarks/experiments/interference_peers.py --seed 7 --partitions 3 \
        --mode {base,peers}

``peers`` adds, per window, how the victim compares with the other instances of its own
workload at the same time (the app's ``Instance.workload``; CPI² compares a task with the
other tasks of its job the same way): per metric the victim's pooled level minus the peers'
10th/50th/90th percentile and minus the mean of the least pressured third of the peers,
plus the peer count and the pressure gap. Same partitions, validation workloads and training
seeds as ``models.interference.evaluate``. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import models.interference.features as F
from ingest.simulator import ARCHETYPES, VM_METRIC_NAMES, SimConfig
from models.interference.data import SIM_START, simulator_excluding
from models.interference.encoding import FeatureScaler, metric_scales, transform

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=7)
parser.add_argument("--partitions", type=int, default=3)
parser.add_argument("--mode", choices=("base", "peers"), default="base")
ARGS = parser.parse_args()
NAMES = list(VM_METRIC_NAMES)


def fleet(seed: int, exclude) -> tuple[F.Windows, np.ndarray]:
    config = SimConfig(
        seed=seed, n_nodes=50, n_instances=400, hours=24, step_seconds=15, start=SIM_START
    )
    sim = simulator_excluding(config, exclude)
    cap = F.fleet_capacity(sim.fleet.capacity())
    parts = []
    for ch in sim.chunks():
        parts.append(
            F.windows_from_placement(
                ch.vm, ch.node_of, cap, window=20, stride=60, min_valid=10, p=ch.p,
                group=ch.instance_idx, step0=ch.step0, counter_cols=F.counter_columns(NAMES),
            )
        )  # fmt: skip
    w = F.Windows.concat(parts)
    return w, sim.fleet.inst_arch[w.group]


def peers(w: F.Windows, arch: np.ndarray) -> np.ndarray:
    scales, m = metric_scales(NAMES), len(NAMES)
    with np.errstate(all="ignore"):
        vm = np.nanmean(np.where(w.valid[..., None], transform(w.victim, scales), np.nan), axis=1)
    press = np.zeros(len(w))
    for mets, key in F.PRESSURE_PAIRS:
        tot = w.nbr_sum[..., [NAMES.index(x) for x in mets]].sum(-1).mean(1)
        press += tot / w.capacity[:, F.CAPACITY_KEYS.index(key)]
    out = np.full((len(w), 5 * m + 2), np.nan, np.float32)
    key = arch.astype(np.int64) * 10**12 + w.start
    order = np.argsort(key, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(key[order])) + 1):
        for j, r in enumerate(rows):
            others = np.delete(rows, j)
            if len(others) < 3:
                continue
            with np.errstate(all="ignore"):
                q10, q50, q90 = np.nanquantile(vm[others], [0.1, 0.5, 0.9], axis=0)
                low = others[press[others] <= np.quantile(press[others], 1 / 3)]
                vlow = np.nanmean(vm[low], axis=0)
            out[r] = np.r_[vm[r] - q10, vm[r] - q50, vm[r] - q90, vm[r] - vlow, q50,
                           len(others), press[r] - press[low].mean()]  # fmt: skip
    return out


def extra(w: F.Windows, arch: np.ndarray) -> np.ndarray:
    return peers(w, arch) if ARGS.mode == "peers" else np.zeros((len(w), 0))


def main() -> None:
    import lightgbm as lgb

    began = time.perf_counter()
    test_w, test_arch = fleet(ARGS.seed, [])
    test_x = extra(test_w, test_arch)
    rng = np.random.default_rng(ARGS.seed)
    parts = []
    for k in range(ARGS.partitions):
        held = sorted(int(a) for a in rng.choice(len(ARCHETYPES), 3, False))
        seen = np.setdiff1d(np.arange(len(ARCHETYPES)), held)
        val_groups = np.random.default_rng(ARGS.seed + k).choice(seen, 2, replace=False)
        w, arch = fleet(ARGS.seed + 1_000_003 * (k + 1), held)
        x = extra(w, arch)
        keep = ~np.isnan(w.p) & ~np.isin(arch, val_groups)
        on = ~np.isnan(test_w.p) & np.isin(test_arch, held)
        fit, test = w.take(np.flatnonzero(keep)), test_w.take(np.flatnonzero(on))
        scaler = FeatureScaler.fit(fit, NAMES)
        model = lgb.LGBMRegressor(
            n_estimators=400, learning_rate=0.05, num_leaves=31, verbose=-1, n_jobs=2,
            random_state=0,
        )  # fmt: skip
        model.fit(np.c_[scaler.encode(fit).pooled(), x[keep]], fit.p)
        pred = model.predict(np.c_[scaler.encode(test).pooled(), test_x[on]])
        err = np.abs(np.clip(pred, 0, 1) - test.p)
        per = {
            ARCHETYPES[a].name: round(float(100 * err[test_arch[on] == a].mean()), 2) for a in held
        }
        parts.append({"unseen": per, "mae": round(float(100 * err.mean()), 2)})
        print(json.dumps(parts[-1]), file=sys.stderr, flush=True)
    print(json.dumps({
        "mode": ARGS.mode, "seed": ARGS.seed, "partitions": parts,
        "mae": round(float(np.mean([p["mae"] for p in parts])), 2),
        "seconds": round(time.perf_counter() - began, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
