"""``manage.py evaluate mitigation`` without Django: ``add_arguments(parser)``,
``run(args) -> dict``, ``format_table(result) -> str``.

``--dataset sim``: the engine is trained on fleet ``--train-seed`` and its thresholds tuned
on fleet ``--train-seed + 1``; ``--seed S`` draws the held-out test events (S must differ
from both). Every policy is scored on the simulator's expected outcomes E[Y(a) | X] of the
action it picks for each test event (see docs/mitigation.md for the definitions), and
separately estimated by doubly-robust off-policy evaluation from the test events' logged
(X, A, Y) alone. ``--path DIR`` evaluates an artefact written by ``train.py`` instead of
training one. ``--dataset history --path FILE.csv``: a real history has no counterfactuals,
so the oldest 60 % trains, the next 20 % tunes, the newest 20 % is evaluated off-policy.

The result is {"dataset": NAME, "rows": [{"policy": "telltale", "mean_downtime": ..,
"interruption_rate": .., "capacity_cost": .., "regret": .., "fallback_share": ..,
"override_share": .., "ope_estimate": .., "ope_error": .., ...}, ...], ...}; keys a dataset
cannot give are null.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from ingest.simulator.config import rng_for
from models.mitigation.baselines import NaiveRegression, always
from models.mitigation.data import PRIMARY, SimTruth, read_history_csv, simulated_history
from models.mitigation.engine import EngineConfig
from models.mitigation.ope import crossfit_nuisances, deterministic, dr_value
from models.mitigation.policy import FALLBACK_REASONS, CapacityContext, PolicyConfig
from models.mitigation.train import Splits, TrainConfig, TrainResult, load, load_splits, train

DATASETS = ("sim", "history")
TARGETS = {"downtime_reduction": 0.50, "regret_share": 0.10, "interruption_reduction": 0.45}
FULL = {"train": 100000, "val": 5000, "test": 5000, "trees": 400}
QUICK = {"train": 3000, "val": 1500, "test": 1500, "trees": 100}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument(
        "--path", default=None, help="sim: a trained artefact dir; history: the CSV file"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write the result here")
    parser.add_argument("--seed", type=int, default=7, help="sim: the fleet that is tested")
    parser.add_argument("--train-seed", type=int, default=1000, help="sim: training fleet")
    parser.add_argument("--quick", action="store_true", help="small data and forests (tests)")
    parser.add_argument("--train-events", type=int, default=None)
    parser.add_argument("--val-events", type=int, default=None)
    parser.add_argument("--test-events", type=int, default=None)
    parser.add_argument("--trees", type=int, default=None, help="causal forest size")
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="sim: also test fleets seed+1, ... (same model), for OPE error statistics",
    )  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=0.01, help="fallback premium")
    parser.add_argument("--capacity-weight", type=float, default=0.0)
    parser.add_argument("--interruption-weight", type=float, default=0.0)
    parser.add_argument("--max-out-for-repair", type=int, default=2)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    size = QUICK if args.quick else FULL
    return TrainConfig(
        source="sim",
        n_events=args.train_events or size["train"],
        seed=args.train_seed,
        val_events=args.val_events or size["val"],
        tolerance=args.tolerance,
        engine=EngineConfig(
            n_estimators=args.trees or size["trees"],
            nuisance_trees=200 if not args.quick else 100,
            explain_sample=4000 if not args.quick else 1000,
        ),
        policy=PolicyConfig(
            capacity_weight=args.capacity_weight,
            interruption_weight=args.interruption_weight,
        ),
    )


def _capacity_contexts(seed: int, n: int, max_out: int) -> list[CapacityContext]:
    """A synthetic capacity situation per test event (the simulator has no racks): spare
    instance slots on the rack uniform in 0..39, nodes already out for repair in the
    cluster Poisson(1). With K = 2 about a quarter of events hit the repair limit."""
    rng = rng_for(seed, "mitigation-eval", "capacity")
    spare = rng.integers(0, 40, n)
    out = rng.poisson(1.0, n)
    return [CapacityContext(float(s), int(o)) for s, o in zip(spare, out, strict=True)]


def _truth_metrics(act: np.ndarray, truth: SimTruth) -> dict:
    rows = np.arange(len(act))
    mu = truth.mu
    return {
        "mean_downtime": float(mu[PRIMARY][rows, act].mean()),
        "interruption_rate": float(mu["interruptions"][rows, act].sum() / truth.instances.sum()),
        "capacity_cost": float(mu["capacity_cost_node_hours"][rows, act].mean()),
        "regret": float((mu[PRIMARY][rows, act] - mu[PRIMARY].min(axis=1)).mean()),
    }


def _evaluate(
    trained: TrainResult,
    naive: NaiveRegression,
    test: pd.DataFrame,
    truth: SimTruth | None,
    contexts: list[CapacityContext] | None,
    seed: int,
) -> tuple[list[dict], dict]:
    policy = trained.policy()
    eng = trained.engine
    k = len(eng.actions)
    a_idx = np.array([eng.actions.index(a) for a in test["action"]])
    y = test[PRIMARY].to_numpy(dtype=float)
    unit_col = eng.config.per_unit.get(PRIMARY)
    nuis = crossfit_nuisances(
        test, a_idx, y, k, unit=test[unit_col].to_numpy(dtype=float) if unit_col else None,
        covariates=eng.config.covariates, categorical=eng.config.categorical,
        trees=eng.config.nuisance_trees, seed=seed,
    )  # fmt: skip
    ev = policy.evidence(test, legacy=None)
    tt = policy.decide(ev, a_idx)

    # (name, actions on the logged events, P(a | x) for OPE, fallback share, override share)
    entries = [
        ("telltale", tt.action, policy.action_distribution(ev, nuis.propensity),
         tt.fallback_share, tt.override_share),
        ("telltale_no_fallback", tt.model_action, deterministic(tt.model_action, k), 0.0, 0.0),
        # The legacy policy is the logging policy: its P(a | x) is the estimated propensity.
        ("legacy", a_idx, nuis.propensity, None, None),
        ("naive_regression", naive.actions_for(test), None, None, None),
    ]  # fmt: skip
    if contexts is not None:
        cap = policy.decide(ev, a_idx, contexts)
        pi = policy.action_distribution(ev, nuis.propensity, contexts)
        entries.append(
            ("telltale_capacity_limits", cap.action, pi, cap.fallback_share, cap.override_share)
        )
    entries += [(f"always_{a}", always(i, len(test)), None, None, None)
                for i, a in enumerate(eng.actions)]  # fmt: skip
    if truth is not None:
        entries.append(("oracle", truth.oracle, None, None, None))

    rows = []
    for name, act, pi, fb, ov in entries:
        ope = dr_value(deterministic(act, k) if pi is None else pi, a_idx, y, nuis)
        row = {"policy": name, "mean_downtime": None, "interruption_rate": None,
               "capacity_cost": None, "regret": None, "fallback_share": fb,
               "override_share": ov, "ope_estimate": ope.value, "ope_se": ope.se,
               "ope_error": None, "ope_covered": None, "ope_error_realized": None}  # fmt: skip
        if truth is not None:
            row.update(_truth_metrics(np.asarray(act, dtype=int), truth))
            row["ope_error"] = ope.value - row["mean_downtime"]
            row["ope_covered"] = bool(abs(row["ope_error"]) <= 1.96 * ope.se)
            # Against this world's draws rather than expectations: the logged Y is one of
            # them, so this error leaves out the luck of the test fleet's outcomes.
            realized = truth.y[PRIMARY][np.arange(len(act)), np.asarray(act, dtype=int)]
            row["ope_error_realized"] = ope.value - float(realized.mean())
        rows.append(row)
    legacy = next(r for r in rows if r["policy"] == "legacy")
    for row in rows:
        if truth is not None:
            row["downtime_reduction"] = 1 - row["mean_downtime"] / legacy["mean_downtime"]
            row["interruption_reduction"] = (
                1 - row["interruption_rate"] / legacy["interruption_rate"]
            )
            row["regret_share"] = row["regret"] / legacy["regret"]
        row["ope_reduction"] = 1 - row["ope_estimate"] / legacy["ope_estimate"]
    extras = {
        "fallback_reasons": {r: float(np.mean(tt.fallback == r)) for r in FALLBACK_REASONS},
        "ope_nuisances": nuis.chosen,
    }
    if truth is not None:
        # How often the 90 % interval of "model's choice minus legacy" holds the true
        # difference, on the events where the two differ.
        mu, rows_i = truth.mu[PRIMARY], np.arange(len(a_idx))
        differ = tt.model_action != a_idx
        true_adv = mu[rows_i, tt.model_action] - mu[rows_i, a_idx]
        inside = np.abs(tt.advantage - true_adv) <= 1.645 * tt.advantage_se
        extras["advantage_coverage_90"] = float(inside[differ].mean()) if differ.any() else None
        extras["interruption_frontier"] = interruption_frontier(
            truth, a_idx, TARGETS["downtime_reduction"]
        )
    return rows, extras


def interruption_frontier(truth: SimTruth, logged: np.ndarray, min_downtime_cut: float) -> dict:
    """The most an all-knowing policy can cut the interruption rate while still cutting mean
    downtime by ``min_downtime_cut``: the oracle of downtime + w * interruptions, swept over
    w (per-event choices make the trade-off curve convex, so the sweep finds its edge)."""
    mu, mi = truth.mu[PRIMARY], truth.mu["interruptions"]
    rows = np.arange(len(logged))
    legacy_down = mu[rows, logged].mean()
    legacy_rate = mi[rows, logged].sum() / truth.instances.sum()
    best = {"weight": None, "downtime_reduction": None, "interruption_reduction": None}
    for w in np.arange(0.0, 60.0, 0.25):
        act = (mu + w * mi).argmin(axis=1)
        down = 1 - mu[rows, act].mean() / legacy_down
        rate = 1 - mi[rows, act].sum() / truth.instances.sum() / legacy_rate
        if down >= min_downtime_cut:
            best = {"weight": float(w), "downtime_reduction": float(down),
                    "interruption_reduction": float(rate)}  # fmt: skip
    return best


def _naive(trained: TrainResult, train_frame: pd.DataFrame) -> NaiveRegression:
    cfg = trained.engine.config
    naive = NaiveRegression(cfg.actions, cfg.covariates, cfg.categorical)
    return naive.fit(train_frame, train_frame["action"], train_frame[PRIMARY].to_numpy(float))


def _repeat_summary(per_seed: list[dict]) -> dict:
    """Targets and OPE trustworthiness across test fleets (one trained model)."""
    # The capacity-limited variant runs on the first fleet only (it needs drawn contexts).
    shared = set.intersection(*({r["policy"] for r in s["rows"]} for s in per_seed))
    names = [r["policy"] for r in per_seed[0]["rows"] if r["policy"] in shared]
    ope, policies = {}, {}
    for name in names:
        rows = [next(r for r in s["rows"] if r["policy"] == name) for s in per_seed]
        keys = ("mean_downtime", "downtime_reduction", "interruption_reduction", "regret_share")
        policies[name] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
        err = np.array([r["ope_error"] for r in rows])
        realized = np.array([r["ope_error_realized"] for r in rows])
        ope[name] = {
            "mean_error": float(err.mean()),
            "rmse_realized": float(np.sqrt((realized**2).mean())),
            "rmse": float(np.sqrt((err**2).mean())),
            "mean_se": float(np.mean([r["ope_se"] for r in rows])),
            "coverage_95": float(np.mean([r["ope_covered"] for r in rows])),
        }
    tt = [next(r for r in s["rows"] if r["policy"] == "telltale") for s in per_seed]
    return {
        "seeds": [s["seed"] for s in per_seed],
        "telltale": [
            {"seed": s["seed"], **{k: r[k] for k in (*TARGETS, "fallback_share", "ope_error")}}
            for s, r in zip(per_seed, tt, strict=True)
        ],
        "policies": policies,
        "ope": ope,
    }


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    notes: list[str] = []
    size = QUICK if args.quick else FULL
    n_test = args.test_events or size["test"]
    if args.dataset == "sim":
        if args.path:
            trained = load(args.path)
            cfg = trained.config
            notes.append(f"evaluated artefact {args.path} (data hash {trained.data_hash})")
        else:
            cfg = _train_config(args)
        if cfg.source != "sim" or args.seed in (cfg.seed, cfg.validation_seed):
            raise ValueError(
                f"test seed {args.seed} must differ from the training fleet {cfg.seed} and "
                f"the validation fleet {cfg.validation_seed}"
            )
        if not args.path:
            trained = train(cfg)
        train_frame = load_splits(cfg).train
        test, truth = simulated_history(n_test, args.seed)
        contexts = _capacity_contexts(args.seed, n_test, args.max_out_for_repair)
        name = "sim"
    else:
        if not args.path:
            raise ValueError("--dataset history needs --path FILE.csv")
        frame, errors = read_history_csv(args.path)
        if "ts" in frame.columns:
            frame = frame.iloc[np.argsort(pd.to_datetime(frame["ts"], utc=True).to_numpy())]
        a, b = int(len(frame) * 0.6), int(len(frame) * 0.8)
        sim_cfg = _train_config(args)
        cfg = TrainConfig(
            source="csv", path=args.path, tolerance=args.tolerance,
            engine=sim_cfg.engine, policy=sim_cfg.policy,
        )  # fmt: skip
        trained = train(cfg, Splits(frame.iloc[:a], frame.iloc[a:b], None, errors))
        train_frame, test, truth, contexts = frame.iloc[:a], frame.iloc[b:], None, None
        notes.append(f"{len({e.row for e in errors})} rows rejected by validation")
        name = "history"

    naive = _naive(trained, train_frame)
    rows, extras = _evaluate(trained, naive, test, truth, contexts, seed=args.seed)
    repeats = None
    if name == "sim" and args.repeats > 1:
        per_seed = [{"seed": args.seed, "rows": rows}]
        seed = args.seed
        while len(per_seed) < args.repeats:
            seed += 1
            if seed in (cfg.seed, cfg.validation_seed):
                continue
            other, other_truth = simulated_history(n_test, seed)
            more, _ = _evaluate(trained, naive, other, other_truth, None, seed=seed)
            per_seed.append({"seed": seed, "rows": more})
        repeats = _repeat_summary(per_seed)
    tt = next(r for r in rows if r["policy"] == "telltale")
    targets = None
    if truth is not None:
        targets = {
            key: {"target": goal, "value": tt[key],
                  "met": tt[key] < goal if key == "regret_share" else tt[key] >= goal}
            for key, goal in TARGETS.items()
        }  # fmt: skip
    return {
        "dataset": name,
        "seed": args.seed if name == "sim" else None,
        "rows": rows,
        "targets": targets,
        "policy_config": trained.policy_config.to_dict(),
        "tuning": (trained.metrics.get("tuning") or {}).get("chosen"),
        **extras,
        "repeats": repeats,
        "train": {k: trained.metrics.get(k) for k in ("n_train", "n_validation", "data_hash")}
        | {"fit_seconds": trained.engine.metrics["fit_seconds"]},
        "n_test": len(test),
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{100 * v:.1f}%" if pct else f"{v:.2f}"


def format_table(result: dict) -> str:
    cols = [("policy", None), ("mean_downtime", False), ("downtime_reduction", True),
            ("interruption_rate", True), ("interruption_reduction", True),
            ("capacity_cost", False), ("regret", False), ("regret_share", True),
            ("fallback_share", True), ("override_share", True), ("ope_estimate", False),
            ("ope_se", False), ("ope_error", False), ("ope_covered", False)]  # fmt: skip
    header = [c for c, _ in cols]
    body = [[r["policy"]] + [_fmt(r.get(c), p) for c, p in cols[1:]] for r in result["rows"]]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = [
        f"mitigation on {result['dataset']}"
        + (f" (test seed {result['seed']})" if result.get("seed") is not None else "")
        + f", {result['n_test']} held-out events",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    for key, t in (result.get("targets") or {}).items():
        lines.append(
            f"target {key}: {_fmt(t['value'], True)} (goal {'<' if key == 'regret_share' else '>='}"
            f" {100 * t['target']:.0f}%): {'met' if t['met'] else 'NOT met'}"
        )
    chosen = result.get("tuning")
    if chosen:
        lines.append(
            f"thresholds (tuned on the validation fleet): alpha={chosen['alpha']}, "
            f"overlap_low={chosen['overlap_low']}, ood_quantile={chosen['ood_quantile']}"
        )
    reasons = result.get("fallback_reasons") or {}
    if reasons:
        lines.append("telltale fallbacks: " + ", ".join(
            f"{k} {100 * v:.1f}%" for k, v in reasons.items()))  # fmt: skip
    if result.get("advantage_coverage_90") is not None:
        lines.append(
            "90% intervals of (model choice - legacy) holding the true difference: "
            f"{100 * result['advantage_coverage_90']:.1f}%"
        )
    front = result.get("interruption_frontier")
    if front and front["interruption_reduction"] is not None:
        lines.append(
            "best interruption cut any policy can pair with a "
            f"{100 * TARGETS['downtime_reduction']:.0f}% downtime cut here (oracle of downtime "
            f"+ {front['weight']:g} x interruptions): "
            f"{100 * front['interruption_reduction']:.1f}%"
        )
    rep = result.get("repeats")
    if rep:
        lines.append(f"over test seeds {rep['seeds']}:")
        for r in rep["telltale"]:
            lines.append(
                f"  seed {r['seed']}: downtime {_fmt(r['downtime_reduction'], True)}, regret "
                f"share {_fmt(r['regret_share'], True)}, interruptions "
                f"{_fmt(r['interruption_reduction'], True)}, fallback "
                f"{_fmt(r['fallback_share'], True)}"
            )
        for name, p in rep["policies"].items():
            lines.append(
                f"  mean {name}: downtime {_fmt(p['downtime_reduction'], True)}, regret share "
                f"{_fmt(p['regret_share'], True)}, interruptions "
                f"{_fmt(p['interruption_reduction'], True)}"
            )
        for name, o in rep["ope"].items():
            lines.append(
                f"  OPE {name}: mean error {o['mean_error']:.2f}, RMSE {o['rmse']:.2f} "
                f"(vs realised draws {o['rmse_realized']:.2f}), mean SE {o['mean_se']:.2f}, "
                f"95% CI coverage {100 * o['coverage_95']:.0f}%"
            )
    lines += [f"note: {n}" for n in result.get("notes", [])]
    lines.append(f"seconds: {result.get('seconds')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.mitigation.evaluate")
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(format_table(result))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(result, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
