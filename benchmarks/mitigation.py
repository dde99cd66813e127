"""Mitigation engine figures (JSON): fit time on a history of simulated events, and the
latency of recommendations for 1,000 events, one call per event (as the app asks when an
event opens) and as one batch (as a re-scoring task would).

    .venv/bin/python benchmarks/mitigation.py [--train-events 5000] [--events 1000]
        [--trees 400] [--json OUT]

CPU seconds are reported next to wall seconds: on a shared machine the wall clock measures
the neighbours as much as the code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.mitigation.data import OUTCOMES, simulated_history
from models.mitigation.engine import CausalEngine, EngineConfig
from models.mitigation.policy import CapacityContext, Policy, PolicyConfig


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/mitigation.py")
    parser.add_argument("--train-events", type=int, default=5000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--trees", type=int, default=400)
    parser.add_argument(
        "--with-capacity", action="store_true", help="also model capacity cost (cost weights)"
    )
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args(argv)

    train, _ = simulated_history(args.train_events, seed=1000)
    outcomes = (OUTCOMES[0], OUTCOMES[2]) if args.with_capacity else (OUTCOMES[0],)
    cfg = EngineConfig(n_estimators=args.trees, outcomes=outcomes)
    engine, fit_wall, fit_cpu = _timed(
        lambda: CausalEngine().fit(train, train["action"], train[list(OUTCOMES)], cfg)
    )
    policy = Policy(engine, PolicyConfig())
    events, _ = simulated_history(args.events, seed=1001)
    ctx = CapacityContext(rack_spare_slots=20, cluster_out_for_repair=1)

    rows = events.to_dict("records")
    policy.recommend(rows[0], ctx, rows[0]["action"])  # first-call set-up is not latency
    latencies = []
    cpu0 = time.process_time()
    for row in rows:
        t = time.perf_counter()
        policy.recommend(row, ctx, row["action"])
        latencies.append(time.perf_counter() - t)
    single_cpu = time.process_time() - cpu0
    legacy = np.array([engine.actions.index(a) for a in events["action"]])
    _, batch_wall, batch_cpu = _timed(
        lambda: policy.decide(policy.evidence(events, legacy), legacy, [ctx] * len(events))
    )
    ms = np.array(latencies) * 1000
    result = {
        "train_events": args.train_events,
        "trees": args.trees,
        "outcomes_modelled": list(cfg.outcomes),
        "fit_seconds": round(fit_wall, 2),
        "fit_cpu_seconds": round(fit_cpu, 2),
        "recommend_events": args.events,
        "recommend_one_by_one_seconds": round(float(ms.sum()) / 1000, 2),
        "recommend_one_by_one_cpu_seconds": round(single_cpu, 2),
        "recommend_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "recommend_ms_p95": round(float(np.percentile(ms, 95)), 2),
        "recommend_batch_seconds": round(batch_wall, 3),
        "recommend_batch_cpu_seconds": round(batch_cpu, 3),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
