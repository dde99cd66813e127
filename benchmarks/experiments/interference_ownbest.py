"""Dev-seed check: does an instance's own history show its uncontended level?

    PYTHONPATH=. python benchmarks/experiments/interference_ownbest.py --seed 7

Simulates one fleet (50 nodes, 400 instances, 24 h), cuts P and request latency into
5-minute buckets and prints JSON: the quantiles over instances of each instance's best
(largest) bucket P of the day, and per workload the MAE of the estimate P = min(1,
lowest latency of the last 6 h / latency now), which is right when the instance was
uncontended at some moment of the last 6 h and its load did not change.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ingest.simulator import ARCHETYPES, VM_METRIC_NAMES, SimConfig
from models.interference.data import SIM_START, simulator_excluding

QS = (0.1, 0.25, 0.5, 0.75, 0.9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    cfg = SimConfig(
        seed=args.seed, n_nodes=50, n_instances=400, hours=24, step_seconds=15, start=SIM_START
    )
    sim = simulator_excluding(cfg, [])
    chunks = list(sim.chunks())
    n_inst = max(int(ch.instance_idx.max()) for ch in chunks) + 1
    steps = sum(ch.vm.shape[0] for ch in chunks)
    li = list(VM_METRIC_NAMES).index("vm_request_latency_seconds")
    lat = np.full((steps, n_inst), np.nan, np.float32)
    p = np.full((steps, n_inst), np.nan, np.float32)
    t0 = 0
    for ch in chunks:
        n = ch.vm.shape[0]
        lat[t0 : t0 + n, ch.instance_idx] = ch.vm[..., li]
        p[t0 : t0 + n, ch.instance_idx] = ch.p
        t0 += n
    s = steps // 20 * 20
    with np.errstate(all="ignore"):
        pb = np.nanmean(p[:s].reshape(s // 20, 20, n_inst), axis=1)
        lb = np.nanmean(lat[:s].reshape(s // 20, 20, n_inst), axis=1)
        best = np.nanmax(pb, axis=0)
    arch = sim.fleet.inst_arch[:n_inst]
    per_workload = {}
    for a, spec in enumerate(ARCHETYPES):
        errs = []
        for c in np.flatnonzero(arch == a):
            for t in range(72, len(lb), 4):
                if np.isnan(lb[t, c]) or np.isnan(pb[t, c]):
                    continue
                with np.errstate(all="ignore"):
                    ref = np.nanmin(lb[t - 72 : t + 1, c])
                errs.append(abs(min(1.0, ref / lb[t, c]) - pb[t, c]))
        if errs:
            mae = round(100 * float(np.mean(errs)), 2)
            per_workload[spec.name] = {"mae_pp": mae, "n": len(errs)}
    quantiles = np.nanquantile(best, QS)
    print(json.dumps({
        "seed": args.seed,
        "mean_p": round(float(np.nanmean(pb)), 3),
        "best_bucket_p_quantiles": {
            f"{q:.0%}": round(float(x), 3) for q, x in zip(QS, quantiles, strict=True)
        },
        "own_best_latency_estimate": per_workload,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
