"""``manage.py evaluate anomaly`` without Django: ``add_arguments(parser)``, ``run(args)``,
``format_table(result)``.

Every method (Telltale and the baselines) is scored on the same windows and goes through the
same steps: calibration on the validation part, a threshold chosen without test labels,
events, metrics. The result is ``{"dataset": NAME, "protocol": "test" | "dev" (``--dev``),
"main_metric": KEY, "rows": [{"method": "telltale", ...}, {"method": BASELINE, ...}],
"splits": [...], ...}`` where each row holds
the mean over the dataset's splits (machines, entities, files, fleets) and ``splits`` holds
every split's own rows. Keys that a dataset cannot give are ``null``.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from models.anomaly import evalsets

DATASETS = ("sim", "nab", "smd", "asd", "bgl", "nezha")
ROW_KEYS = (
    "precision",
    "recall",
    "f1",
    "pa_f1",
    "event_recall",
    "false_alarms_per_day",
    "deceptive_fpr",
    "scenario_accuracy",
    "nab_score",
)
EXTRA_KEYS = ("event_precision", "event_f1")
# Kept in a row only where the dataset gives them (NAB: labelled windows found / in all).
OPTIONAL_KEYS = ("nab_detected_windows", "nab_windows")
MAIN_METRIC = {
    "sim": "event_f1",
    "nab": "nab_score",
    "smd": "pa_f1",
    "asd": "pa_f1",
    "bgl": "f1",
    "nezha": "event_f1",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument(
        "--path", default=None, help="dataset folder (default: ../shared/datasets/<NAME>)"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write the result here")
    parser.add_argument(
        "--seed", type=int, default=7, help="sim: the fleet that is tested (training avoids it)"
    )
    parser.add_argument(
        "--variant-set",
        default="heldout",
        choices=("heldout", "train"),
        help="sim: scenario variants of the test fleet",
    )
    parser.add_argument("--quick", action="store_true", help="tiny slices and short training")
    parser.add_argument(
        "--window-steps", type=int, default=None, help="override the dataset's window length"
    )
    parser.add_argument(
        "--patch-steps", type=int, default=None, help="override the dataset's patch length"
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="smd, asd: a label-free development set instead of the test part (anomalies "
        "injected into the held-out end of the training part; see models/anomaly/datasets/"
        "devinject.py)",
    )
    parser.add_argument("--dev-seed", type=int, default=0, help="--dev: the injection draw")
    parser.add_argument(
        "--dev-kinds",
        default=None,
        help="--dev: inject only these kinds (comma-separated; default all of spike, "
        "level_shift, drift, variance, stuck, decouple; surge only when named)",
    )
    parser.add_argument(
        "--dev-sizes",
        default=None,
        help="--dev: injected sizes LOW,HIGH in spreads of the fitting part, drawn log-uniformly "
        "(default 1.5,8)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--model-seed",
        type=int,
        default=0,
        help="seed of the model's initial weights and batch order (spread over seeds = noise)",
    )


DEV_DATASETS = ("smd", "asd")


def run(args: argparse.Namespace) -> dict:
    if getattr(args, "dev", False) and args.dataset not in DEV_DATASETS:
        raise ValueError(
            f"--dev: only {', '.join(DEV_DATASETS)} have a training part long enough for a "
            f"development set, not {args.dataset}"
        )
    torch.set_num_threads(max(1, int(getattr(args, "threads", 2))))
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    started = time.perf_counter()
    runner = {
        "sim": evalsets.run_sim,
        "nab": evalsets.run_nab,
        "smd": evalsets.run_smd,
        "asd": evalsets.run_asd,
        "bgl": evalsets.run_bgl,
        "nezha": evalsets.run_nezha,
    }[args.dataset]
    out = runner(args)
    rows = [_row(method, values) for method, values in out.pop("rows").items()]
    rows.sort(key=lambda r: (r["method"] != "telltale", r["method"]))
    result = {
        "dataset": args.dataset,
        "protocol": "dev" if getattr(args, "dev", False) else "test",
        "main_metric": MAIN_METRIC[args.dataset],
        "rows": rows,
        **out,
        "seconds": round(time.perf_counter() - started, 1),
    }
    result["telltale_beats_baselines"] = beats(result)
    return result


def _row(method: str, values: dict) -> dict:
    row = {"method": method}
    for key in (*ROW_KEYS, *EXTRA_KEYS):
        v = values.get(key)
        row[key] = None if v is None or (isinstance(v, float) and not np.isfinite(v)) else v
    row.update({key: values[key] for key in OPTIONAL_KEYS if values.get(key) is not None})
    return row


def beats(result: dict) -> bool | None:
    """Does Telltale beat every baseline on the dataset's main metric (strictly)?"""
    key = result["main_metric"]
    rows = {r["method"]: r.get(key) for r in result["rows"]}
    mine = rows.pop("telltale", None)
    if mine is None or not rows:
        return None
    return all(v is None or mine > v for v in rows.values())


def mean_rows(per_split: list[dict[str, dict]]) -> dict[str, dict]:
    """Mean over splits of every numeric key, per method (None where no split has it)."""
    methods = {m for s in per_split for m in s}
    out = {}
    for m in sorted(methods):
        vals = [s[m] for s in per_split if m in s]
        row = {}
        for key in (*ROW_KEYS, *EXTRA_KEYS):
            xs = [v[key] for v in vals if v.get(key) is not None]
            row[key] = float(np.mean(xs)) if xs else None
        out[m] = row
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def format_table(result: dict) -> str:
    keys = ("method", *ROW_KEYS, *EXTRA_KEYS)
    short = {
        "false_alarms_per_day": "fa/day",
        "deceptive_fpr": "dec_fpr",
        "scenario_accuracy": "scen_acc",
        "event_recall": "ev_rec",
        "event_precision": "ev_prec",
        "event_f1": "ev_f1",
        "precision": "prec",
        "recall": "rec",
        "nab_score": "nab",
    }
    header = [short.get(k, k) for k in keys]
    body = [[_fmt(r.get(k)) for k in keys] for r in result["rows"]]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = [
        f"dataset: {result['dataset']}   main metric: {result['main_metric']}"
        f"   (pa_f1 is point-adjusted; point-wise prec/rec/f1 beside it)",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    if len(result.get("splits", [])) > 1:
        lines.append("per split (main metric):")
        for s in result["splits"]:
            vals = ", ".join(
                f"{m}={_fmt(v.get(result['main_metric']))}" for m, v in s["rows"].items()
            )
            lines.append(f"  {s['name']}: {vals}")
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    verdict = result.get("telltale_beats_baselines")
    if verdict is not None:
        lines.append(f"telltale beats every baseline on {result['main_metric']}: {verdict}")
    lines.append(f"seconds: {result.get('seconds')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import json

    parser = argparse.ArgumentParser(prog="python -m models.anomaly.evaluate")
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(format_table(result))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(result, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
