"""Fleet simulator export speed: one simulated day of 50 nodes / 400 instances by default.

    .venv/bin/python benchmarks/simulator_export.py [--nodes 50] [--instances 400] [--hours 24]
        [--step 15] [--seed 0] [--out DIR] [--log-text]

Runs ``export_dataset`` (simulate every hour block, write every file) into a temporary
directory unless ``--out`` is given, and prints JSON: wall seconds, steps, instances
(including arrivals), values written (metric samples), values per second, log events,
cases, and the size of the export on disk. The target is under 120 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.simulator import SimConfig, export_dataset

START = 1736121600  # 2025-01-06 00:00 UTC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--step", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--log-text", action="store_true")
    args = parser.parse_args()
    config = SimConfig(
        seed=args.seed, n_nodes=args.nodes, n_instances=args.instances, hours=args.hours,
        step_seconds=args.step, start=START,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        began = time.perf_counter()
        summary = export_dataset(config, out, log_text=args.log_text)
        seconds = time.perf_counter() - began
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    report = {
        "benchmark": "simulator_export",
        "seconds": round(seconds, 2),
        "steps": summary.steps,
        "nodes": summary.nodes,
        "instances": summary.instances,
        "values": summary.values,
        "values_per_second": round(summary.values / seconds),
        "log_events": summary.log_events,
        "cases": summary.cases,
        "unhealthy_events": summary.unhealthy_events,
        "bytes_on_disk": size,
        "cpu_count": os.cpu_count(),
        "target_seconds": 120,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
