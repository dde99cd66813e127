"""Train the interference model: ``train(cfg) -> TrainResult``, a plain function.

    from models.interference.train import TrainConfig, train
    result = train(TrainConfig(out_dir="var/models/interference"))   # one simulated day

Data: a simulated fleet per seed in ``cfg.seeds`` (or an exported dataset at
``cfg.dataset``), cut into windows. Workload groups (simulator archetypes, lab victim
benchmarks) decide the split: ``val_groups`` whole workloads are held out of fitting and
used for early stopping and interval calibration, so both reflect unseen workloads.

The model is an ensemble (``TrainConfig.members``): the dual-branch transformer and an LSTM
over the same per-step features, each fitted on its own and kept at its best epoch; the
prediction and its raw interval are their mean, and the conformal margin is calibrated on
that mean.

The artefact directory is self-contained: ``model.pt`` (the transformer's weights),
``lstm.pt`` (the LSTM's, when it is a member), ``scaler.json`` (feature normalisation),
``calibration.json`` (conformal margin and validation coverage), ``config.json`` (this
config, the architecture, the members and the feature dimensions) and ``metrics.json``
(validation figures per member and of the ensemble, sizes, seconds, data hash).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch

from models.interference.calibration import (
    CALIBRATION_FILE,
    apply_margin,
    group_margin,
    interval_metrics,
    serve_lone,
)
from models.interference.components import build_member
from models.interference.encoding import FeatureScaler
from models.interference.features import Windows, windows_from_dataset, without_neighbours
from models.interference.module import ensemble_mean, fit_best_epoch, predict_array
from models.progress import EpochLog

ARTEFACT_VERSION = 2  # 2: an ensemble of members (1: the transformer alone)
# The prediction is the mean of its members' (P, low, high), each trained on its own and
# kept at its best epoch on the held-out workloads (docs/interference.md, "Ensemble").
MEMBERS = ("transformer", "lstm")
MEMBER_FILES = {"transformer": "model.pt", "lstm": "lstm.pt"}
log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    out_dir: str = "var/models/interference"
    # Data: an exported dataset (simulator or lab) or simulated fleets, one per seed.
    dataset: str | None = None
    seeds: tuple[int, ...] = (101,)
    n_nodes: int = 50
    n_instances: int = 400
    hours: float = 24.0
    exclude_archetypes: tuple[str, ...] = ()  # absent from the training fleets altogether
    val_groups: int = 2  # whole workloads held out for early stopping and calibration
    window_steps: int = 20
    stride_steps: int = 60
    max_train_windows: int = 20_000
    max_val_windows: int = 3_000
    # Architecture
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    dim_ff: int = 64
    dropout: float = 0.1
    hidden: int = 128
    # Optimisation
    epochs: int = 12
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    quantiles: tuple[float, float] = (0.05, 0.95)
    coverage: float = 0.9
    # Each validation workload is calibrated at this level, so that workloads never seen
    # cover about ``coverage``: two validation workloads at 0.9 left unseen ones at 0.76-0.93
    # on the development seeds, at 0.99 at 0.92-0.98 (docs/interference.md, "Intervals").
    workload_coverage: float = 0.99
    patience: int = 4
    # The ensemble: the dual-branch transformer, and optionally an LSTM over the same steps.
    members: tuple[str, ...] = MEMBERS
    lstm_hidden: int = 64
    lstm_epochs: int = 10
    # A member whose validation MAE is over this multiple of the transformer's is left out
    # (a member that failed to train, e.g. the LSTM on a few dozen lab windows, would only
    # add its error to the mean).
    member_tolerance: float = 2.0
    # Simulated moves of validation-workload instances that calibrate how much wider a
    # what-if answer's interval is than an in-place one (0: as in place).
    what_if_moves: int = 400
    seed: int = 0
    threads: int = 2
    fast_dev_run: bool = False
    extra: dict = field(default_factory=dict)  # free-form notes stored with the artefact


@dataclass
class TrainResult:
    out_dir: Path
    metrics: dict
    seconds: float
    n_train: int
    n_val: int
    data_hash: str
    val: Windows | None = None  # the held-out windows, so another version can be scored on them
    metric_names: list[str] = field(default_factory=list)  # the windows' columns


def parse_members(members: str | Sequence[str]) -> tuple[str, ...]:
    """Ensemble members from a comma-separated list or a sequence: the transformer first,
    then any of the other ``MEMBERS``, each once (ValueError otherwise)."""
    names = members.split(",") if isinstance(members, str) else list(members)
    names = [n.strip() for n in names if n.strip()]
    if not names or names[0] != "transformer" or set(names) - set(MEMBERS):
        raise ValueError(f"members must start with transformer and name only {MEMBERS}: {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"members must be named once each: {names}")
    return tuple(names)


def kept_members(val_mae: dict[str, float], tolerance: float) -> list[str]:
    """The transformer (the model itself), and each other member whose validation MAE is
    within ``tolerance`` times the transformer's."""
    anchor = val_mae["transformer"]
    return [n for n, mae in val_mae.items() if n == "transformer" or mae <= tolerance * anchor]


def split_by_group(w: Windows, n_val_groups: int, seed: int) -> tuple[Windows, Windows, list[int]]:
    """Hold out ``n_val_groups`` whole workload groups for validation."""
    groups = np.unique(w.group)
    if len(groups) <= n_val_groups:
        raise ValueError(
            f"need more than {n_val_groups} workload groups to hold some out, got {len(groups)}"
        )
    val = np.random.default_rng(seed).choice(groups, n_val_groups, replace=False)
    is_val = np.isin(w.group, val)
    return w.take(~is_val), w.take(is_val), sorted(int(g) for g in val)


def data_hash(*parts: Windows) -> str:
    h = hashlib.sha256()
    for w in parts:
        for arr in (w.victim, w.nbr_sum, w.capacity, w.p, w.group):
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def training_windows(cfg: TrainConfig) -> tuple[Windows, Windows, list[str]]:
    """(fit, val, metric names) from ``cfg``'s dataset or simulated fleets."""
    if cfg.dataset:
        from models.interference.features import dataset_arrays

        w, _ = windows_from_dataset(cfg.dataset, window=cfg.window_steps, stride=cfg.stride_steps)
        names = dataset_arrays(cfg.dataset)["metric_names"]
    else:
        from ingest.simulator import VM_METRIC_NAMES
        from models.interference.data import archetype_ids, simulated_windows

        w = simulated_windows(
            cfg.seeds,
            n_nodes=cfg.n_nodes,
            n_instances=cfg.n_instances,
            hours=cfg.hours,
            window=cfg.window_steps,
            stride=cfg.stride_steps,
            exclude=archetype_ids(cfg.exclude_archetypes),
        )
        names = list(VM_METRIC_NAMES)
    w = w.take(~np.isnan(w.p))
    fit, val, _ = split_by_group(w, cfg.val_groups, cfg.seed)
    return fit, val, names


def train(cfg: TrainConfig, data: tuple[Windows, Windows, list[str]] | None = None) -> TrainResult:
    """Fit, select the best epoch on validation workloads, calibrate, write the artefact.

    ``data`` = (fit, val, metric names) skips data construction (the evaluation passes the
    windows of each partition).
    """
    from models.interference.data import subsample

    began = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, verbose=False)
    fit, val, names = data if data is not None else training_windows(cfg)
    fit = subsample(fit, cfg.max_train_windows, cfg.seed)
    val = subsample(val, cfg.max_val_windows, cfg.seed + 1)
    if not len(fit) or not len(val):
        raise ValueError(f"not enough windows to train: {len(fit)} to fit, {len(val)} to validate")
    members = parse_members(cfg.members)
    scaler = FeatureScaler.fit(fit, names)
    enc_fit, enc_val = scaler.encode(fit), scaler.encode(val)
    arch = {
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers,
        "dim_ff": cfg.dim_ff,
        "dropout": cfg.dropout,
        "hidden": cfg.hidden,
    }
    common = {
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "fast_dev_run": cfg.fast_dev_run,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "warmup_fraction": cfg.warmup_fraction,
        "quantiles": cfg.quantiles,
    }
    log.info(
        "fitting on %d windows, validating on %d of %d held-out workloads",
        len(fit),
        len(val),
        len(np.unique(val.group)),
    )
    nets: dict[str, torch.nn.Module] = {}
    fitted: dict[str, dict] = {}
    for name in members:
        # Each member starts from the same seed, so adding one never changes another.
        if name != "transformer":
            L.seed_everything(cfg.seed, verbose=False)
        nets[name] = build_member(name, scaler.dims, arch, cfg.lstm_hidden)
        is_transformer = name == "transformer"
        fitted[name] = fit_best_epoch(
            nets[name],
            enc_fit,
            enc_val,
            epochs=cfg.epochs if is_transformer else cfg.lstm_epochs,
            patience=cfg.patience if is_transformer else 0,
            callbacks=(EpochLog(log, name),),
            **common,
        )
    member_raw = {name: predict_array(net, enc_val) for name, net in nets.items()}
    member_mae = {n: float(100 * np.abs(r[:, 0] - val.p).mean()) for n, r in member_raw.items()}
    kept = kept_members(member_mae, cfg.member_tolerance)
    dropped = sorted(set(nets) - set(kept))
    if dropped:
        log.info("left out of the ensemble (validation MAE %s pp): %s", member_mae, dropped)
    raw = ensemble_mean([member_raw[name] for name in kept])
    # Lone victims are served P = 1 by rule (predictor.served), not by the nets: their
    # errors say nothing about the nets' interval and would only widen it for everyone.
    lone = without_neighbours(val)
    fit_on = ~lone if not lone.all() else lone  # all lone: a tiny lab run's alone runs
    level = max(cfg.coverage, cfg.workload_coverage)  # never below the stated target
    margin = group_margin(raw[fit_on], val.p[fit_on], val.group[fit_on], level)
    calibrated = serve_lone(apply_margin(raw, margin), lone, margin)
    raw = serve_lone(raw, lone, 0.0)
    calibration = {
        "method": "split-conformal quantile regression, largest per-workload margin over "
        "held-out workloads, each at workload_coverage",
        "coverage_target": cfg.coverage,
        "workload_coverage": level,
        "margin": margin,
        "validation_raw": interval_metrics(raw, val.p),
        "validation": interval_metrics(calibrated, val.p),
        "n": len(val),
    }
    log.info(
        "calibrated: margin %.4f, validation coverage %.3f",
        margin,
        calibration["validation"]["coverage"],
    )
    if data is None and not cfg.dataset and cfg.what_if_moves and not cfg.fast_dev_run:
        calibration.update(
            _what_if_calibration(cfg, {n: nets[n] for n in kept}, scaler, margin, val.group)
        )
    digest = data_hash(fit, val)
    seconds = time.perf_counter() - began
    metrics = {
        "val_mae_pp": float(100 * np.abs(raw[:, 0] - val.p).mean()),
        "val_mse_pp2": float(1e4 * ((raw[:, 0] - val.p) ** 2).mean()),
        **{f"val_{k}": v for k, v in interval_metrics(calibrated, val.p).items()},
        "best_epoch": fitted["transformer"]["best_epoch"],
        "epochs_run": fitted["transformer"]["epochs_run"],
        "members": {
            name: {**fitted[name], "val_mae_pp": member_mae[name], "kept": name in kept}
            for name in nets
        },
        "n_train": len(fit),
        "n_val": len(val),
        "val_groups": sorted(int(g) for g in np.unique(val.group)),
        "train_seconds": round(seconds, 1),
        "threads": cfg.threads,
        "data_hash": digest,
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in kept:
        torch.save(nets[name].state_dict(), out / MEMBER_FILES[name])
    _write(out / "scaler.json", scaler.to_dict())
    _write(out / CALIBRATION_FILE, calibration)
    config = {
        "version": ARTEFACT_VERSION,
        "train": asdict(cfg),
        "architecture": arch,
        "members": kept,
        "lstm": {"hidden": cfg.lstm_hidden},
        "dims": scaler.dims,
        "metric_names": names,
        "window_steps": cfg.window_steps,
        "data_hash": digest,
    }
    _write(out / "config.json", config)
    _write(out / "metrics.json", metrics)
    return TrainResult(out, metrics, seconds, len(fit), len(val), digest, val, list(names))


def _what_if_calibration(
    cfg: TrainConfig,
    nets: dict[str, torch.nn.Module],
    scaler: FeatureScaler,
    margin: float,
    val_groups: np.ndarray,
) -> dict:
    """The moved instance's extra margin, from moves of the validation workloads' instances
    on the first training fleet (simulated training only: the counterfactuals come from the
    simulator)."""
    from ingest.simulator import SimConfig
    from models.interference.counterfactual import what_if_extra_margin
    from models.interference.data import SIM_START, archetype_ids, simulator_excluding
    from models.interference.predictor import InterferencePredictor

    config = SimConfig(
        seed=int(cfg.seeds[0]),
        n_nodes=cfg.n_nodes,
        n_instances=cfg.n_instances,
        hours=cfg.hours,
        start=SIM_START,
    )
    sim = simulator_excluding(config, archetype_ids(cfg.exclude_archetypes))
    model = InterferencePredictor(nets, scaler, margin, {"coverage_target": cfg.coverage})
    workloads = sorted(int(g) for g in np.unique(val_groups))
    out = what_if_extra_margin(model, sim, workloads, cfg.coverage, cfg.what_if_moves, cfg.seed)
    log.info(
        "what-if: extra margin %.4f from %d moves of workloads %s",
        out["what_if_extra_margin"],
        out["what_if_n"],
        workloads,
    )
    return out


def _write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
