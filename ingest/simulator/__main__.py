"""``python -m ingest.simulator --export DIR --nodes N --hours H --seed S``: write a dataset."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from ingest.simulator.config import SimConfig
from ingest.simulator.export import export_dataset

# A fixed default start keeps exports reproducible byte for byte (a Monday, 00:00 UTC).
DEFAULT_START = "2025-01-06T00:00:00+00:00"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.simulator", description=__doc__)
    parser.add_argument("--export", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--instances", type=int, default=None, help="default: 8 per node")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, default=15, help="seconds between samples")
    parser.add_argument("--start", default=DEFAULT_START, help="ISO 8601 time with offset")
    parser.add_argument("--variant-set", choices=("train", "heldout"), default="train")
    parser.add_argument("--log-text", action="store_true", help="also write logs.txt.gz")
    parser.add_argument("--mitigation-history", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    start = datetime.fromisoformat(args.start)
    if start.tzinfo is None:
        parser.error("--start needs a UTC offset, e.g. 2025-01-06T00:00:00+00:00")
    epoch = int(start.timestamp())
    config = SimConfig(
        seed=args.seed,
        n_nodes=args.nodes,
        n_instances=args.instances,
        step_seconds=args.step,
        start=epoch - epoch % args.step,
        hours=args.hours,
        variant_set=args.variant_set,
    )
    summary = export_dataset(
        config, args.export, log_text=args.log_text, mitigation_history=args.mitigation_history
    )
    json.dump(summary.as_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
