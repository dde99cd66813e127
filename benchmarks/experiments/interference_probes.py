"""Dev-seed probes with LightGBM on pooled statistics: does an input help on unseen workloads?

    python benchmarks/experiments/interference_probes.py --seed 7 --partitions 3 --mode MODE

MODE: ``base`` (the evaluation's pooled statistics), ``cores`` (plus a cores-busy channel,
cpu ratio x vCPUs, and its pressure on the node's cores), ``sens`` (plus the victim
archetype's true sensitivity vector: an oracle no real system has), ``history`` (plus 6 h of
the victim's own 5-minute buckets: quantiles and a low-pressure reference). Same partitions,
validation workloads and training seeds as ``models.interference.evaluate``. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import models.interference.features as F

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=7)
parser.add_argument("--partitions", type=int, default=3)
parser.add_argument("--mode", choices=("base", "cores", "sens", "history"), default="base")
parser.add_argument("--history-buckets", type=int, default=72)
ARGS = parser.parse_args()
if ARGS.mode == "cores":  # before encoding reads it
    F.PRESSURE_PAIRS = (*F.PRESSURE_PAIRS, (("vm_cpu_cores_busy",), "cores"))

from ingest.simulator import ARCHETYPES, VM_METRIC_NAMES, SimConfig  # noqa: E402
from ingest.simulator.workloads import archetype_table  # noqa: E402
from models.interference.data import SIM_START, simulator_excluding  # noqa: E402
from models.interference.encoding import FeatureScaler, metric_scales, transform  # noqa: E402
from models.interference.train import choose_val_groups  # noqa: E402

NAMES = list(VM_METRIC_NAMES) + (["vm_cpu_cores_busy"] if ARGS.mode == "cores" else [])
STRIDE = 20 if ARGS.mode == "history" else 60  # history needs every 5-minute bucket


def fleet(seed: int, exclude) -> tuple[F.Windows, np.ndarray]:
    """Windows of one fleet (``group`` = instance id) and the archetype of each."""
    config = SimConfig(
        seed=seed, n_nodes=50, n_instances=400, hours=24, step_seconds=15, start=SIM_START
    )
    sim = simulator_excluding(config, exclude)
    cap = F.fleet_capacity(sim.fleet.capacity())
    parts = []
    for ch in sim.chunks():
        vm = ch.vm
        if ARGS.mode == "cores":
            v = sim.fleet.inst_vcpus[ch.instance_idx].astype(np.float32)
            vm = np.concatenate([vm, (vm[..., 0] * v[None, :])[..., None]], axis=2)
        parts.append(
            F.windows_from_placement(
                vm, ch.node_of, cap, window=20, stride=STRIDE, min_valid=10, p=ch.p,
                group=ch.instance_idx, step0=ch.step0, counter_cols=F.counter_columns(NAMES),
            )
        )  # fmt: skip
    w = F.Windows.concat(parts)
    return w, sim.fleet.inst_arch[w.group]


def history(w: F.Windows) -> np.ndarray:
    """Per window: the same instance's previous buckets summarised (NaN without 6 of them)."""
    scales, m = metric_scales(NAMES), len(NAMES)
    with np.errstate(all="ignore"):
        vm = np.nanmean(np.where(w.valid[..., None], transform(w.victim, scales), np.nan), axis=1)
        nm = np.nanmean(transform(w.nbr_sum, scales), axis=1)
    press = np.zeros(len(w))
    for mets, key in F.PRESSURE_PAIRS:
        tot = w.nbr_sum[..., [NAMES.index(x) for x in mets]].sum(-1).mean(1)
        press += tot / w.capacity[:, F.CAPACITY_KEYS.index(key)]
    out = np.full((len(w), 7 * m + 3), np.nan, np.float32)
    order = np.lexsort((w.start, w.group))
    for rows in np.split(order, np.flatnonzero(np.diff(w.group[order])) + 1):
        st = w.start[rows]
        for j, r in enumerate(rows):
            h = rows[np.searchsorted(st, st[j] - ARGS.history_buckets * 20) : j]
            if len(h) < 6:
                continue
            low = press[h] <= np.quantile(press[h], 1 / 3)
            with np.errstate(all="ignore"):
                q10, q50, q90 = np.nanquantile(vm[h], [0.1, 0.5, 0.9], axis=0)
                n50 = np.nanmedian(nm[h], axis=0)
                vlow = np.nanmean(vm[h][low], axis=0)
            ref = press[h][low].mean()
            out[r] = np.r_[q10, q50, q90, vm[r] - q50, n50, nm[r] - n50, vm[r] - vlow, ref,
                           press[r] - ref, len(h)]  # fmt: skip
    return out


def extra(w: F.Windows, arch: np.ndarray) -> np.ndarray:
    if ARGS.mode == "sens":
        return archetype_table()["sensitivity"][arch]
    if ARGS.mode == "history":
        return history(w)
    return np.zeros((len(w), 0))


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
        val_groups = choose_val_groups(seen, 2, ARGS.seed + k)
        w, arch = fleet(ARGS.seed + 1_000_003 * (k + 1), held)
        x = extra(w, arch)
        keep = (w.start % 60 == 0) & ~np.isnan(w.p) & ~np.isin(arch, val_groups)
        on = (test_w.start % 60 == 0) & ~np.isnan(test_w.p) & np.isin(test_arch, held)
        fit, test = w.take(np.flatnonzero(keep)), test_w.take(np.flatnonzero(on))
        scaler = FeatureScaler.fit(fit, NAMES)
        model = lgb.LGBMRegressor(
            n_estimators=400, learning_rate=0.05, num_leaves=31, verbose=-1, n_jobs=2,
            random_state=0,
        )  # fmt: skip
        model.fit(np.c_[scaler.encode(fit).pooled(), x[keep]], fit.p)
        pred = model.predict(np.c_[scaler.encode(test).pooled(), test_x[on]])
        mae = float(100 * np.abs(np.clip(pred, 0, 1) - test.p).mean())
        parts.append({"unseen": [ARCHETYPES[a].name for a in held], "mae": round(mae, 2)})
        print(json.dumps(parts[-1]), file=sys.stderr, flush=True)
    print(json.dumps({
        "mode": ARGS.mode, "seed": ARGS.seed, "partitions": parts,
        "mae": round(float(np.mean([p["mae"] for p in parts])), 2),
        "seconds": round(time.perf_counter() - began, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
