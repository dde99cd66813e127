"""Interference model: training time and serving throughput on this machine (JSON).

    .venv/bin/python benchmarks/interference.py [--artefact DIR] [--threads 2]
        [--victims 1000] [--worst 50] [--seed 7] [--members transformer,lstm]

Without ``--artefact`` it first trains the default model (``TrainConfig()``: one simulated
day of 50 nodes / 400 instances, simulation and windowing included; target under 600 s).
Then it simulates a fleet with ``--victims`` instances, builds one ``VictimInput`` per
instance from the last ``window_steps`` steps (its own metrics, its co-located neighbours'
metrics and its node's capacity, as the app would), and times ``predict`` and
``unfamiliar_many`` (why a P is extrapolation) on all of them plus ``attribute_many``
(leave-one-out) on the ``--worst`` with the lowest predicted P (target under 5 s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.simulator import SimConfig, Simulator
from models.interference.data import SIM_START
from models.interference.features import CAPACITY_KEYS
from models.interference.predictor import InterferencePredictor, NeighbourInput, VictimInput
from models.interference.train import MEMBERS, TrainConfig, parse_members, train


def fleet_inputs(n_victims: int, window: int, seed: int) -> tuple[list[VictimInput], np.ndarray]:
    """One VictimInput per instance running at the end of a simulated hour, and true P."""
    nodes = max(1, n_victims // 8)
    sim = Simulator(SimConfig(seed=seed, n_nodes=nodes, n_instances=n_victims, hours=1,
                              start=SIM_START, churn_per_day=0.0))  # fmt: skip
    chunk = sim.simulate_chunk(sim.n_steps - window, window)
    cap = sim.fleet.capacity()
    last = chunk.node_of[-1]
    running = np.flatnonzero((last >= 0) & ~np.isnan(chunk.vm[-1, :, 0]))
    victims, truth = [], []
    names = sim.fleet.instance_names
    for col in running:
        node = last[col]
        here = [c for c in running if last[c] == node and c != col]
        victims.append(
            VictimInput(
                names[chunk.instance_idx[col]],
                chunk.vm[:, col],
                [NeighbourInput(names[chunk.instance_idx[c]], chunk.vm[:, c]) for c in here],
                {k: float(cap[k][node]) for k in CAPACITY_KEYS},
            )
        )
        truth.append(np.nanmean(chunk.p[:, col]))
    return victims[:n_victims], np.array(truth[:n_victims])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artefact", help="skip training and use this artefact")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--victims", type=int, default=1000)
    parser.add_argument("--worst", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--members", default=",".join(MEMBERS), help="ensemble members (transformer first)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    report: dict = {"benchmark": "interference", "cpu_count": os.cpu_count(),
                    "threads": args.threads, "load1_at_start": os.getloadavg()[0]}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        artefact = args.artefact
        if artefact is None:
            members = parse_members(args.members)
            cfg = TrainConfig(out_dir=tmp, threads=args.threads, members=members)
            began = time.perf_counter()
            result = train(cfg)
            report["train_seconds"] = round(time.perf_counter() - began, 1)
            report["train_target_seconds"] = 600
            report["train_windows"] = result.n_train
            report["train_fleet"] = {"nodes": cfg.n_nodes, "instances": cfg.n_instances,
                                     "hours": cfg.hours}  # fmt: skip
            report["val_mae_pp_heldout_workloads"] = round(result.metrics["val_mae_pp"], 2)
            artefact = tmp
        model = InterferencePredictor.load(artefact)
        report["members"] = list(model.nets)
        victims, truth = fleet_inputs(args.victims, model.window_steps, args.seed)
        began = time.perf_counter()
        preds = model.predict(victims)
        predicted = time.perf_counter()
        unfamiliar = model.unfamiliar_many(victims)  # the app stores why P extrapolates
        checked = time.perf_counter()
        worst = np.argsort([p.p for p in preds])[: args.worst]
        gains = model.attribute_many([victims[i] for i in worst])
        done = time.perf_counter()
    p = np.array([x.p for x in preds])
    report.update(
        {
            "victims": len(victims),
            "mean_neighbours": round(float(np.mean([len(v.neighbours) for v in victims])), 1),
            "predict_seconds": round(predicted - began, 3),
            "attributed": len(gains),
            "attribution_forwards": int(sum(len(g) for g in gains)),
            "unfamiliar_seconds": round(checked - predicted, 3),
            "extrapolated": sum(1 for u in unfamiliar if u),
            "attribute_seconds": round(done - checked, 3),
            "total_seconds": round(done - began, 3),
            "target_seconds": 5,
            "mae_pp_new_fleet_all_workloads": round(float(100 * np.abs(p - truth).mean()), 2),
            "load1_at_end": os.getloadavg()[0],
        }
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
