"""Training as plain functions: ``train(cfg) -> TrainResult`` (simulated fleets plus any
user-labelled windows) and ``fit_detector`` (any series groups, used by the evaluation).

The artefact directory is self-contained: ``model.pt`` (weights), ``config.json`` (network,
window shape, scoring mode, scenario classes, training config), ``features.json``
(normalisation per level), ``calibration.json``, ``thresholds.json``, ``templates.json``
(the drain3 templates that seed the serving miner; the vocabulary size is in config.json)
and ``metrics.json`` (validation figures, timings, data hash).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch

from models.anomaly.components import ContextEncoder
from models.anomaly.datamodule import AnomalyDataModule, WindowDataset, WindowShape
from models.anomaly.datasets import sim as simdata
from models.anomaly.detector import AnomalyDetector
from models.anomaly.features import FeatureSpec, LogStore, SeriesGroup, fit_spec, windows_of
from models.anomaly.logmining import LogMiner, TemplateTable
from models.anomaly.module import DEFAULT_TOPK, AnomalyModule, forecast_errors
from models.anomaly.novelty import EXPECTED_CLASSES
from models.anomaly.pipeline import (
    Scored,
    evaluate,
    fit_calibrator,
    scenario_predictions,
    score,
    select_threshold,
)
from models.anomaly.postprocess import Calibrator, Thresholds
from models.anomaly.userlabels import LabeledWindow, expected_names, user_groups
from models.progress import EpochLog

log = logging.getLogger(__name__)


@dataclass
class ModelConfig:
    window_steps: int = 240
    patch_steps: int = 20
    step_seconds: int = 15
    vocab_size: int = 8192
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    ff: int = 128
    dropout: float = 0.0
    use_time: bool = True
    # Day of week needs weeks of training data; None = use it when every training series
    # spans 14 days (``week_span_days``).
    use_week: bool | None = None
    modality_dropout: float = 0.1
    # Share of training windows in which some metrics are hidden (``hide_metrics``), so a
    # target that sends fewer metrics than the simulator (node_exporter: 11 of 19 for an
    # instance) is not a kind of window the model never saw.
    metric_dropout: float = 0.0
    scenario_weight: float = 1.0
    epochs: int = 6
    batch_size: int = 256
    lr: float = 2e-3
    windows_per_epoch: int | None = 36_000
    max_minutes: float | None = None
    topk: int = DEFAULT_TOPK
    seed: int = 0
    fast_dev_run: bool = False

    @property
    def shape(self) -> WindowShape:
        return WindowShape(self.window_steps, self.patch_steps, self.step_seconds)


@dataclass
class TrainConfig:
    out_dir: str | None = "var/models/anomaly"
    test_seed: int | None = None  # training and validation fleets never use this seed
    nodes: int = 50
    instances: int | None = 400
    hours: float = 24.0
    val_nodes: int = 20
    val_hours: float = 12.0
    # Fitting stops after 5 minutes whatever the epoch, so training stays under 10. A third
    # of the windows hide some metrics: fleets send what their exporters give (node_exporter:
    # 11 of 19 instance metrics), and on fresh simulated fleets 21, 22 and 31 this raised
    # event F1 with every metric from 0.969 to 0.982 and with node_exporter's from 0.952 to
    # 0.976 (docs/anomaly.md, "Targets that send fewer metrics").
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(max_minutes=5.0, metric_dropout=0.3)
    )
    extra_windows: list[LabeledWindow] = field(default_factory=list)
    user_weight: float = 5.0
    threads: int = 2
    max_deceptive_fpr: float = 0.05

    @classmethod
    def quick(cls, **kw) -> TrainConfig:
        """Seconds, not minutes: for tests and smoke runs (numbers mean little)."""
        model = ModelConfig(epochs=1, windows_per_epoch=512, d_model=16, ff=32, batch_size=128)
        base = {"nodes": 2, "instances": 14, "hours": 2.0, "val_nodes": 2, "val_hours": 2.0}
        return cls(**{**base, "model": model, **kw})


@dataclass
class TrainResult:
    artefact_dir: Path | None
    detector: AnomalyDetector
    metrics: dict
    seconds: dict
    data_hash: str
    data: dict = field(default_factory=dict)  # training and validation data, for evaluation


def build_net(
    cfg: ModelConfig, groups: dict[str, int], n_classes: int, logs: bool, span_days: float = 0.0
) -> ContextEncoder:
    return ContextEncoder(
        groups,
        cfg.window_steps,
        cfg.patch_steps,
        cfg.vocab_size if logs else 0,
        n_classes,
        cfg.d_model,
        cfg.n_layers,
        cfg.n_heads,
        cfg.ff,
        cfg.dropout,
        cfg.use_time,
        cfg.modality_dropout,
        span_days >= 14 if cfg.use_week is None else cfg.use_week,
    )


def balanced_probs(data: WindowDataset, shares: dict[tuple[str, int], float]) -> np.ndarray:
    """Sampling probability per window so each (group, kind) gets its share of an epoch;
    kind 1 = the last patch lies in a labelled case (anomaly or expected), 0 = normal.
    User-labelled windows count ``weight`` times a simulated window of their kind."""
    kinds, counts = [], {}
    for g, (lab, scen) in zip(data.groups, data.labels, strict=True):
        n = len(data.keys[len(kinds)])
        kind = np.zeros(n, int) if lab is None else ((lab != 0) | (scen > 0)).astype(int)
        kinds.append(kind)
        if not g.meta.get("user"):
            for k in (0, 1):
                counts[(g.name, k)] = counts.get((g.name, k), 0) + int((kind == k).sum())
    probs = []
    for gi, (g, kind) in enumerate(zip(data.groups, kinds, strict=True)):
        per = np.array(
            [shares.get((g.name, k), 0.0) / max(counts.get((g.name, k), 0), 1) for k in (0, 1)]
        )
        p = per[kind]
        if data.weights is not None:
            p = p * data.weights[gi]
        probs.append(p)
    p = np.concatenate(probs)
    return p / p.sum()


def fit_network(
    net: ContextEncoder,
    train: WindowDataset,
    cfg: ModelConfig,
    probs: np.ndarray | None = None,
) -> dict:
    """Lightning training; returns timing and the last logged losses."""
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    module = AnomalyModule(net, lr=cfg.lr, scenario_weight=cfg.scenario_weight)
    dm = AnomalyDataModule(train, cfg.batch_size, cfg.windows_per_epoch, probs, cfg.seed)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=cfg.epochs,
        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes else None,
        fast_dev_run=cfg.fast_dev_run,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        callbacks=[EpochLog(log)],
    )
    t = time.perf_counter()
    with warnings.catch_warnings():
        # Lightning notes that the module's transfer_batch_to_device wins: that is intended.
        warnings.filterwarnings("ignore", message=".*transfer_batch_to_device.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(module, datamodule=dm)
    net.eval()
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {
        "fit_seconds": time.perf_counter() - t,
        "losses": logged,
        "epochs": trainer.current_epoch,
    }


# Each metric's forecast error is measured in units of the error it exceeds on 1 % of
# training windows. The median served before, but a metric with routine spikes (ASD, SMD:
# training p99/median of 1,000-6,000 against 4-30 for the others) then filled the whole top
# percent of calibration windows on its own, so no incident on another metric could outrank
# its ordinary spikes; the 99th percentile puts every metric's ordinary tail at about 1.
ERROR_QUANTILE = 0.99


def _scale_groups(train: WindowDataset) -> list[int]:
    """Indices of the groups whose windows may set an error scale: those with metrics, and
    not windows that people labelled (``meta["user"]``), which were picked for being
    unusual: a few hundred true positives would lift the 99th percentile to an incident's
    size."""
    return [
        gi for gi, g in enumerate(train.groups) if g.values.shape[-1] and not g.meta.get("user")
    ]


def error_scale(
    net: ContextEncoder,
    train: WindowDataset,
    batch_size: int,
    max_windows: int = 20_000,
    quantile: float = ERROR_QUANTILE,
) -> dict[str, list[float]]:
    """Per-metric forecast error at ``quantile`` over training windows, per group name.

    Series groups that share a name (NAB's files, one group each) share one scale, taken
    over the windows of all of them, not only the first one's (``_scale_groups`` says which
    groups count).
    """
    windows: dict[str, list[np.ndarray]] = {}
    for gi in _scale_groups(train):
        windows.setdefault(train.groups[gi].name, []).append(
            np.arange(train.offsets[gi], train.offsets[gi + 1])
        )
    out: dict[str, list[float]] = {}
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        for name, parts in windows.items():
            idx = np.concatenate(parts)
            if len(idx) > max_windows:
                idx = np.sort(rng.choice(idx, max_windows, replace=False))
            # A batch never mixes groups (their windows are assembled per group).
            cuts = np.searchsorted(idx, train.offsets[1:-1])
            e = np.concatenate(
                [_forecast_errors_of(net, train, part, batch_size)
                 for part in np.split(idx, cuts) if len(part)]
            )  # fmt: skip
            out[name] = np.maximum(np.quantile(e, quantile, axis=0), 1e-3).tolist()
    return out


def _forecast_errors_of(
    net: ContextEncoder, train: WindowDataset, idx: np.ndarray, batch_size: int
) -> np.ndarray:
    """Per-metric forecast errors [N, M] of the training windows ``idx``, in batches."""
    errs = []
    for i in range(0, len(idx), batch_size):
        batch = train.__getitems__(idx[i : i + batch_size].tolist())
        out = net(batch.group, batch.x, batch.time, batch.logs)
        errs.append(forecast_errors(out, batch, net.patch_steps).numpy())
    return np.concatenate(errs)


def target_error_scale(
    net: ContextEncoder,
    train: WindowDataset,
    batch_size: int,
    pooled: dict[str, list[float]],
    max_windows: int = 2000,
    quantile: float = ERROR_QUANTILE,
    min_windows: int = 50,
) -> dict[str, dict[str, list[float]]]:
    """Per-metric error scale per target, for groups whose spec holds per-target statistics
    (the scored targets are the training ones). On Nezha the top percent of calibration
    windows came from 6 of 46 pods, and a metric's training p99 error differed by up to
    3,400x between pods: one scale per metric for all pods let the noisiest pods' ordinary
    errors outrank any incident elsewhere. Floored at 1 % of the pooled scale; a target with
    fewer than ``min_windows`` training windows keeps the pooled scale."""
    out: dict[str, dict[str, list[float]]] = {}
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        for gi in _scale_groups(train):
            g, spec = train.groups[gi], train.specs[gi]
            # One target: its own scale is the pooled one (up to sampling), so keep that.
            if spec is None or not spec.target_center or g.name not in pooled or g.n_targets < 2:
                continue
            floor = np.maximum(0.01 * np.asarray(pooled[g.name]), 1e-3)
            lo = train.offsets[gi]
            targets = train.keys[gi][:, 0]
            for k in np.unique(targets):
                idx = lo + np.flatnonzero(targets == k)
                if len(idx) < min_windows:
                    continue
                if len(idx) > max_windows:
                    idx = np.sort(rng.choice(idx, max_windows, replace=False))
                e = _forecast_errors_of(net, train, idx, batch_size)
                scale = np.maximum(np.quantile(e, quantile, axis=0), floor)
                out.setdefault(g.name, {})[g.target_names[int(k)]] = scale.tolist()
    return out


class DetectorMethod:
    """Telltale as a pipeline ``Method``."""

    name = "telltale"

    def __init__(self, detector: AnomalyDetector):
        self.detector = detector

    def raw(self, group: SeriesGroup, keys: np.ndarray, spec: FeatureSpec | None) -> dict:
        return self.detector.score_group(group, keys, spec)


def _data_hash(cfg: TrainConfig, configs: list) -> str:
    h = hashlib.sha256(json.dumps([c.as_dict() for c in configs], sort_keys=True).encode())
    for lw in cfg.extra_windows:
        h.update(np.ascontiguousarray(lw.window.metrics, np.float32).tobytes())
        h.update(
            json.dumps(
                [lw.label, lw.scenario, lw.window.level, lw.window.end, lw.window.logs]
            ).encode()
        )
    return h.hexdigest()


def train(cfg: TrainConfig) -> TrainResult:
    """Train on a simulated fleet (plus user windows), validate on another fleet, calibrate
    and choose thresholds there, and write the artefact."""
    torch.set_num_threads(cfg.threads)
    mc = cfg.model
    shape = mc.shape
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    train_seed, val_seed = simdata.train_seeds(cfg.test_seed, 2)
    train_conf = simdata.fleet_config(
        train_seed, cfg.nodes, cfg.hours, 0, simdata.TRAIN_RATES, n_instances=cfg.instances
    )
    val_conf = simdata.fleet_config(val_seed, cfg.val_nodes, cfg.val_hours, 1, simdata.TRAIN_RATES)

    miner = LogMiner()
    table = TemplateTable(mc.vocab_size)
    train_data = simdata.simulate(train_conf, miner.mine, None, mc.patch_steps * mc.step_seconds)
    classes = list(simdata.CLASSES)
    extra, extra_ids = user_groups(cfg.extra_windows, shape, classes, miner)
    # Every line gets its cluster's final template (drain3 generalises as it goes).
    all_ids = [train_data.vm.logs.tmpl, train_data.host.logs.tmpl, *extra_ids]
    uniq = np.unique(np.concatenate([a.astype(np.int64) for a in all_ids]))
    pos = {int(c): table.add(miner.template(int(c))) for c in uniq}
    remap = np.vectorize(lambda c: pos[int(c)], otypes=[np.int32])
    for store in (train_data.vm.logs, train_data.host.logs):
        store.tmpl = remap(store.tmpl) if len(store.tmpl) else store.tmpl
    for g, ids in zip(extra, extra_ids, strict=True):
        k, s = g.meta.pop("log_rows")
        g.logs = LogStore.build(g.n_targets, g.n_steps, k, s, remap(ids) if len(ids) else ids)
        g.metric_names = (
            train_data.vm.metric_names if g.name == "vm" else train_data.host.metric_names
        )
    seed_templates = [t for t, _ in miner.templates_by_count()]
    seconds["simulate_and_mine_train"] = time.perf_counter() - t0
    log.info(
        "training fleet: %d log lines mined in %.0fs",
        train_data.n_lines,
        seconds["simulate_and_mine_train"],
    )

    specs = {g.name: fit_spec(g.values, g.metric_names) for g in (train_data.vm, train_data.host)}
    groups = [train_data.vm, train_data.host, *extra]
    keys = [
        windows_of(
            g,
            mc.window_steps,
            mc.patch_steps,
            mc.window_steps if not g.meta.get("user") else g.n_steps,
        )
        for g in groups
    ]
    weights = [
        np.full(len(k), cfg.user_weight if g.meta.get("user") else 1.0, np.float32)
        for g, k in zip(groups, keys, strict=True)
    ]
    train_set = WindowDataset(groups, keys, [specs[g.name] for g in groups], table, shape, weights)
    shares = {("vm", 1): 0.4, ("vm", 0): 0.3, ("host", 1): 0.15, ("host", 0): 0.15}
    probs = balanced_probs(train_set, shares)

    sizes = {n: len(s.metric_names) for n, s in specs.items()}
    # Seed before the weights are drawn: fit_network seeds only after the network exists,
    # so two runs of the same configuration started from different weights.
    L.seed_everything(mc.seed, workers=False, verbose=False)
    net = build_net(mc, sizes, len(classes), True, cfg.hours / 24)
    train_set.metric_dropout = mc.metric_dropout
    fit_info = fit_network(net, train_set, mc, probs)
    train_set.metric_dropout = 0.0  # the error scale is of the windows as they are
    seconds["fit"] = fit_info["fit_seconds"]

    t1 = time.perf_counter()
    detector = AnomalyDetector(
        net,
        specs,
        shape,
        "supervised",
        classes,
        table,
        seed_templates,
        err_scale=error_scale(net, train_set, mc.batch_size, 5000),
        topk=mc.topk,
        expected_classes=[
            c for c in classes if c in EXPECTED_CLASSES or c in expected_names(cfg.extra_windows)
        ],
    )
    val_data = simdata.simulate(
        val_conf, detector.template_indices, None, mc.patch_steps * mc.step_seconds
    )
    seconds["simulate_and_mine_val"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    method = DetectorMethod(detector)
    scored = [
        score(
            method,
            g,
            windows_of(g, mc.window_steps, mc.patch_steps, mc.window_steps),
            specs[g.name],
            mc.patch_steps,
        )
        for g in (val_data.vm, val_data.host)
    ]
    detector.calibrators, levels = calibrate_and_select(
        scored, val_data.segments, cfg.max_deceptive_fpr
    )
    detector.thresholds = Thresholds(default=max(levels.values(), default=50.0), groups=levels)
    val_metrics = evaluate(scored, val_data.segments, levels)
    true, pred = scenario_predictions(
        scored, val_data.segments, classes, list(simdata.ANOMALY_NAMES)
    )
    val_metrics["scenario_accuracy"] = (
        float(np.mean([a == b for a, b in zip(true, pred, strict=True)])) if true else None
    )
    seconds["calibrate"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    data_hash = _data_hash(cfg, [train_conf, val_conf])
    metrics = {
        "validation": val_metrics,
        "thresholds": levels,
        "seconds": seconds,
        "train_windows": len(train_set),
        "train_log_lines": int(train_data.n_lines),
        "templates": len(seed_templates),
        "losses": fit_info["losses"],
        "data_hash": data_hash,
        "train_seed": train_seed,
        "val_seed": val_seed,
    }
    detector.metrics = metrics
    detector.config = _config_dict(cfg)
    out = None
    if cfg.out_dir:
        out = detector.save(cfg.out_dir)
    data = {"train": train_data, "val": val_data, "specs": specs, "extra": extra}
    return TrainResult(out, detector, metrics, seconds, data_hash, data)


def calibrate_and_select(
    scored: list[Scored],
    segments: list,
    max_deceptive_fpr: float,
) -> tuple[dict[str, Calibrator], dict[str, float]]:
    """Per-group calibration on normal validation windows, then per-group thresholds that
    maximise validation event F1 at the deployment prior (deceptive FPR capped). Sets
    ``calibrated`` on ``scored``."""
    calibrators: dict[str, Calibrator] = {}
    levels: dict[str, float] = {}
    for s in scored:
        cal = fit_calibrator([s], normal_only=bool((s.label >= 0).any()))
        calibrators[s.group] = cal
        s.calibrated = cal.transform(s.raw)
    for s in scored:
        names = set(s.targets)
        segs = [seg for seg in segments if seg.targets & names]
        if not any(seg.kind == "anomaly" for seg in segs):
            levels[s.group] = 50.0
            continue
        prior = simdata.DEPLOYMENT_PRIOR.get(s.group)
        levels[s.group], _ = select_threshold([s], segs, max_deceptive_fpr, prior)
    return calibrators, levels


def _config_dict(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["extra_windows"] = len(cfg.extra_windows)
    return d


def week_span_days(groups: list[SeriesGroup]) -> float:
    """Days of training data that day-of-week features may learn from: the *shortest*
    group's span. A weekday pattern is only learnt from series that showed their whole week;
    with the longest span, NAB's one hourly file (21 days of probation) switched the week on
    for 34 files that each showed one or two weekdays, and the shared model then forecast
    every weekday it had not seen for a file differently (weekly-periodic errors, and false
    alarms on a constant series)."""
    spans = [(g.ts[-1] - g.ts[0]) / 86_400 for g in groups if len(g.ts)]
    return float(min(spans)) if spans else 0.0


def fit_detector(
    groups: list[SeriesGroup],
    specs: list[FeatureSpec | None],
    mc: ModelConfig,
    mode: str = "forecast",
    classes: list[str] | None = None,
    table: TemplateTable | None = None,
    seed_templates: list[str] | None = None,
    stride: int = 1,
) -> AnomalyDetector:
    """Train on any series groups (evaluation on real data): forecasting only unless
    ``mode="supervised"``, in which case the groups' labels train the anomaly head."""
    shape = mc.shape
    first = max(2 * mc.patch_steps, mc.window_steps // 2)
    keys = [windows_of(g, mc.window_steps, stride, first) for g in groups]
    data = WindowDataset(groups, keys, specs, table, shape)
    sizes = {
        g.name: len(s.metric_names) if s is not None else 0
        for g, s in zip(groups, specs, strict=True)
    }
    span = week_span_days(groups)
    L.seed_everything(mc.seed, workers=False, verbose=False)  # reproducible initial weights
    net = build_net(mc, sizes, len(classes or []), table is not None, span)
    info = fit_network(net, data, mc)
    cap = min(5000, mc.windows_per_epoch or 5000)
    scale = error_scale(net, data, mc.batch_size, cap) if net.has_metrics else {}
    per_target = target_error_scale(net, data, mc.batch_size, scale) if scale else {}
    by_name = {}
    for g, s in zip(groups, specs, strict=True):
        if s is not None:
            by_name.setdefault(g.name, s)
    det = AnomalyDetector(
        net,
        by_name,
        shape,
        mode,
        list(classes or []),
        table,
        seed_templates,
        err_scale=scale,
        topk=mc.topk,
        err_scale_targets=per_target,
    )
    det.metrics = {"fit": info, "train_windows": len(data)}
    return det


def mine_training_logs(
    texts: list[str], vocab_size: int
) -> tuple[np.ndarray, TemplateTable, list[str]]:
    """Mine a training corpus: (template index per line, table, seed templates)."""
    miner = LogMiner()
    table = TemplateTable(vocab_size)
    ids = miner.mine(texts)
    uniq, inverse = np.unique(ids, return_inverse=True)
    pos = np.array([table.add(miner.template(int(c))) for c in uniq], dtype=np.int32)
    seeds = [t for t, _ in miner.templates_by_count()]
    return (pos[inverse] if len(ids) else np.zeros(0, np.int32)), table, seeds
