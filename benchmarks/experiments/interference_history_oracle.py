"""Dev-seed probe: could an instance's own history reveal its sensitivity?

In the simulator log P = -sum_r w_r s_r c_r(q_r) act - interaction, and a service's request
latency is its uncontended latency (a workload constant times a load term) divided by P. So
over an instance's recent history, log latency regressed on the per-resource contention
(times activity) has the negated sensitivities as slopes and the uncontended level as
intercept: the neighbours' load wanders independently of the victim, a natural experiment.
This probe gives the regression the simulator's *true* contention and load (an oracle, an
upper bound for anything that must estimate them from neighbour metrics) and asks how well
the window's mean P is recovered from the trailing H steps.

    PYTHONPATH=. python benchmarks/experiments/interference_history_oracle.py --seed 7

Prints one JSON object: MAE in pp per workload and overall, for a few history lengths.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import ingest.simulator.engine as engine
from ingest.simulator import ARCHETYPES, VM_METRIC_NAMES, SimConfig
from ingest.simulator.interference import WEIGHT
from ingest.simulator.workloads import archetype_table
from models.interference.data import SIM_START, simulator_excluding

TABLE = archetype_table()

CAPTURED: dict[int, tuple] = {}
_original = engine._contend


def _capture(ctx, vm):
    k = _original(ctx, vm)
    act = 0.5 + 0.5 * np.clip(ctx.load, 0.0, 1.0)
    rho = np.clip(0.55 * ctx.load, 0.0, 0.92)
    CAPTURED[ctx.s0] = (ctx.inst_ids.copy(), k.c * act[..., None], np.log1p(0.5 * rho / (1 - rho)))
    return k


def _mean_pp(lists) -> float:
    return round(float(100 * np.mean(np.concatenate([np.asarray(v) for v in lists]))), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--histories", default="240,720,1440")
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--stride", type=int, default=60)
    args = parser.parse_args()
    engine._contend = _capture
    cfg = SimConfig(
        seed=args.seed, n_nodes=50, n_instances=400, hours=args.hours, step_seconds=15,
        start=SIM_START,
    )  # fmt: skip
    sim = simulator_excluding(cfg, ())
    lat_col = VM_METRIC_NAMES.index("vm_request_latency_seconds")
    n_inst = sim.fleet.n_instances if hasattr(sim.fleet, "n_instances") else None
    chunks = list(sim.chunks(cfg.steps_per_block, 0, sim.n_steps))
    total = max(int(ch.instance_idx.max()) for ch in chunks) + 1
    S = sim.n_steps
    lat = np.full((S, total), np.nan)
    p = np.full((S, total), np.nan)
    x = np.full((S, total, 5), np.nan)
    rho = np.full((S, total), np.nan)
    for ch in chunks:
        s0 = ch.step0
        s1 = s0 + ch.vm.shape[0]
        ids = ch.instance_idx
        lat[s0:s1, ids] = ch.vm[..., lat_col]
        p[s0:s1, ids] = ch.p
        got_ids, cx, r = CAPTURED[s0]
        pos = np.searchsorted(got_ids, ids)
        x[s0:s1, ids] = cx[:, pos]
        rho[s0:s1, ids] = r[:, pos]
    arch = sim.fleet.inst_arch
    out: dict = {"seed": args.seed, "instances": int(total), "n_inst_config": n_inst}
    for hist in [int(h) for h in args.histories.split(",")]:
        errs: dict[str, list] = {}
        spread: list = []
        for i in range(total):
            if np.isnan(lat[:, i]).all():
                continue
            for end in range(hist + args.window, S + 1, args.stride):
                w = slice(end - args.window, end)
                target = np.nanmean(p[w, i]) if not np.isnan(p[w, i]).all() else np.nan
                if np.isnan(target):
                    continue
                h = slice(end - args.window - hist, end - args.window)
                y = np.log(lat[h, i]) - rho[h, i]
                X = x[h, i]
                ok = np.isfinite(y) & np.isfinite(X).all(1)
                if ok.sum() < 60:
                    continue
                A = np.column_stack([np.ones(ok.sum()), X[ok]])
                coef, *_ = np.linalg.lstsq(A, y[ok], rcond=None)
                xw = x[w, i]
                okw = np.isfinite(xw).all(1) & np.isfinite(p[w, i])
                if not okw.any():
                    continue
                pred = np.minimum(np.exp(-xw[okw] @ coef[1:]), 1.0).mean()
                errs.setdefault(ARCHETYPES[arch[i]].name, []).append(abs(pred - target))
                # Known direction (true w * s), unknown scale: one slope.
                ws = WEIGHT * TABLE["sensitivity"][arch[i]]
                z = X[ok] @ ws
                A1 = np.column_stack([np.ones(ok.sum()), z])
                c1, *_ = np.linalg.lstsq(A1, y[ok], rcond=None)
                pred1 = np.minimum(np.exp(-c1[1] * (xw[okw] @ ws)), 1.0).mean()
                errs.setdefault("dir_" + ARCHETYPES[arch[i]].name, []).append(abs(pred1 - target))
                spread.append(float(np.std(z)))
        out[f"history_{hist}"] = {
            "mae_pp": _mean_pp(v for k, v in errs.items() if not k.startswith("dir_")),
            "dir_mae_pp": _mean_pp(v for k, v in errs.items() if k.startswith("dir_")),
            "std_of_true_log_loss_in_history": float(np.median(spread)),
            "per_workload": {k: [_mean_pp([v]), len(v)] for k, v in errs.items()},
        }
        print(json.dumps(out[f"history_{hist}"]), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
