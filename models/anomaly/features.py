"""Window features: robust metric normalisation, log template counts, time of day/week.

A window is ``window_steps`` samples of one target (an instance, a node, a machine) cut into
``n_patches`` patches of ``patch_steps``. Each metric of each patch is summarised by five
numbers from two normalisations:

- *global*: the metric after its transform (difference for counters, signed log for
  heavy-tailed rates), centred and scaled by the median and IQR fitted on training data —
  per target where the scored targets are the training ones, pooled otherwise — the
  patch's mean and spread;
- *local*: the same value relative to this window's own history (the patches before the
  last one), median and IQR again, so a target's usual level is its own, whatever its size —
  the patch's mean and peak;
- the share of the patch's samples that are missing (NaN).

Logs become one bag of (template, log1p count) per patch; ``LogStore`` keeps training logs
as a CSR matrix over (target, step) so batches are cut with a few vectorised numpy calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from models.anomaly.logmining import TemplateTable

CLIP_GLOBAL = 20.0
CLIP_LOCAL = 10.0
# The clip is for anomalies: a scale is widened until the training series' own 1st-99th
# percentile lies within half the clip. Spiky or two-level series (Nezha pods whose client
# latency sits at 5 ms and jumps to 20 s in 5-10 % of fault-free minutes; ASD's near-
# constant metrics) have an IQR so small that their ordinary spikes sat at the clip, where
# an incident's value cannot be told from them (1.1 % of Nezha's calibration samples; 0.01 %
# with the floor). Well-behaved series are unaffected: a normal's p99 is 1.7 IQR from its
# median, far below the floor's 10 IQR.
RANGE_FLOOR = 0.5 * CLIP_GLOBAL
N_TIME = 4  # sin/cos hour of day, sin/cos day of week
N_SUMMARY = 5  # per metric and patch: mean, spread, local mean, local peak, missing share


@dataclass
class FeatureSpec:
    """Per-group metric transforms and robust statistics (stored in the artefact).

    ``center``/``scale`` are pooled over the group's targets. ``target_center``/
    ``target_scale`` (target name -> one value per metric) are the same statistics per
    series, fitted when the targets that will be scored are the ones in the training data
    (the spec asks for normalisation "per series"): one pooled scale for targets of very
    different size saturates the small ones' deviations and clips the large ones'. A target
    without its own statistics (a fleet never seen in training) uses the pooled ones."""

    metric_names: list[str]
    kinds: list[str]  # "diff" | "log" | "none"
    center: list[float]
    scale: list[float]
    target_center: dict[str, list[float]] = field(default_factory=dict)
    target_scale: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        return cls(**data)

    def stats(self, targets: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Centre and scale as float32 [M], or [B, M] per window when ``targets`` (one
        name per window) is given and the spec holds per-target statistics."""
        center = np.asarray(self.center, dtype=np.float32)
        scale = np.asarray(self.scale, dtype=np.float32)
        if targets is None or not self.target_center:
            return center, scale
        c = np.array([self.target_center.get(t, self.center) for t in targets], np.float32)
        s = np.array([self.target_scale.get(t, self.scale) for t in targets], np.float32)
        return c.reshape(len(targets), -1), s.reshape(len(targets), -1)


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def transform(values: np.ndarray, kinds: list[str]) -> np.ndarray:
    """[..., T, M] raw → transformed; counters become per-step increases (resets → 0)."""
    out = np.array(values, dtype=np.float32, copy=True)
    for m, kind in enumerate(kinds):
        col = out[..., m]
        if kind == "diff":
            d = np.diff(col, axis=-1, prepend=np.nan)
            d[np.isfinite(d) & (d < 0)] = 0.0
            first = np.isnan(d[..., :1]) & np.isfinite(col[..., :1])
            d[..., :1] = np.where(first, 0.0, d[..., :1])
            out[..., m] = _signed_log(d)
        elif kind == "log":
            out[..., m] = _signed_log(col)
    return out


def _kinds(values: np.ndarray, metric_names: list[str]) -> list[str]:
    kinds = []
    for m, name in enumerate(metric_names):
        col = values[..., m]
        fin = col[np.isfinite(col)]
        if name.endswith("_total"):
            kinds.append("diff")
        elif (
            len(fin)
            and fin.min() >= 0
            and np.percentile(fin, 99) > 10 * (np.percentile(fin, 50) + 1e-3)
        ):
            kinds.append("log")
        else:
            kinds.append("none")
    return kinds


def _robust(col: np.ndarray) -> tuple[float, float] | None:
    """Median and IQR of the finite values (then a 5-95 % spread, then the std, when the
    IQR is zero), the scale widened so the 1st-99th percentile stays within ``RANGE_FLOOR``
    scales of the median; None when nothing is finite, scale 0.0 when all spreads are 0."""
    col = col[np.isfinite(col)]
    if not len(col):
        return None
    q01, q05, q25, q50, q75, q95, q99 = np.percentile(col, [1, 5, 25, 50, 75, 95, 99])
    s = q75 - q25
    if s <= 1e-9:
        s = (q95 - q05) / 3.3
    if s <= 1e-9:
        s = float(col.std())
    s = max(s, max(q99 - q50, q50 - q01) / RANGE_FLOOR)
    return float(q50), float(s) if s > 1e-9 else 0.0


def fit_spec(
    values: np.ndarray,
    metric_names: list[str],
    max_rows: int = 200_000,
    target_names: list[str] | None = None,
) -> FeatureSpec:
    """Fit transforms and robust centre/scale on training values [T, K, M] (time first).

    With ``target_names`` (one per K, given when the same targets will be scored) each
    target also gets its own centre and scale per metric. A target's scale is floored at a
    hundredth of the pooled one, and a target whose metric never varies in training takes
    the pooled scale: its first deviation must not become an infinite z-score."""
    M = values.shape[-1]
    kinds = _kinds(values, metric_names)
    per_target = transform(np.moveaxis(values, 0, 1), kinds)  # [K, T, M]
    tr = per_target.reshape(-1, M)  # [K*T, M]
    if len(tr) > max_rows:
        tr = tr[np.random.default_rng(0).choice(len(tr), max_rows, replace=False)]
    center, scale = [], []
    for m in range(M):
        st = _robust(tr[:, m])
        center.append(0.0 if st is None else st[0])
        scale.append(1.0 if st is None or st[1] <= 0 else st[1])
    spec = FeatureSpec(list(metric_names), kinds, center, scale)
    if target_names is None:
        return spec
    if len(target_names) != values.shape[1]:
        raise ValueError("fit_spec: one target name per target column")
    for k, name in enumerate(target_names):
        c, s = [], []
        for m in range(M):
            st = _robust(per_target[k, :, m])
            if st is None:  # no sample of this metric for this target: pooled
                c.append(center[m])
                s.append(scale[m])
                continue
            c.append(st[0])
            s.append(scale[m] if st[1] <= 0 else max(st[1], 0.01 * scale[m]))
        spec.target_center[name] = c
        spec.target_scale[name] = s
    return spec


def metric_summaries(
    values: np.ndarray,
    spec: FeatureSpec,
    patch_steps: int,
    targets: Sequence[str] | None = None,
) -> np.ndarray:
    """Raw windows [B, W, M] -> per-patch summaries [B, P, M, 5], float32: mean and spread
    of the global channel, mean and peak |value| of the local channel, share missing.
    ``targets`` (one name per window) selects per-target statistics where the spec has them.

    The local centre and spread are the median and IQR of the history's patch means (not of
    every sample): robust, and a tenth of the cost of quantiles over all samples. Summaries
    are computed here, outside autograd, because they are most of a training step's work."""
    x = transform(values, spec.kinds)
    B, W, M = x.shape
    P = W // patch_steps
    center, scale_m = spec.stats(targets)  # [M] pooled, or [B, M] per target
    scale = scale_m
    if center.ndim == 2:  # per window: broadcast over the patch axis
        center, scale = center[:, None], scale_m[:, None]
    present = ~np.isnan(x)
    x0 = np.where(present, x, 0.0).astype(np.float32).reshape(B, P, patch_steps, M)
    pres = present.reshape(B, P, patch_steps, M)
    n = pres.sum(axis=2)
    inv = 1.0 / np.maximum(n, 1)
    raw_mean = x0.sum(axis=2) * inv  # [B, P, M]
    means = np.where(n > 0, raw_mean, np.nan)
    q25, med, q75 = nan_quantiles(means[:, :-1], (0.25, 0.5, 0.75))
    med = np.nan_to_num(med, nan=0.0)
    iqr = np.maximum(np.nan_to_num(q75 - q25, nan=0.0), 0.1 * scale_m)  # [B, M]
    g_mean = np.clip((raw_mean - center) / scale, -CLIP_GLOBAL, CLIP_GLOBAL)
    dev = (x0 - raw_mean[:, :, None]) * pres
    g_std = np.sqrt((dev**2).sum(axis=2) * inv) / scale
    l_mean = np.clip((raw_mean - med[:, None]) / iqr[:, None], -CLIP_LOCAL, CLIP_LOCAL)
    l_peak = np.abs(np.where(pres, x0 - med[:, None, None], 0.0)).max(axis=2) / iqr[:, None]
    missing = 1.0 - n / patch_steps
    out = np.stack(
        [
            np.where(n > 0, g_mean, 0.0),
            np.minimum(g_std, CLIP_GLOBAL),
            np.where(n > 0, l_mean, 0.0),
            np.minimum(l_peak, CLIP_LOCAL),
            missing,
        ],
        axis=-1,
    )
    return np.nan_to_num(out, nan=0.0).astype(np.float32, copy=False)


def nan_quantiles(a: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Quantiles over axis 1 ignoring NaN (linear interpolation; NaN where all are NaN).
    np.nanpercentile loops in Python per column; sorting once is far cheaper."""
    s = np.sort(a, axis=1)  # NaN sort last
    n = np.isfinite(a).sum(axis=1)  # [B, M]
    out = []
    for q in qs:
        pos = np.maximum(n - 1, 0) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        frac = (pos - lo).astype(a.dtype)
        v_lo = np.take_along_axis(s, lo[:, None, :], axis=1)[:, 0]
        v_hi = np.take_along_axis(s, hi[:, None, :], axis=1)[:, 0]
        out.append(np.where(n > 0, v_lo + (v_hi - v_lo) * frac, np.nan))
    return out


def time_features(ts_end: np.ndarray, patch_seconds: int, n_patches: int) -> np.ndarray:
    """[B] window end (epoch s, UTC) → [B, P, 4] at each patch's end."""
    ends = ts_end[:, None] - patch_seconds * np.arange(n_patches - 1, -1, -1)[None, :]
    day = (ends % 86_400) / 86_400 * 2 * math.pi
    # 1970-01-01 was a Thursday; +3 days puts Monday at phase 0.
    week = ((ends // 86_400 + 3) % 7) / 7 * 2 * math.pi
    return np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], -1).astype(np.float32)


@dataclass
class LogStore:
    """Template counts per (target, step) as CSR over rows ``k * n_steps + t``."""

    n_targets: int
    n_steps: int
    row_ptr: np.ndarray  # int64 [K*T + 1]
    step: np.ndarray  # int32 [E]
    tmpl: np.ndarray  # int32 [E] index into a TemplateTable
    count: np.ndarray  # float32 [E]

    @classmethod
    def build(
        cls, n_targets: int, n_steps: int, target: np.ndarray, step: np.ndarray, tmpl: np.ndarray
    ) -> LogStore:
        keep = (target >= 0) & (target < n_targets) & (step >= 0) & (step < n_steps)
        target, step, tmpl = target[keep], step[keep], tmpl[keep]
        n_tmpl = int(tmpl.max()) + 1 if len(tmpl) else 1
        key = (target.astype(np.int64) * n_steps + step) * n_tmpl + tmpl
        uniq, counts = np.unique(key, return_counts=True)
        rows = uniq // n_tmpl
        row_ptr = np.zeros(n_targets * n_steps + 1, dtype=np.int64)
        np.add.at(row_ptr, rows + 1, 1)
        np.cumsum(row_ptr, out=row_ptr)
        return cls(
            n_targets,
            n_steps,
            row_ptr,
            (rows % n_steps).astype(np.int32),
            (uniq % n_tmpl).astype(np.int32),
            counts.astype(np.float32),
        )

    def window_entries(
        self, targets: np.ndarray, ends: np.ndarray, window_steps: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(window, step within window, template, count) of every entry in the windows."""
        starts = np.maximum(ends - window_steps, 0)
        lo = self.row_ptr[targets.astype(np.int64) * self.n_steps + starts]
        hi = self.row_ptr[targets.astype(np.int64) * self.n_steps + ends]
        lengths = hi - lo
        win = np.repeat(np.arange(len(targets)), lengths)
        idx = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        idx = idx + np.repeat(lo, lengths)
        in_window = self.step[idx] - (ends[win] - window_steps)
        return win, in_window, self.tmpl[idx], self.count[idx]


@dataclass
class LogBatch:
    """One bag per (window, patch): entries point to the batch's unique templates."""

    bag: torch.Tensor  # int64 [E] = window * n_patches + patch
    template: torch.Tensor  # int64 [E] index into the unique templates of the batch
    weight: torch.Tensor  # float32 [E] log1p(count)
    rows: torch.Tensor  # int64 embedding rows of the unique templates (EmbeddingBag input)
    offsets: torch.Tensor  # int64 [U]
    row_weights: torch.Tensor  # float32
    templates: np.ndarray  # int [U] indices into the TemplateTable

    def to(self, device: torch.device | str) -> LogBatch:
        t = (self.bag, self.template, self.weight, self.rows, self.offsets, self.row_weights)
        return LogBatch(*(v.to(device) for v in t), templates=self.templates)


def log_batch(
    win: np.ndarray,
    in_window: np.ndarray,
    tmpl: np.ndarray,
    count: np.ndarray,
    patch_steps: int,
    n_patches: int,
    table: TemplateTable,
) -> LogBatch:
    bag = win.astype(np.int64) * n_patches + np.clip(in_window // patch_steps, 0, n_patches - 1)
    uniq_t, t_local = np.unique(tmpl, return_inverse=True)
    key = bag * max(len(uniq_t), 1) + t_local
    ukey, inv = np.unique(key, return_inverse=True)
    summed = np.bincount(inv, weights=count, minlength=len(ukey)).astype(np.float32)
    rows, offsets, row_weights = table.gather(uniq_t)
    return LogBatch(
        bag=torch.from_numpy(ukey // max(len(uniq_t), 1)),
        template=torch.from_numpy((ukey % max(len(uniq_t), 1)).astype(np.int64)),
        weight=torch.from_numpy(np.log1p(summed)),
        rows=torch.from_numpy(rows),
        offsets=torch.from_numpy(offsets),
        row_weights=torch.from_numpy(row_weights),
        templates=uniq_t,
    )


@dataclass
class SeriesGroup:
    """Aligned series of one target group (all VMs, all nodes, one machine); windows are
    cut from it. ``label``/``scenario`` are ground truth for training and scoring only."""

    name: str
    metric_names: list[str]
    ts: np.ndarray  # int64 [T] epoch seconds of each step
    step_seconds: int
    values: np.ndarray  # float32 [T, K, M], NaN = missing
    target_names: list[str]
    logs: LogStore | None = None
    label: np.ndarray | None = None  # int8 [T, K]: 1 anomaly, 0 normal, -1 ignore
    scenario: np.ndarray | None = None  # int16 [T, K]: class index, -1 unknown
    meta: dict = field(default_factory=dict)
    # Seconds added to the time axis per target: lets unrelated windows (user-labelled
    # examples from different days) share one group.
    target_offset: np.ndarray | None = None

    @property
    def n_steps(self) -> int:
        return len(self.ts)

    @property
    def n_targets(self) -> int:
        return self.values.shape[1]

    def window_values(self, targets: np.ndarray, ends: np.ndarray, window_steps: int) -> np.ndarray:
        """[B, W, M] with NaN before the first step."""
        steps = ends[:, None] - window_steps + np.arange(window_steps)[None, :]
        out = self.values[np.clip(steps, 0, None), targets[:, None]]
        out[steps < 0] = np.nan
        return out

    def window_end_ts(self, ends: np.ndarray, targets: np.ndarray | None = None) -> np.ndarray:
        # The last step's own timestamp (NAB files are not perfectly regular) plus one step.
        out = self.ts[np.clip(ends - 1, 0, len(self.ts) - 1)] + self.step_seconds
        if self.target_offset is not None and targets is not None:
            out = out + self.target_offset[targets]
        return out

    def slice_steps(self, lo: int, hi: int) -> SeriesGroup:
        """Steps [lo, hi) as a new group (logs re-cut)."""
        logs = None
        if self.logs is not None:
            entries = self.logs.window_entries(
                np.arange(self.n_targets), np.full(self.n_targets, hi), hi - lo
            )
            win, in_w, tmpl, count = entries
            reps = count.astype(np.int64)
            logs = LogStore.build(
                self.n_targets,
                hi - lo,
                np.repeat(win, reps),
                np.repeat(in_w, reps),
                np.repeat(tmpl, reps),
            )
        cut = slice(lo, hi)
        return SeriesGroup(
            self.name,
            self.metric_names,
            self.ts[cut],
            self.step_seconds,
            self.values[cut],
            self.target_names,
            logs,
            None if self.label is None else self.label[cut],
            None if self.scenario is None else self.scenario[cut],
            dict(self.meta),
        )


def windows_of(group: SeriesGroup, window_steps: int, stride: int, first_end: int) -> np.ndarray:
    """All (target, end) pairs with end in [first_end, T] on a stride, where the last step
    of the window has at least one sample."""
    ends = np.arange(first_end, group.n_steps + 1, stride)
    k, e = np.meshgrid(np.arange(group.n_targets), ends, indexing="ij")
    k, e = k.ravel(), e.ravel()
    if not group.values.shape[-1]:  # log-only group: every window counts
        return np.stack([k, e], axis=1)
    alive = np.isfinite(group.values[e - 1, k]).any(axis=-1)
    return np.stack([k[alive], e[alive]], axis=1)
