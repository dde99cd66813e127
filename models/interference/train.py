"""Train the interference model: ``train(cfg) -> TrainResult``, a plain function.

    from models.interference.train import TrainConfig, train
    result = train(TrainConfig(out_dir="var/models/interference"))   # one simulated day

Data: a simulated fleet per seed in ``cfg.seeds`` (or an exported dataset at
``cfg.dataset``), cut into windows. Workload groups (simulator archetypes, lab victim
benchmarks) decide the split: ``val_groups`` whole workloads are held out of fitting and
used for early stopping and interval calibration, so both reflect unseen workloads.

The model is an ensemble of ``cfg.members`` dual-branch nets (a deep ensemble, averaged).
Each member holds out *different* workloads for its early stopping, so the ensemble has
trained on every workload while each validation score is still on a workload its member
never saw; the interval is calibrated on all of those held-out predictions together, which
covers more workloads than one validation split could.

The artefact directory is self-contained: ``model.pt`` (weights), ``scaler.json`` (feature
normalisation), ``calibration.json`` (conformal margin and validation coverage),
``config.json`` (this config, the architecture and the feature dimensions) and
``metrics.json`` (validation figures, sizes, seconds, data hash).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch

from models.interference.calibration import apply_margin, group_margin, interval_metrics
from models.interference.components import EnsembleNet, build_ensemble
from models.interference.datamodule import InterferenceDataModule
from models.interference.encoding import FeatureScaler
from models.interference.features import Windows, windows_from_dataset
from models.interference.module import InterferenceModule, predict_array

ARTEFACT_VERSION = 1


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
    # Per-instance variation of contention sensitivity in the training fleets (see
    # data.simulator_excluding); 0 keeps every instance at its archetype's.
    sensitivity_jitter: float = 0.0
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
    patience: int = 4
    seed: int = 0
    threads: int = 2
    # Ensemble members, each validated on different held-out workloads (1 = a single net).
    members: int = 1
    # "rotate": each member holds out different workloads; "same": every member holds out
    # the first member's (members differ only in initialisation and training sample).
    member_folds: str = "rotate"
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


class _BestWeights(L.Callback):
    """Keeps the weights of the epoch with the lowest validation MAE (held-out workloads)."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.state: dict | None = None
        self.epoch = -1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val_mae_pp")
        if value is not None and float(value) < self.best:
            self.best = float(value)
            self.state = copy.deepcopy(pl_module.net.state_dict())
            self.epoch = trainer.current_epoch


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
            sensitivity_jitter=cfg.sensitivity_jitter,
        )
        names = list(VM_METRIC_NAMES)
    w = w.take(~np.isnan(w.p))
    fit, val, _ = split_by_group(w, cfg.val_groups, cfg.seed)
    return fit, val, names


def member_folds(
    groups: np.ndarray, first_val: np.ndarray, members: int, seed: int, rotate: bool = True
) -> list:
    """One validation mask per ensemble member over windows of workload ``groups``.

    Member 0 validates on ``first_val``'s workloads (the split the baselines use). Every
    further member holds out as many other workloads, taken in a shuffled turn so that the
    members together validate on as many workloads as possible; when every workload has had
    its turn, a new shuffled round begins. Each member trains on all the rest.
    """
    held0 = [int(g) for g in np.unique(first_val)]
    masks = [np.isin(groups, held0)]
    if not rotate:
        return masks * members
    rng = np.random.default_rng(seed)
    queue = [int(g) for g in rng.permutation(np.setdiff1d(np.unique(groups), held0))]
    all_groups = np.unique(groups)
    for _ in range(1, members):
        held: list[int] = []
        while len(held) < len(held0):
            if not queue:
                queue = [int(g) for g in rng.permutation(all_groups)]
            g = queue.pop(0)
            if g not in held:
                held.append(g)
        masks.append(np.isin(groups, held))
    return masks


def _sample(idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(idx) <= n:
        return idx
    return idx[np.sort(np.random.default_rng(seed).choice(len(idx), n, replace=False))]


def _fit_member(cfg: TrainConfig, net: torch.nn.Module, enc_fit, enc_val, seed: int) -> dict:
    """Train one net in place; keeps the weights of its best validation epoch."""
    L.seed_everything(seed, verbose=False)
    module = InterferenceModule(
        net,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_fraction=cfg.warmup_fraction,
        quantiles=cfg.quantiles,
    )
    best = _BestWeights()
    callbacks: list[L.Callback] = [best]
    if cfg.patience > 0:
        callbacks.append(
            L.pytorch.callbacks.EarlyStopping("val_mae_pp", patience=cfg.patience, mode="min")
        )
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        fast_dev_run=cfg.fast_dev_run,
        callbacks=callbacks,
    )
    trainer.fit(module, InterferenceDataModule(enc_fit, enc_val, cfg.batch_size, seed))
    if best.state is not None:
        net.load_state_dict(best.state)
    return {"best_epoch": best.epoch, "epochs_run": trainer.current_epoch}


def train(cfg: TrainConfig, data: tuple[Windows, Windows, list[str]] | None = None) -> TrainResult:
    """Fit every member, each selecting its best epoch on its own held-out workloads;
    calibrate the interval on those held-out predictions; write the artefact.

    ``data`` = (fit, val, metric names) skips data construction (the evaluation passes the
    windows of each partition); ``val``'s workloads are the first member's validation set.
    """
    began = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, verbose=False)
    fit, val, names = data if data is not None else training_windows(cfg)
    if not len(fit) or not len(val):
        raise ValueError(f"not enough windows to train: {len(fit)} to fit, {len(val)} to validate")
    pool = Windows.concat([fit, val])
    if cfg.member_folds not in ("rotate", "same"):
        raise ValueError(f"member_folds must be 'rotate' or 'same', got {cfg.member_folds!r}")
    folds = member_folds(
        pool.group, val.group, max(cfg.members, 1), cfg.seed, cfg.member_folds == "rotate"
    )
    # Normalisation is unsupervised, so it uses every training workload.
    scaler = FeatureScaler.fit(
        pool.take(_sample(np.arange(len(pool)), cfg.max_train_windows, cfg.seed)), names
    )
    encoded = scaler.encode(pool)
    arch = {
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers,
        "dim_ff": cfg.dim_ff,
        "dropout": cfg.dropout,
        "hidden": cfg.hidden,
    }
    net = build_ensemble(scaler.dims, len(folds), **arch)
    nets = list(net.members) if isinstance(net, EnsembleNet) else [net]
    held_out: list[tuple[np.ndarray, np.ndarray]] = []  # (indices into pool, raw predictions)
    member_metrics = []
    n_fit = 0
    for k, (member, is_val) in enumerate(zip(nets, folds, strict=True)):
        # Member 0 draws exactly what a single model would (the baselines' sample).
        fit_idx = _sample(np.flatnonzero(~is_val), cfg.max_train_windows, cfg.seed + 1000 * k)
        val_idx = _sample(np.flatnonzero(is_val), cfg.max_val_windows, cfg.seed + 1000 * k + 1)
        n_fit = max(n_fit, len(fit_idx))
        enc_val = encoded.take(val_idx)
        info = _fit_member(cfg, member, encoded.take(fit_idx), enc_val, cfg.seed + k)
        raw_k = predict_array(member, enc_val)
        held_out.append((val_idx, raw_k))
        member_metrics.append(
            {
                **info,
                "val_groups": sorted(int(g) for g in np.unique(pool.group[val_idx])),
                "val_mae_pp": float(100 * np.abs(raw_k[:, 0] - pool.p[val_idx]).mean()),
                "n_train": len(fit_idx),
                "n_val": len(val_idx),
            }
        )
    # Each held-out window is predicted by the member that never trained on its workload:
    # the error a new workload will see. The interval is calibrated on exactly those.
    idx = np.concatenate([i for i, _ in held_out])
    raw = np.concatenate([r for _, r in held_out])
    y, groups = pool.p[idx], pool.group[idx]
    margin = group_margin(raw, y, groups, cfg.coverage)
    calibrated = apply_margin(raw, margin)
    calibration = {
        "method": "split-conformal quantile regression on held-out workloads "
        "(each predicted by the member that did not train on it), largest per-workload margin",
        "coverage_target": cfg.coverage,
        "margin": margin,
        "validation_raw": interval_metrics(raw, y),
        "validation": interval_metrics(calibrated, y),
        "n": len(y),
        "workloads": len(np.unique(groups)),
    }
    digest = data_hash(fit, val)
    seconds = time.perf_counter() - began
    metrics = {
        "val_mae_pp": float(100 * np.abs(raw[:, 0] - y).mean()),
        "val_mse_pp2": float(1e4 * ((raw[:, 0] - y) ** 2).mean()),
        **{f"val_{k}": v for k, v in interval_metrics(calibrated, y).items()},
        "best_epoch": member_metrics[0]["best_epoch"],
        "epochs_run": member_metrics[0]["epochs_run"],
        "members": len(nets),
        "member_metrics": member_metrics,
        "n_train": n_fit,
        "n_val": len(y),
        "val_groups": sorted(int(g) for g in np.unique(groups)),
        "train_seconds": round(seconds, 1),
        "threads": cfg.threads,
        "data_hash": digest,
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "model.pt")
    _write(out / "scaler.json", scaler.to_dict())
    _write(out / "calibration.json", calibration)
    config = {
        "version": ARTEFACT_VERSION,
        "train": asdict(cfg),
        "architecture": arch,
        "members": len(nets),
        "dims": scaler.dims,
        "metric_names": names,
        "window_steps": cfg.window_steps,
        "data_hash": digest,
    }
    _write(out / "config.json", config)
    _write(out / "metrics.json", metrics)
    return TrainResult(out, metrics, seconds, n_fit, len(y), digest)


def _write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
