"""Per-dataset evaluation protocols (called by ``evaluate.run``).

Threshold rules, all fixed before looking at any test label:
- sim: per level, the calibrated threshold that maximises event F1 on the validation fleet
  with deceptive FPR capped at 5 % (validation labels, never test labels);
- smd, asd, nab: calibrated 50, i.e. one window in a thousand on the validation part;
- nezha: the system alarms when any of K pods exceeds the per-pod level of a 1/1000
  system-wide rate (Bonferroni: calibrated 100 * -log10(0.001 / K) / 6);
- bgl: the classifiers' own decision boundary (probability 0.5, raw score 0).
"""

from __future__ import annotations

import numpy as np

from models.anomaly.attribution_eval import (
    attribution_note,
    evaluate_attribution,
    pooled_root_cause,
    root_cause_hits,
    root_cause_note,
)
from models.anomaly.baselines import IsolationForestBaseline, LogTfidfLR, RobustZ
from models.anomaly.datasets import Split, asd, bgl, nab, nezha, smd
from models.anomaly.datasets import sim as simdata
from models.anomaly.datasets.devinject import KINDS, MAGNITUDE, dev_splits
from models.anomaly.features import LogStore, SeriesGroup, fit_spec, windows_of
from models.anomaly.metrics import event_scores, nab_file_score, nab_normalised
from models.anomaly.pipeline import (
    Scored,
    evaluate,
    events_of,
    fit_calibrator,
    scenario_predictions,
    score,
)
from models.anomaly.postprocess import DECADES, online_calibrate
from models.anomaly.train import (
    DetectorMethod,
    ModelConfig,
    TrainConfig,
    calibrate_and_select,
    fit_detector,
    mine_training_logs,
    train,
)

UNSUPERVISED_LEVEL = 50.0


def _profile(profile: dict, args) -> dict:
    """The dataset's profile with the window shape overridden from the command line."""
    out = dict(profile)
    for key in ("window_steps", "patch_steps"):
        value = getattr(args, key, None)
        if value:
            out[key] = int(value)
    out["model_seed"] = int(getattr(args, "model_seed", 0) or 0)
    return out


def _model_config(profile: dict, quick: bool, **kw) -> ModelConfig:
    base = {
        "window_steps": profile["window_steps"],
        "patch_steps": profile["patch_steps"],
        "step_seconds": profile["step_seconds"],
        "use_time": profile["use_time"],
        "vocab_size": 4096,
        "seed": int(profile.get("model_seed", 0)),
    }
    if quick:
        kw = {
            **kw,
            "epochs": 1,
            "windows_per_epoch": 512,
            "d_model": 16,
            "ff": 32,
            "batch_size": 128,
        }
    return ModelConfig(**{**base, **kw})


def _windows(group: SeriesGroup, mc: ModelConfig, from_step: int, stride: int = 1) -> np.ndarray:
    first = max(from_step + 1, mc.patch_steps)
    return windows_of(group, mc.window_steps, stride, first)


def _methods(det, split: Split, spec, mc: ModelConfig, table=None) -> list:
    methods = [DetectorMethod(det)]
    has_metrics = any(g.values.shape[-1] for g in split.train)
    if has_metrics:
        specs = [spec] * len(split.train)
        methods.append(RobustZ(mc.window_steps, mc.patch_steps).fit(split.train, specs))
        keys = [_windows(g, mc, mc.window_steps // 2) for g in split.train]
        methods.append(
            IsolationForestBaseline(mc.window_steps, mc.patch_steps).fit(split.train, keys, specs)
        )
    return methods


def _score_split(method, split: Split, spec, mc: ModelConfig) -> tuple[list, list]:
    val_from = split.meta.get("val_from", 0)
    val = [score(method, g, _windows(g, mc, val_from), spec, mc.patch_steps) for g in split.val]
    test = [
        score(method, g, _windows(g, mc, start), spec, mc.patch_steps)
        for g, start in zip(split.test, test_starts(split), strict=True)
    ]
    return val, test


def test_starts(split: Split) -> list[int]:
    """First scored step of each test group (``test_from`` is one int or one per group)."""
    if isinstance(split.test_from, (list, tuple)):
        if len(split.test_from) != len(split.test):
            raise ValueError(f"{split.name}: test_from has one entry per test group")
        return [int(x) for x in split.test_from]
    return [int(split.test_from)] * len(split.test)


def system_targets(scored: list[Scored]) -> int:
    """K of the system alarm rule: distinct targets (pods), not targets summed over test
    groups (two time slices of the same pods are still K pods at any moment)."""
    return len({t for s in scored for t in s.targets})


def system_view(scored: list[Scored]) -> Scored:
    """All targets as one system stream: per time, the highest calibrated score."""
    times = np.unique(np.concatenate([s.times for s in scored]))
    cal = np.full(len(times), -np.inf)
    raw = np.full(len(times), -np.inf)
    label = np.full(len(times), -1.0)
    for s in scored:
        pos = np.searchsorted(times, s.times)
        np.maximum.at(cal, pos, s.calibrated)
        np.maximum.at(raw, pos, s.raw)
        np.maximum.at(label, pos, s.label)
    keys = np.stack([np.zeros(len(times), int), np.arange(len(times))], 1)
    return Scored(scored[0].group, keys, ["system"], times, raw, label, calibrated=cal)


def _metric_dataset(splits: list[Split], profile: dict, quick: bool, shared: bool, **mc_kw) -> dict:
    """SMD, ASD, NAB and Nezha: self-supervised Telltale against robust z and IsolationForest."""
    mc = _model_config(profile, quick, **mc_kw)
    specs = {}
    for sp in splits:
        values = np.concatenate([g.values for g in sp.train])
        # The scored targets are the training ones (pods, machines, entities, files), so
        # each gets its own robust statistics ("normalised per series"); pooling them made
        # Nezha's small-latency pods sit at the global clip even in fault-free hours.
        g0 = sp.train[0]
        specs[sp.name] = fit_spec(values, g0.metric_names, target_names=list(g0.target_names))
    shared_det = None
    if shared:
        groups = [g for sp in splits for g in sp.train]
        shared_det = fit_detector(groups, [specs[sp.name] for sp in splits for _ in sp.train], mc)
    per_split, nab_files, causes = [], {}, []
    system = profile.get("system", False)
    for sp in splits:
        spec = specs[sp.name]
        table = _attach_logs(sp, mc) if system else None
        det = shared_det or fit_detector(
            sp.train,
            [spec] * len(sp.train),
            mc,
            table=table[0] if table else None,
            seed_templates=table[1] if table else None,
        )
        if table:
            _attach_eval_logs(sp, det)
        rows = {}
        for method in _methods(det, sp, spec, mc):
            val, test = _score_split(method, sp, spec, mc)
            if "online_block" in profile:
                ref = np.concatenate([v.raw for v in val])
                for s in test:
                    order = np.argsort(s.times, kind="stable")
                    s.calibrated = np.empty(len(s.raw))
                    s.calibrated[order] = online_calibrate(
                        ref, s.raw[order], profile["online_block"]
                    )
            else:
                cal = fit_calibrator(val, normal_only=False)
                for s in test:
                    s.calibrated = cal.transform(s.raw)
            level = UNSUPERVISED_LEVEL
            gap = profile.get("event_gap", 1)
            if system:
                k = system_targets(test)
                level = 100.0 * min(1.0, -np.log10(1e-3 / k) / DECADES)
                test = [system_view(test)]
            levels = {s.group: level for s in test}
            res = evaluate(test, sp.segments, levels, gap)
            if "windows" in sp.meta:
                nab = _nab_file(sp, test, level, gap)
                nab_files.setdefault(method.name, []).append(nab)
                res["nab_score"] = nab_normalised([nab]) if nab.windows else None
                res["nab_raw"] = nab.raw
            if system:
                res["recall_by_type"] = _recall_by_type(test, sp, level)
            if method.name == "telltale" and sp.meta.get("interpretation"):
                causes.append(
                    root_cause_hits(
                        det, sp.test[0], spec, test[0], level, sp.meta["interpretation"]
                    )
                )
            res["threshold"] = level
            rows[method.name] = res
        per_split.append({"name": sp.name, "rows": rows, "meta": _plain(sp.meta)})
    from models.anomaly.evaluate import mean_rows

    means = mean_rows([s["rows"] for s in per_split])
    for method, files in nab_files.items():
        means[method]["nab_score"] = nab_normalised(files)
        means[method]["nab_detected_windows"] = sum(f.detected for f in files)
        means[method]["nab_windows"] = sum(f.windows for f in files)
    out = {"rows": means, "splits": per_split, "model": _plain(vars(mc))}
    root_cause = pooled_root_cause(causes)
    if root_cause is not None:
        out["root_cause"] = root_cause
    return out


def _nab_file(sp: Split, test: list[Scored], level: float, gap: int):
    times = sp.meta["times"]
    alarms = np.zeros(len(times), bool)
    for e in events_of(test[0], level, gap):
        row = int(np.searchsorted(times, e.start - sp.meta["step"]))
        alarms[min(row, len(times) - 1)] = True
    return nab_file_score(times, alarms, sp.meta["windows"])


def _recall_by_type(test: list[Scored], sp: Split, level: float) -> dict:
    events = events_of(test[0], level)
    anomalies = [s for s in sp.segments if s.kind == "anomaly"]
    ev = event_scores(events, sp.segments, 1.0)
    out: dict[str, list[int]] = {}
    for i, seg in enumerate(anomalies):
        hit = out.setdefault(seg.scenario, [0, 0])
        hit[1] += 1
        hit[0] += int(i in ev.detected)
    return {k: f"{a}/{b}" for k, (a, b) in out.items()}


def _attach_logs(sp: Split, mc: ModelConfig):
    """Mine the training part's lines (Nezha) with a fresh miner; returns (table, seeds)."""
    g = sp.train[0]
    meta = g.meta
    if not meta.get("messages"):
        return None
    sel = np.flatnonzero((meta["log_ts"] >= g.ts[0]) & (meta["log_ts"] < g.ts[-1] + g.step_seconds))
    if not len(sel):  # no line to learn templates from: the model runs on metrics alone
        return None
    texts = [meta["messages"][i] for i in sel]
    tmpl, table, seeds = mine_training_logs(texts, mc.vocab_size)
    g.logs = _store(g, meta["log_ts"][sel], meta["log_target"][sel], tmpl)
    return table, seeds


def _attach_eval_logs(sp: Split, det) -> None:
    """Validation and test lines go through the serving path (the detector's miner)."""
    for g in [*sp.val, *sp.test]:
        meta = g.meta
        sel = np.flatnonzero(
            (meta["log_ts"] >= g.ts[0]) & (meta["log_ts"] < g.ts[-1] + g.step_seconds)
        )
        tmpl = det.template_indices([meta["messages"][i] for i in sel])
        g.logs = _store(g, meta["log_ts"][sel], meta["log_target"][sel], tmpl)


def _store(g: SeriesGroup, ts: np.ndarray, target: np.ndarray, tmpl: np.ndarray) -> LogStore:
    step = ((ts - g.ts[0]) // g.step_seconds).astype(np.int64)
    return LogStore.build(g.n_targets, g.n_steps, target, step, np.asarray(tmpl, np.int64))


def _plain(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
    return out


# ---------------------------------------------------------------------- datasets
def _dev_options(args) -> dict | None:
    """``--dev``'s injection options (seed, kinds, magnitude), parsed once; None without it."""
    if not getattr(args, "dev", False):
        return None
    kinds = getattr(args, "dev_kinds", None)
    return {
        "seed": int(getattr(args, "dev_seed", 0)),
        "kinds": tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else KINDS,
        "magnitude": dev_sizes(getattr(args, "dev_sizes", None)),
    }


def _splits(args, loaded: list[Split], profile: dict) -> list[Split]:
    """The test splits, or with ``--dev`` development splits cut from their training parts."""
    options = _dev_options(args)
    return loaded if options is None else dev_splits(loaded, profile["window_steps"], **options)


def dev_sizes(text: str | None) -> tuple[float, float]:
    """``--dev-sizes LOW,HIGH`` -> (low, high) spreads; the default range when absent."""
    if not text:
        return MAGNITUDE
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--dev-sizes: two numbers LOW,HIGH in spreads, not {text!r}") from None
    return low, high


def _dev_notes(args) -> list[str]:
    options = _dev_options(args)
    if options is None:
        return []
    low, high = options["magnitude"]
    return [
        "--dev: the test part is not used; train and validation together are cut into fit "
        "(first 50 %), calibration (next 20 %, which replaces 'the last 20 % of train' above) "
        "and a scored part (last 30 %) with injected anomalies as labels "
        f"(injection draw {options['seed']}, kinds {', '.join(options['kinds'])}, "
        f"sizes {low:g}-{high:g} spreads)"
    ]


def run_smd(args) -> dict:
    profile = _profile(smd.PROFILE, args)
    out = _metric_dataset(
        _splits(args, smd.load(args.path, args.quick), profile),
        profile,
        args.quick,
        False,
        epochs=6,
        windows_per_epoch=12_000,
    )
    out["notes"] = [
        "threshold: calibrated 50 (1/1000 windows of the last 20 % of train); no test labels",
        "pa_f1 is point-adjusted (a segment counts as found when any point is flagged)",
        *_dev_notes(args),
        *_root_cause_notes(out),
    ]
    return out


def _root_cause_notes(out: dict) -> list[str]:
    return [root_cause_note(out["root_cause"])] if "root_cause" in out else []


def run_asd(args) -> dict:
    profile = _profile(asd.PROFILE, args)
    out = _metric_dataset(
        _splits(args, asd.load(args.path, args.quick), profile),
        profile,
        args.quick,
        False,
        epochs=6,
        windows_per_epoch=6000,
    )
    out["notes"] = [
        "same protocol as SMD; 5-minute steps, 4-hour windows",
        *_dev_notes(args),
        *_root_cause_notes(out),
    ]
    return out


def run_nab(args) -> dict:
    out = _metric_dataset(
        nab.load(args.path, args.quick),
        _profile(nab.PROFILE, args),
        args.quick,
        True,
        epochs=6,
        windows_per_epoch=10_000,
    )
    out["notes"] = [
        "nab_score: NAB standard profile, corpus-normalised, threshold fixed (not NAB's "
        "label-optimised threshold); one alert per event (its first point)",
        "Telltale: one model for all files (probationary parts only); point labels = NAB windows",
    ]
    return out


def run_nezha(args) -> dict:
    out = _metric_dataset(
        nezha.load(args.path, args.quick),
        _profile(nezha.PROFILE, args),
        args.quick,
        False,
        epochs=15,
        windows_per_epoch=None,
    )
    out["notes"] = [
        "system-level: an incident is caught when any pod alarms within [inject, inject+5 min]; "
        "the next 10 minutes are recovery; false alarms per day of the whole system",
        "reference hours: fit on fault-free 16:00-18:59 UTC, calibrate on 19:00-19:59, test "
        "08:41-15:59 (28 injections) and 20:00-23:59 (fault-free); K = distinct pods",
        "no log line lies in the reference hours, so Telltale runs on metrics alone here",
    ]
    return out


def run_bgl(args) -> dict:
    splits = bgl.load(args.path, args.quick)
    profile = bgl.PROFILE
    mc = _model_config(
        profile,
        args.quick,
        epochs=40,
        windows_per_epoch=None,
        d_model=32,
        ff=64,
        batch_size=64,
        lr=3e-3,
    )
    per_split = []
    for sp in splits:
        messages = sp.meta["messages"]
        fit = sp.train[0]
        lines = fit.meta["lines"]
        tmpl, table, seeds = mine_training_logs([messages[i] for i in lines], mc.vocab_size)
        fit.logs = LogStore.build(
            1, fit.n_steps, np.zeros(len(tmpl), np.int64), np.arange(len(tmpl)), tmpl
        )
        det = fit_detector([fit], [None], mc, "supervised", [], table, seeds)
        for g in [*sp.val, *sp.test]:
            r = g.meta["lines"]
            ids = det.template_indices([messages[i] for i in r])
            g.logs = LogStore.build(
                1, g.n_steps, np.zeros(len(ids), np.int64), np.arange(len(ids)), ids
            )
        lr = LogTfidfLR(mc.window_steps, mc.patch_steps, table).fit([fit], [_windows(fit, mc, 0)])
        rows = {}
        for method in (DetectorMethod(det), lr):
            val, test = _score_split(method, sp, None, mc)
            cal = fit_calibrator(val, normal_only=True)
            for s in test:
                s.calibrated = cal.transform(s.raw)
            level = float(cal.transform(np.array([0.0]))[0])
            lines = sp.test[0].meta["lines"]
            times = sp.meta["times"][lines.start + sp.test_from : lines.stop]
            days = max(float(times[-1] - times[0]), 1.0) / 86_400 if len(times) else None
            res = evaluate(test, sp.segments, {s.group: level for s in test}, 0, days)
            res["threshold"] = level
            rows[method.name] = res
        per_split.append({"name": sp.name, "rows": rows})
    from models.anomaly.evaluate import mean_rows

    return {
        "rows": mean_rows([s["rows"] for s in per_split]),
        "splits": per_split,
        "notes": [
            "per-line F1 (window = the line and its 7 predecessors, label = the line's)",
            "time-ordered: first half trains, second half tests; decision threshold p = 0.5",
            "robust z / IsolationForest need metrics: not applicable to a log-only dataset",
        ],
    }


def run_sim(args) -> dict:
    cfg = (
        TrainConfig.quick(out_dir=None, test_seed=args.seed)
        if args.quick
        else TrainConfig(out_dir=None, test_seed=args.seed)
    )
    cfg.model.seed = int(getattr(args, "model_seed", 0) or 0)
    trained = train(cfg)
    det, data = trained.detector, trained.data
    mc = cfg.model
    patch_s = mc.patch_steps * mc.step_seconds
    nodes, hours = (2, 2.0) if args.quick else (30, 24.0)
    conf = simdata.fleet_config(args.seed, nodes, hours, 2, simdata.TEST_RATES, args.variant_set)
    test = simdata.simulate(conf, det.template_indices, None, patch_s)
    train_groups = [data["train"].vm, data["train"].host]
    specs = data["specs"]
    train_keys = [
        windows_of(g, mc.window_steps, mc.patch_steps, mc.window_steps) for g in train_groups
    ]
    methods = [
        DetectorMethod(det),
        RobustZ(mc.window_steps, mc.patch_steps).fit([], []),
        IsolationForestBaseline(mc.window_steps, mc.patch_steps).fit(
            train_groups, train_keys, [specs[g.name] for g in train_groups]
        ),
        LogTfidfLR(mc.window_steps, mc.patch_steps, det.table).fit(train_groups, train_keys),
    ]
    val = data["val"]
    rows, extra = {}, {}
    for method in methods:
        val_scored = _sim_scored(method, val, mc, specs)
        cals, levels = calibrate_and_select(val_scored, val.segments, cfg.max_deceptive_fpr)
        test_scored = _sim_scored(method, test, mc, specs)
        for s in test_scored:
            s.calibrated = cals[s.group].transform(s.raw)
        res = evaluate(test_scored, test.segments, levels)
        res["thresholds"] = levels
        if method.name == "telltale":
            true, pred = scenario_predictions(
                test_scored, test.segments, det.classes, list(simdata.ANOMALY_NAMES)
            )
            res["scenario_accuracy"] = (
                float(np.mean([a == b for a, b in zip(true, pred, strict=True)])) if true else None
            )
            extra["recall_by_variant"] = _recall_by_variant(test_scored, test.segments, levels)
            extra["attribution"] = evaluate_attribution(
                det,
                {"vm": test.vm, "host": test.host},
                specs,
                test_scored,
                test.segments,
                levels,
                test.case_templates,
            )
        rows[method.name] = res
    n_cases = sum(s.kind == "anomaly" for s in test.segments)
    n_dec = sum(s.kind == "deceptive" for s in test.segments)
    return {
        "rows": rows,
        "splits": [{"name": f"seed-{args.seed}-{args.variant_set}", "rows": rows}],
        "test_fleet": {
            "seed": args.seed,
            "nodes": nodes,
            "hours": hours,
            "instances": test.vm.n_targets,
            "anomaly_cases": n_cases,
            "deceptive_cases": n_dec,
            "variant_set": args.variant_set,
            "log_lines": test.n_lines,
        },
        "training": {k: v for k, v in trained.metrics.items() if k != "losses"},
        **extra,
        "notes": [
            f"test fleet seed {args.seed} ({args.variant_set} variants); training seeds "
            f"{trained.metrics['train_seed']}, validation {trained.metrics['val_seed']}",
            "event F1: an alarm event is true when it overlaps an anomaly case of its target",
            attribution_note(extra["attribution"]),
        ],
    }


def _sim_scored(method, sim, mc: ModelConfig, specs: dict) -> list[Scored]:
    out = []
    for g in (sim.vm, sim.host):
        keys = windows_of(g, mc.window_steps, mc.patch_steps, mc.window_steps)
        out.append(score(method, g, keys, specs[g.name], mc.patch_steps))
    return out


def _recall_by_variant(scored: list[Scored], segments: list, levels: dict) -> dict:
    events = [e for s in scored for e in events_of(s, levels[s.group])]
    ev = event_scores(events, segments, 1.0)
    anomalies = [s for s in segments if s.kind == "anomaly"]
    out: dict[str, list[int]] = {}
    for i, seg in enumerate(anomalies):
        variant = seg.meta.get("variant", "").split("/")[-1]
        hit = out.setdefault(variant, [0, 0])
        hit[1] += 1
        hit[0] += int(i in ev.detected)
    return {k: f"{a}/{b}" for k, (a, b) in sorted(out.items())}
