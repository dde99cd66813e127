"""Windows cut from series groups, as batches for Lightning.

Batches are built whole (``__getitems__``) with vectorised numpy, never one window at a
time, and every batch holds windows of one group only (VM and node windows have different
metric sets and therefore different input layers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from models.anomaly.features import (
    FeatureSpec,
    LogBatch,
    SeriesGroup,
    log_batch,
    metric_summaries,
    time_features,
)
from models.anomaly.logmining import TemplateTable


@dataclass
class WindowShape:
    window_steps: int
    patch_steps: int
    step_seconds: int

    @property
    def n_patches(self) -> int:
        return self.window_steps // self.patch_steps


@dataclass
class Batch:
    group: str
    x: torch.Tensor | None  # [B, P, M, 5] patch summaries
    time: torch.Tensor  # [B, P, 4]
    logs: LogBatch | None
    label: torch.Tensor  # float [B]: 1 anomaly, 0 normal, -1 ignore
    scenario: torch.Tensor  # long [B], -1 unknown
    forecast_weight: torch.Tensor  # float [B]: 0 where the window must not teach "normal"
    sample_weight: torch.Tensor  # float [B]
    targets: list[str] | None = None  # one name per window, where known (per-target scales)

    @property
    def size(self) -> int:
        return self.time.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        move = {
            f: getattr(self, f).to(device)
            for f in ("time", "label", "scenario", "forecast_weight", "sample_weight")
        }
        x = None if self.x is None else self.x.to(device)
        logs = None if self.logs is None else self.logs.to(device)
        return Batch(self.group, x, logs=logs, targets=self.targets, **move)

    def forecast_target(self, patch_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and spread of the last patch per metric [B, M, 2], and where they exist."""
        last = self.x[:, -1]
        return last[..., :2], (last[..., 4:5] < 1.0).float()


def assemble(
    group: str,
    values: np.ndarray | None,
    ts_end: np.ndarray,
    log_entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    spec: FeatureSpec | None,
    table: TemplateTable | None,
    shape: WindowShape,
    label: np.ndarray | None = None,
    scenario: np.ndarray | None = None,
    forecast_weight: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    targets: list[str] | None = None,
) -> Batch:
    """The one place raw windows become model input (training, evaluation and serving).
    ``targets`` (one name per window) selects per-target statistics where the spec has them."""
    B = len(ts_end)
    x = None
    if values is not None and spec is not None and values.shape[-1]:
        x = torch.from_numpy(metric_summaries(values, spec, shape.patch_steps, targets))
    logs = None
    if log_entries is not None and table is not None:
        logs = log_batch(*log_entries, shape.patch_steps, shape.n_patches, table)
    tf = time_features(ts_end, shape.patch_steps * shape.step_seconds, shape.n_patches)

    def col(a, default, dtype):
        return torch.as_tensor(np.full(B, default) if a is None else a, dtype=dtype)

    return Batch(
        group=group,
        x=x,
        time=torch.from_numpy(tf),
        logs=logs,
        label=col(label, -1.0, torch.float32),
        scenario=col(scenario, -1, torch.long),
        forecast_weight=col(forecast_weight, 1.0, torch.float32),
        sample_weight=col(sample_weight, 1.0, torch.float32),
        targets=None if targets is None else list(targets),
    )


def window_labels(group: SeriesGroup, keys: np.ndarray, patch_steps: int) -> tuple:
    """Label of a window = its last patch: anomaly if any step is anomalous, ignored if any
    step is marked ignore (and none anomalous); scenario = the most frequent class there."""
    if group.label is None:
        return None, None
    steps = keys[:, 1:2] - patch_steps + np.arange(patch_steps)[None, :]
    lab = group.label[steps, keys[:, :1]]
    out = np.where((lab == 1).any(1), 1, np.where((lab == -1).any(1), -1, 0)).astype(np.float32)
    scen = None
    if group.scenario is not None:
        s = group.scenario[steps, keys[:, :1]].astype(np.int64)
        scen = np.array([np.bincount(r[r >= 0]).argmax() if (r >= 0).any() else -1 for r in s])
    return out, scen


class WindowDataset(torch.utils.data.Dataset):
    """(group, target, end) windows over one or more series groups."""

    def __init__(
        self,
        groups: list[SeriesGroup],
        keys: list[np.ndarray],
        specs: list[FeatureSpec | None],
        table: TemplateTable | None,
        shape: WindowShape,
        weights: list[np.ndarray] | None = None,
    ):
        self.groups, self.keys, self.specs, self.table, self.shape = (
            groups,
            keys,
            specs,
            table,
            shape,
        )
        self.weights = weights
        self.metric_dropout = 0.0  # set while fitting: see ``hide_metrics``
        self._rng = np.random.default_rng(0)
        self.offsets = np.cumsum([0] + [len(k) for k in keys])
        self.labels = [
            window_labels(g, k, shape.patch_steps) for g, k in zip(groups, keys, strict=True)
        ]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def group_of(self, idx: int) -> int:
        return int(np.searchsorted(self.offsets, idx, side="right") - 1)

    def __getitem__(self, idx: int) -> Batch:
        return self.__getitems__([idx])

    def __getitems__(self, indices: list[int]) -> Batch:
        idx = np.asarray(indices)
        gi = self.group_of(int(idx[0]))
        local = idx - self.offsets[gi]
        group, keys = self.groups[gi], self.keys[gi][local]
        W = self.shape.window_steps
        targets, ends = keys[:, 0], keys[:, 1]
        entries = None
        if group.logs is not None:
            entries = group.logs.window_entries(targets, ends, W)
        values = group.window_values(targets, ends, W) if group.values.shape[-1] else None
        if values is not None and self.metric_dropout > 0:
            hide_metrics(values, self.metric_dropout, self._rng)
        lab, scen = self.labels[gi]
        lab = None if lab is None else lab[local]
        scen = None if scen is None else scen[local]
        # The forecaster learns "normal" only from windows known to be normal.
        fw = None if lab is None else (lab == 0).astype(np.float32)
        sw = None if self.weights is None else self.weights[gi][local]
        return assemble(
            group.name,
            values,
            group.window_end_ts(ends, targets),
            entries,
            self.specs[gi],
            self.table if group.logs is not None else None,
            self.shape,
            lab,
            scen,
            fw,
            sw,
            [group.target_names[t] for t in targets],
        )


HIDDEN_SHARE = 0.4  # of the metrics of a window chosen to hide some


def hide_metrics(values: np.ndarray, share: float, rng: np.random.Generator) -> None:
    """Hide (NaN) each metric with probability ``HIDDEN_SHARE`` for the whole window, in a
    ``share`` of the windows [B, W, M], in place; a window keeps at least one metric."""
    B, _, M = values.shape
    hide = (rng.random((B, M)) < HIDDEN_SHARE) & (rng.random(B) < share)[:, None]
    everything = hide.all(axis=1)
    hide[everything, rng.integers(0, M, int(everything.sum()))] = False
    values[np.broadcast_to(hide[:, None, :], values.shape)] = np.nan


class GroupBatchSampler(Sampler[list[int]]):
    """Shuffled batches that never mix groups; optionally a fresh subsample each epoch."""

    def __init__(
        self,
        offsets: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        probs: np.ndarray | None = None,
        per_epoch: int | None = None,
    ):
        self.offsets, self.batch_size, self.shuffle = offsets, batch_size, shuffle
        self.rng = np.random.default_rng(seed)
        self.probs, self.per_epoch = probs, per_epoch

    def _indices(self) -> np.ndarray:
        n = int(self.offsets[-1])
        if self.per_epoch is not None and self.per_epoch < n:
            size = self.per_epoch
            if self.probs is not None:
                size = min(size, int(np.count_nonzero(self.probs)))
            return np.sort(self.rng.choice(n, size, replace=False, p=self.probs))
        return np.arange(n)

    def __iter__(self) -> Iterator[list[int]]:
        idx = self._indices()
        batches = []
        for gi in range(len(self.offsets) - 1):
            part = idx[(idx >= self.offsets[gi]) & (idx < self.offsets[gi + 1])]
            if self.shuffle:
                part = self.rng.permutation(part)
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        order = self.rng.permutation(len(batches)) if self.shuffle else range(len(batches))
        for b in order:
            yield batches[b].tolist()

    def __len__(self) -> int:
        n = int(self.offsets[-1])
        if self.per_epoch is not None and self.per_epoch < n:
            n = self.per_epoch
        return max(1, -(-n // self.batch_size) + len(self.offsets) - 2)


def _identity(batch: Batch) -> Batch:
    return batch


class AnomalyDataModule(L.LightningDataModule):
    """Training batches only: validation happens after fitting, on whole fleets or parts,
    through the same scoring path the evaluation uses."""

    def __init__(
        self,
        train: WindowDataset,
        batch_size: int = 256,
        per_epoch: int | None = None,
        train_probs: np.ndarray | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.train_set = train
        self.batch_size, self.per_epoch, self.train_probs, self.seed = (
            batch_size,
            per_epoch,
            train_probs,
            seed,
        )

    def train_dataloader(self) -> DataLoader:
        sampler = GroupBatchSampler(
            self.train_set.offsets,
            self.batch_size,
            True,
            self.seed,
            self.train_probs,
            self.per_epoch,
        )
        return DataLoader(self.train_set, batch_sampler=sampler, collate_fn=_identity)
