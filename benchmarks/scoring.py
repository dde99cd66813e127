"""Anomaly scoring throughput and training time on CPU.

    .venv/bin/python benchmarks/scoring.py [--artefact DIR] [--instances 1000]
        [--threads 1 2] [--repeat 3] [--skip-train]

Without ``--artefact`` it first trains the default model (one simulated day of 400
instances, ``models.anomaly.train.TrainConfig()``) and reports how long that took, per stage.
Then it simulates one hour of a fleet of ``--instances`` VMs (8 per node), builds one
one-hour window per VM (240 samples x 19 metrics plus that hour's log lines) and scores all
of them with ``AnomalyDetector.score`` in one call, for each thread count:

- ``templates``: log lines given as drain3 template texts, as the app stores them (the first
  call pays for looking each distinct template up once; later calls hit the cache);
- ``raw``: log lines given as raw messages (mined on the fly, about 30 us a line);
- ``novelty``: as ``templates``, with a novelty calibration of every target (each metric's
  usual error), timed against plain scoring in the same run (``novelty_over_plain``).

Prints JSON. Targets: 1,000 windows in under 5 s; training under 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from ingest.simulator import SimConfig, Simulator
from models.anomaly.detector import AnomalyDetector, Window
from models.anomaly.novelty import MIN_WINDOWS, FleetNovelty
from models.anomaly.train import TrainConfig, train

START = 1_736_121_600 + 20 * 86_400  # a day no training fleet covers


def fleet_windows(n_instances: int, seed: int = 99) -> tuple[list[Window], int]:
    """One one-hour window per VM of a fresh fleet, log lines as raw messages."""
    nodes = max(1, -(-n_instances // 8))
    while True:  # a few instances are between placements at any moment: add nodes until
        sim = Simulator(SimConfig(seed=seed, n_nodes=nodes, hours=1, start=START))
        chunk = sim.simulate_chunk(0, sim.n_steps)
        alive = np.isfinite(chunk.vm[-1]).any(axis=1)
        if alive.sum() >= n_instances:
            break
        nodes += max(1, (n_instances - int(alive.sum())) // 8 + 1)
    by_vm: dict[str, list[tuple[float, str]]] = {}
    n_lines = 0
    for entry in sim.log_entries(chunk.logs):
        if entry.instance:
            by_vm.setdefault(entry.instance, []).append((entry.ts_ns / 1e9, entry.message))
            n_lines += 1
    end = START + sim.n_steps * sim.config.step_seconds
    windows = []
    for col in np.flatnonzero(alive)[:n_instances]:
        name = sim.fleet.instance_names[int(chunk.instance_idx[col])]
        windows.append(Window(name, "vm", end, chunk.vm[:, col], by_vm.get(name, [])))
    return windows, n_lines


def timed(det: AnomalyDetector, windows: list[Window], **score) -> tuple[float, int]:
    t = time.perf_counter()
    scores = det.score(windows, **score)
    return time.perf_counter() - t, sum(s.is_anomalous for s in scores)


def fleet_novelty(det: AnomalyDetector, windows: list[Window]) -> dict[str, FleetNovelty]:
    """A novelty calibration of every window's target, fitted on its own window's errors
    scaled by MIN_WINDOWS draws (the app fits each target's usual on a day of its windows)."""
    rng = np.random.default_rng(0)
    errors = {
        s.target: np.outer(rng.uniform(0.5, 1.5, MIN_WINDOWS), s.novelty_errors)
        for s in det.score(windows, explain="none")
        if s.novelty_errors is not None
    }
    return {"vm": FleetNovelty.fit(errors)} if errors else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artefact", default=None)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train-threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "drain3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    out: dict = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg()}

    artefact = args.artefact
    if artefact is None:
        artefact = tempfile.mkdtemp(prefix="telltale-anomaly-")
        torch.set_num_threads(args.train_threads)
        t = time.perf_counter()
        result = train(TrainConfig(out_dir=artefact, threads=args.train_threads))
        out["training"] = {
            "seconds": round(time.perf_counter() - t, 1),
            "stages": {k: round(v, 1) for k, v in result.seconds.items()},
            "instances": result.data["train"].vm.n_targets,
            "log_lines": result.metrics["train_log_lines"],
            "windows": result.metrics["train_windows"],
            "threads": args.train_threads,
            "target_seconds": 600,
        }
    det = AnomalyDetector.load(artefact)

    t = time.perf_counter()
    raw_windows, n_lines = fleet_windows(args.instances)
    out["fleet"] = {
        "windows": len(raw_windows),
        "log_lines": n_lines,
        "window_steps": det.window_steps,
        "simulate_seconds": round(time.perf_counter() - t, 1),
    }
    # The app passes the templates it mined at ingest; mine them once here to stand in.
    lookup = AnomalyDetector.load(artefact)
    template_windows = [
        Window(
            w.target, w.level, w.end, w.metrics, [(ts, lookup.template_text(m)) for ts, m in w.logs]
        )
        for w in raw_windows
    ]
    runs = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        fresh = AnomalyDetector.load(artefact)
        cold, flagged = timed(fresh, template_windows)
        warm = min(timed(fresh, template_windows)[0] for _ in range(args.repeat))
        raw, _ = timed(AnomalyDetector.load(artefact), raw_windows)
        # Novelty judged per metric against each target's usual, as the app's rounds do once
        # the fleet's calibration is fitted; timed beside plain scoring, same process.
        novelty = fleet_novelty(fresh, template_windows)
        plain = min(timed(fresh, template_windows)[0] for _ in range(args.repeat))
        nov, novel = min(
            timed(fresh, template_windows, novelty=novelty) for _ in range(args.repeat)
        )
        runs.append(
            {
                "threads": threads,
                "templates_first_call_s": round(cold, 2),
                "templates_warm_s": round(warm, 2),
                "raw_text_s": round(raw, 2),
                "windows_per_second_warm": round(len(template_windows) / warm, 1),
                "windows_per_second_first_call": round(len(template_windows) / cold, 1),
                "flagged": flagged,
                "novelty_s": round(nov, 2) if novelty else None,
                "novelty_over_plain": round(nov / plain, 3) if novelty else None,
                "novel": novel if novelty else None,
            }
        )
    out["scoring"] = runs
    out["target_seconds_per_1000"] = 5.0
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
