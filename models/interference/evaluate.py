"""Evaluation on unseen workloads: Telltale against its baselines, same windows, same splits.

    python manage.py evaluate interference --dataset sim --seed 0 [--json OUT] [--quick]
    python manage.py evaluate interference --dataset lab --path var/lab [--json OUT]
    python manage.py evaluate interference --dataset sim --what-if MODEL_DIR [--seed S]
    python -m models.interference.evaluate ...   (the same without Django)

Simulator protocol: ``--seed S`` is the test fleet. Each of ``--partitions`` random
partitions draws ``--test-workloads`` archetypes as the unseen workloads; a training fleet
of another seed is simulated *without* those archetypes (they are redrawn as others, so
they are not even neighbours), ``--val-workloads`` of its archetypes are held out of fitting
for early stopping and interval calibration, and every method is scored on the test fleet's
windows whose victim belongs to a held-out archetype. The test seed's data is never used for
fitting, model selection or calibration.

Lab protocol (``--train-on lab``, the default): leave one victim workload out. Each workload
of the lab dataset is the test set once; one other is the validation workload; every method
is trained on the rest of the lab runs only (nothing from the simulator).

Transfer protocol (``--train-on sim``): what the app ships, a model trained on the
simulator, tested on real lab runs. Every method is trained once on a simulated fleet (seed
``--seed`` + 1,000,003, all archetypes, ``--val-workloads`` of them held out for early
stopping and calibration) with the window length of the lab, and with every metric the lab
cannot measure (hardware counters, network per process, request metrics) blanked, so the
model never leans on a signal it will not get; then it is scored on every lab victim window,
with the MAE per victim workload beside the total. No lab run is used for fitting.

Rows: MAE and MSE in percentage points of P (mean and std over partitions), and for Telltale
the coverage and mean width of its calibrated interval, and each ensemble member's MAE on
its own (``member_mae``; ``--members transformer`` evaluates the transformer alone).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.interference import counterfactual
from models.interference.baselines import METHODS, Baseline, BaselineConfig
from models.interference.calibration import interval_metrics
from models.interference.features import Windows
from models.interference.predictor import InterferencePredictor
from models.interference.train import (
    MEMBERS,
    TrainConfig,
    parse_members,
    split_by_group,
    train,
)

ALL_METHODS = ("telltale", *METHODS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=("sim", "lab"), required=True)
    parser.add_argument("--path", help="lab: the interference_lab output directory")
    parser.add_argument("--seed", type=int, default=0, help="sim: the fleet that is tested")
    parser.add_argument("--partitions", type=int, help="sim: workload partitions (5)")
    parser.add_argument("--test-workloads", type=int, default=3)
    parser.add_argument("--val-workloads", type=int, default=2)
    parser.add_argument("--nodes", type=int, help="sim: nodes per fleet (50)")
    parser.add_argument("--instances", type=int, help="sim: instances per fleet (400)")
    parser.add_argument("--hours", type=float, help="sim: simulated hours per fleet (24)")
    parser.add_argument("--epochs", type=int, help="Telltale epochs (12)")
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument(
        "--model-seed",
        type=int,
        default=0,
        help="sim: added to each partition's model seed (initialisation, subsampling, batches)",
    )
    parser.add_argument(
        "--members",
        default=",".join(MEMBERS),
        help=f"Telltale's ensemble members, transformer first ({','.join(MEMBERS)})",
    )
    parser.add_argument(
        "--train-on",
        dest="train_on",
        choices=("lab", "sim"),
        default="lab",
        help="lab: what every method is trained on (lab: the other victims' runs; sim: a "
        "simulated fleet, the transfer protocol)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a small run (tests, smoke checks)")
    parser.add_argument("--json", dest="json_out", help="write the result as JSON here")
    parser.add_argument("--keep", help="keep each partition's Telltale artefact under this dir")
    parser.add_argument(
        "--what-if",
        dest="what_if",
        metavar="MODEL_DIR",
        help="sim: instead of the workload protocol, check the what-if placement answers of "
        "the model in MODEL_DIR against the simulator's counterfactual placements on the "
        "test fleet (models/interference/counterfactual.py)",
    )
    parser.add_argument("--moves", type=int, default=400, help="--what-if: moves to draw")


def _settings(args: argparse.Namespace) -> dict:
    """Defaults (or the --quick ones), overridden by whatever was given explicitly."""
    s: dict = {
        "nodes": 50,
        "instances": 400,
        "hours": 24.0,
        "partitions": 5,
        "epochs": 12,
        "max_train_windows": 20_000,
        "baselines": BaselineConfig(threads=args.threads),
        "window": 20,
        "stride": 60,
    }
    if args.quick:
        s.update(nodes=10, instances=80, hours=4.0, partitions=2, epochs=2, stride=30)
        s["max_train_windows"] = 3_000
        s["baselines"] = BaselineConfig(
            rf_trees=30, gbm_trees=60, lstm_epochs=2, threads=args.threads
        )
    for key in ("nodes", "instances", "hours", "partitions", "epochs"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    return s


def _score(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    err = pred - y
    return {"mae": float(100 * np.abs(err).mean()), "mse": float(1e4 * (err**2).mean())}


def _run_partition(
    fit: Windows,
    val: Windows,
    test: Windows,
    names: list[str],
    methods: list[str],
    settings: dict,
    cfg: TrainConfig,
    log: Callable[[str], None],
    test_groups: dict[str, np.ndarray] | None = None,
) -> dict[str, dict]:
    """Train every method on (fit, val) and score it on ``test``; ``test_groups`` (name →
    mask over ``test``) adds each method's MAE on each part as ``by_workload``."""

    def by_workload(pred: np.ndarray) -> dict:
        if not test_groups:
            return {}
        return {
            "by_workload": {k: _score(pred[m], test.p[m])["mae"] for k, m in test_groups.items()}
        }

    rows: dict[str, dict] = {}
    began = time.perf_counter()
    result = train(cfg, data=(fit, val, names))
    model = InterferencePredictor.load(result.out_dir)
    members = model.member_predictions(test)
    pred = model.served(test, members)
    rows["telltale"] = {
        **_score(pred[:, 0], test.p),
        **interval_metrics(pred, test.p),
        **by_workload(pred[:, 0]),
        "member_mae": {name: _score(m[:, 0], test.p)["mae"] for name, m in members.items()},
        "member_val_mae": {k: v["val_mae_pp"] for k, v in result.metrics["members"].items()},
        "val_mae": result.metrics["val_mae_pp"],
        "seconds": round(time.perf_counter() - began, 1),
    }
    tt = rows["telltale"]
    alone = ", ".join(f"{k} {v:.2f}" for k, v in tt["member_mae"].items())
    log(f"    telltale          MAE {tt['mae']:.2f} pp  ({tt['seconds']} s; members: {alone})")
    # Baselines see the same windows, normalised with the same training statistics.
    from models.interference.data import subsample

    fit_s = subsample(fit, cfg.max_train_windows, cfg.seed)
    val_s = subsample(val, cfg.max_val_windows, cfg.seed + 1)
    enc_fit, enc_val = model.scaler.encode(fit_s), model.scaler.encode(val_s)
    enc_test = model.scaler.encode(test)
    for m in methods:
        if m == "telltale":
            continue
        t0 = time.perf_counter()
        p = Baseline(m, settings["baselines"]).fit(enc_fit, enc_val).predict(enc_test)
        rows[m] = {
            **_score(p, test.p),
            **by_workload(p),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        log(f"    {m:<17} MAE {rows[m]['mae']:.2f} pp  ({rows[m]['seconds']} s)")
    return rows


def _summarise(parts: list[dict], methods: list[str]) -> list[dict]:
    rows = []
    for m in methods:
        got = [p["rows"][m] for p in parts if m in p["rows"]]
        if not got:
            continue
        row = {
            "method": m,
            "mae": float(np.mean([g["mae"] for g in got])),
            "mae_std": float(np.std([g["mae"] for g in got])),
            "mse": float(np.mean([g["mse"] for g in got])),
            "mse_std": float(np.std([g["mse"] for g in got])),
            "coverage": None,
            "interval_width": None,
            "seconds": float(np.sum([g["seconds"] for g in got])),
        }
        if "coverage" in got[0]:
            row["coverage"] = float(np.mean([g["coverage"] for g in got]))
            row["interval_width"] = float(np.mean([g["interval_width"] for g in got]))
        if "by_workload" in got[0]:  # the transfer protocol's one partition, per victim
            row["by_workload"] = {
                k: float(np.mean([g["by_workload"][k] for g in got])) for k in got[0]["by_workload"]
            }
        if "member_mae" in got[0]:  # each member alone, over the partitions that kept it
            names = dict.fromkeys(k for g in got for k in g["member_mae"])
            row["member_mae"] = {
                k: float(np.mean([g["member_mae"][k] for g in got if k in g["member_mae"]]))
                for k in names
            }
        rows.append(row)
    return rows


def _sim(args: argparse.Namespace, s: dict, methods: list[str], log, keep: Path) -> dict:
    from ingest.simulator import ARCHETYPES, VM_METRIC_NAMES
    from models.interference.data import simulated_windows

    fleet = {"n_nodes": s["nodes"], "n_instances": s["instances"], "hours": s["hours"]}
    win = {"window": s["window"], "stride": s["stride"]}
    log(f"simulating the test fleet (seed {args.seed})")
    test_all = simulated_windows([args.seed], **fleet, **win)
    rng = np.random.default_rng(args.seed)
    parts = []
    for k in range(s["partitions"]):
        held = sorted(int(a) for a in rng.choice(len(ARCHETYPES), args.test_workloads, False))
        names = [ARCHETYPES[a].name for a in held]
        # A training seed that can never equal the test seed.
        train_seed = args.seed + 1_000_003 * (k + 1)
        log(
            f"partition {k + 1}/{s['partitions']}: unseen {names}; training fleet seed {train_seed}"
        )
        pool = simulated_windows([train_seed], **fleet, **win, exclude=held)
        pool = pool.take(~np.isnan(pool.p))
        fit, val, val_groups = split_by_group(pool, args.val_workloads, args.seed + k)
        test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
        cfg = TrainConfig(
            out_dir=str(keep / f"partition{k + 1}"),
            window_steps=s["window"],
            epochs=s["epochs"],
            max_train_windows=s["max_train_windows"],
            threads=args.threads,
            seed=k + args.model_seed,
            members=parse_members(args.members),
        )
        rows = _run_partition(fit, val, test, list(VM_METRIC_NAMES), methods, s, cfg, log)
        parts.append(
            {
                "test_workloads": names,
                "val_workloads": [ARCHETYPES[a].name for a in val_groups],
                "train_seed": train_seed,
                "n_fit": len(fit),
                "n_test": len(test),
                "rows": rows,
            }
        )
    protocol = {
        "test_seed": args.seed,
        "fleet": fleet,
        "window_steps": s["window"],
        "stride_steps": s["stride"],
        "partitions": s["partitions"],
        "test_workloads_per_partition": args.test_workloads,
        "val_workloads_per_partition": args.val_workloads,
        "model_seed": args.model_seed,
        "training": "one fleet per partition (another seed) without the unseen archetypes",
    }
    return {"protocol": protocol, "partitions": parts}


def _lab_windows(args: argparse.Namespace) -> tuple[Windows, list[str], list[str], dict, int]:
    """The lab's victim windows (one per run), workload names, metric names, fleet.json and
    window length."""
    from models.interference.features import dataset_arrays, windows_from_dataset

    if not args.path:
        raise SystemExit("--dataset lab needs --path (the interference_lab output directory)")
    meta = json.loads((Path(args.path) / "fleet.json").read_text())
    run_steps = int(meta.get("config", {}).get("run_steps", 20))
    window = min(20, run_steps)
    w, group_names = windows_from_dataset(args.path, window=window, stride=window)
    w = w.take(~np.isnan(w.p))
    names = dataset_arrays(args.path)["metric_names"]
    victims = sorted({int(g) for g in np.unique(w.group) if group_names[g].startswith("victim:")})
    if len(victims) < 3:
        raise SystemExit(f"the lab dataset has {len(victims)} victim workloads; need at least 3")
    return w.take(np.isin(w.group, victims)), group_names, names, meta, window


def measured_metrics(w: Windows) -> np.ndarray:
    """Mask of the metrics with any victim value in ``w`` (the lab measures victims and
    co-runners alike, so these are the neighbours' too)."""
    return (~np.isnan(w.victim)).any(axis=(0, 1))


def blank_metrics(w: Windows, keep: np.ndarray) -> Windows:
    """``w`` as a host that measures only the metrics in ``keep`` would give it: the others
    missing (NaN) for the victim and 0 in the neighbour aggregates, as
    ``features.aggregate`` leaves a metric no neighbour reports."""
    out = w.take(np.arange(len(w)))
    out.victim[..., ~keep] = np.nan
    for name in ("nbr_mean", "nbr_max", "nbr_sum"):
        getattr(out, name)[..., ~keep] = 0.0
    return out


def _lab_from_sim(args: argparse.Namespace, s: dict, methods: list[str], log, keep: Path) -> dict:
    from ingest.simulator import VM_METRIC_NAMES
    from models.interference.data import simulated_windows

    test, group_names, names, meta, window = _lab_windows(args)
    if list(names) != list(VM_METRIC_NAMES):
        raise SystemExit("the lab dataset's metrics are not the simulator's; cannot transfer")
    measured = measured_metrics(test)
    fleet = {"n_nodes": s["nodes"], "n_instances": s["instances"], "hours": s["hours"]}
    train_seed = args.seed + 1_000_003
    log(
        f"simulating training fleet {train_seed} with {window}-step windows; "
        f"{int(measured.sum())} of {len(names)} metrics measured by the lab"
    )
    pool = simulated_windows([train_seed], **fleet, window=window, stride=s["stride"])
    pool = blank_metrics(pool.take(~np.isnan(pool.p)), measured)
    fit, val, _ = split_by_group(pool, args.val_workloads, args.seed)
    cfg = TrainConfig(
        out_dir=str(keep / "sim"),
        window_steps=window,
        epochs=s["epochs"],
        max_train_windows=s["max_train_windows"],
        threads=args.threads,
        seed=args.model_seed,
        members=parse_members(args.members),
    )
    victims = {group_names[g]: test.group == g for g in np.unique(test.group)}
    log(f"testing on {len(test)} lab windows of {sorted(victims)}")
    rows = _run_partition(fit, val, test, names, methods, s, cfg, log, test_groups=victims)
    part = {
        "test_workloads": sorted(victims),
        "train_seed": train_seed,
        "n_fit": len(fit),
        "n_test": len(test),
        "rows": rows,
    }
    protocol = {
        "path": str(args.path),
        "window_steps": window,
        "partitions": 1,
        "training": f"simulated fleet {train_seed} only (no lab run), metrics the lab "
        "cannot measure blanked",
        "metrics_measured": [n for n, m in zip(names, measured, strict=True) if m],
        "fleet": fleet,
        "model_seed": args.model_seed,
        "host": meta.get("config", {}).get("host", {}),
    }
    return {"protocol": protocol, "partitions": [part]}


def _lab(args: argparse.Namespace, s: dict, methods: list[str], log, keep: Path) -> dict:
    if getattr(args, "train_on", "lab") == "sim":
        return _lab_from_sim(args, s, methods, log, keep)
    w, group_names, names, meta, window = _lab_windows(args)
    victims = sorted(int(g) for g in np.unique(w.group))
    rng = np.random.default_rng(args.seed)
    parts = []
    for k, held in enumerate(victims):
        rest = [g for g in victims if g != held]
        val_g = int(rng.choice(rest))
        fit = w.take(np.isin(w.group, [g for g in rest if g != val_g]))
        val, test = w.take(w.group == val_g), w.take(w.group == held)
        log(f"partition {k + 1}/{len(victims)}: unseen {group_names[held]} ({len(test)} windows)")
        s["baselines"] = BaselineConfig(
            lstm_epochs=s["epochs"], lstm_batch=32, threads=args.threads, seed=k
        )
        cfg = TrainConfig(
            out_dir=str(keep / f"partition{k + 1}"),
            window_steps=window,
            epochs=s["epochs"],
            batch_size=32,
            patience=0,
            threads=args.threads,
            seed=k,
            members=parse_members(args.members),
        )
        rows = _run_partition(fit, val, test, names, methods, s, cfg, log)
        parts.append(
            {
                "test_workloads": [group_names[held]],
                "val_workloads": [group_names[val_g]],
                "n_fit": len(fit),
                "n_test": len(test),
                "rows": rows,
            }
        )
    protocol = {
        "path": str(args.path),
        "window_steps": window,
        "partitions": len(victims),
        "training": "lab runs of the other victim workloads only (no simulator data)",
        "host": meta.get("config", {}).get("host", {}),
    }
    return {"protocol": protocol, "partitions": parts}


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """Evaluate and return {"dataset", "rows", "protocol", "partitions", "seconds"}."""
    import torch

    torch.set_num_threads(args.threads)
    if getattr(args, "what_if", None):
        if args.dataset != "sim":
            raise ValueError("--what-if needs the simulator's counterfactuals: --dataset sim")
        result = counterfactual.run(args)
        _write_json(args, result)
        return result
    began = time.perf_counter()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown or "telltale" not in methods:
        raise SystemExit(f"--methods must include telltale and only {ALL_METHODS}; got {methods}")
    try:
        parse_members(args.members)
    except ValueError as exc:
        raise SystemExit(f"--members: {exc}") from exc
    if getattr(args, "train_on", "lab") != "lab" and args.dataset != "lab":
        raise SystemExit("--train-on applies to --dataset lab (sim always trains on sim)")
    s = _settings(args)
    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(args.keep or tmp)
        body = (_sim if args.dataset == "sim" else _lab)(args, s, methods, log, keep)
    result = {
        "dataset": args.dataset,
        "rows": _summarise(body["partitions"], methods),
        **body,
        "seconds": round(time.perf_counter() - began, 1),
    }
    _write_json(args, result)
    return result


def _write_json(args: argparse.Namespace, result: dict) -> None:
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")


def format_table(result: dict) -> str:
    if result.get("protocol") == "what-if":
        return counterfactual.format_table(result)
    lines = [
        f"interference evaluation on {result['dataset']} "
        f"({len(result.get('partitions', []))} partitions, unseen workloads)",
        f"{'method':<18} {'MAE pp':>14} {'MSE pp²':>16} {'coverage':>9} {'width pp':>9}",
    ]
    for r in result["rows"]:
        cov = f"{r['coverage']:.3f}" if r.get("coverage") is not None else "-"
        wid = f"{r['interval_width']:.1f}" if r.get("interval_width") is not None else "-"
        lines.append(
            f"{r['method']:<18} {r['mae']:>7.2f} ± {r['mae_std']:<4.2f} "
            f"{r['mse']:>8.1f} ± {r.get('mse_std', 0):<5.1f} {cov:>9} {wid:>9}"
        )
        if r.get("by_workload"):
            each = ", ".join(f"{k} {v:.2f}" for k, v in r["by_workload"].items())
            lines.append(f"{'':<18} (MAE pp per workload: {each})")
        if r.get("member_mae") and len(r["member_mae"]) > 1:
            alone = ", ".join(f"{k} {v:.2f}" for k, v in r["member_mae"].items())
            lines.append(f"{'':<18} (each member alone, MAE pp: {alone})")
    rf = next((r for r in result["rows"] if r["method"] == "random_forest"), None)
    tt = next((r for r in result["rows"] if r["method"] == "telltale"), None)
    if rf and tt and rf["mae"] > 0:
        change = 100 * (tt["mae"] / rf["mae"] - 1)
        word = "lower" if change < 0 else "higher"
        lines.append(f"telltale's MAE is {abs(change):.1f} % {word} than the random forest's")
    lines.append(f"{result.get('seconds', 0):.0f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    result = run(parser.parse_args())
    print(format_table(result))


if __name__ == "__main__":
    main()
