"""Novelty: how unlike its own usual a target's window is, calibrated on the fleet's own
windows.

A model trained with labels scores what it learnt (the simulator's scenarios); a fault it
was never shown, such as a host saturated by a workload it has not seen, scores nothing.
Its forecast branch still says how badly the last five minutes were predicted
(``raw_scores(..., "forecast")``). That error depends on the target: a host that sends
fewer metrics than the training fleets, or scaled otherwise, is predicted worse all the
time. So the error is first divided by the target's own typical error (the median over its
recent windows), then calibrated over the whole fleet's recent windows, unlabelled, with
the excursion-declustered ``Calibrator``: an incident in the calibration part counts once.

Fitted on each metric's error (``errors`` of ``[windows, metrics]``), the usual error is
kept per target *and metric*, and a window's novelty is its largest ratio of a metric's
error to that metric's usual one. One usual error per target let a single metric that is
always forecast badly hide every other: a VM whose virtual NICs send 0 bytes/s, which no
training fleet does, had a usual error hundreds of times the fleet's, and a CPU load on it
changed nothing (docs/anomaly.md, "Novelty"). A metric's usual error is never taken below
the fleet's median for that metric, so a metric a target happens to forecast perfectly
does not make it hair-triggered.

A target with fewer than ``MIN_WINDOWS`` recent windows has no novelty score until the next
fit: its usual error is not known yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ingest.simulator import CATALOGUE
from models.anomaly.postprocess import Calibrator

MIN_WINDOWS = 16  # four hours of windows sampled every 15 minutes
SCALE_FLOOR = 1e-3  # a target predicted perfectly would otherwise divide by zero
NOVEL_SCENARIO = "unrecognised"
# A target whose usual error on a metric is this many times the fleet's is listed as
# forecast badly there (lab-vm's network receive rate: about 2,100 times in the demo).
OUTLIER_FACTOR = 10.0
# 95 is p = 10^-5.7: one window in about 500,000 of the calibration part's normalised
# errors, on a pooled and declustered tail (docs/anomaly.md, "Novelty": 90 raised five
# false alarm events on one of three simulated fleets, 95 one).
NOVELTY_LEVEL = 95.0
# Scenarios the scenario head knows as expected (deceptive normals): a window it takes for
# one of them does not alarm on novelty, however unusual (a backup is unusual, and known).
EXPECTED_CLASSES = frozenset([*CATALOGUE.names("deceptive"), "expected"])


@dataclass
class FleetNovelty:
    """One level's novelty calibration: each target's usual error (per metric where fitted
    on each metric's error) and the calibrator of the errors divided by it."""

    calibrator: Calibrator
    scales: dict[str, float] = field(default_factory=dict)
    windows: int = 0
    # target -> each metric's usual error, floored at the fleet's; empty for a fit on one
    # error per window (and for calibrations stored before 2026-12-01).
    metric_scales: dict[str, list[float]] = field(default_factory=dict)
    metric_names: list[str] = field(default_factory=list)  # of metric_scales' columns

    @classmethod
    def fit(cls, raw_by_target: dict[str, np.ndarray]) -> FleetNovelty:
        """``raw_by_target``: each target's forecast errors in time order, one per window
        ``[N]`` or one per metric and window ``[N, M]`` (NaN where a window is missing,
        which ends an excursion)."""
        known = {}
        for target, raw in sorted(raw_by_target.items()):
            raw = np.asarray(raw, dtype=np.float64)
            rows = np.isfinite(raw) if raw.ndim == 1 else np.isfinite(raw).all(axis=1)
            if rows.sum() >= MIN_WINDOWS:
                known[target] = np.where(rows if raw.ndim == 1 else rows[:, None], raw, np.nan)
        if not known:
            raise ValueError(
                f"novelty calibration needs a target with at least {MIN_WINDOWS} windows"
            )
        dims = {raw.ndim for raw in known.values()}
        if len(dims) > 1 or (dims == {2} and len({r.shape[1] for r in known.values()}) > 1):
            raise ValueError("novelty errors must all be [N] or all [N, M] with one M")
        if dims == {1}:
            scales = {t: max(float(np.nanmedian(r)), SCALE_FLOOR) for t, r in known.items()}
            ratios = {t: r / scales[t] for t, r in known.items()}
            metric_scales: dict[str, list[float]] = {}
        else:
            metric_scales = _metric_scales(known)
            ratios = {t: _largest_ratio(r, np.asarray(metric_scales[t])) for t, r in known.items()}
            scales = {t: float(np.nanmedian(r.max(axis=1))) for t, r in known.items()}
        values = np.concatenate(list(ratios.values()))
        series = np.concatenate(
            [np.full(len(r), i, np.int64) for i, r in enumerate(ratios.values())]
        )
        return cls(
            Calibrator.fit(values, series), scales, int(np.isfinite(values).sum()), metric_scales
        )

    def score(self, target: str, raw: float, errors: np.ndarray | None = None) -> float | None:
        """The calibrated novelty (0 to 100) of one window, None for a target not yet known."""
        return self.score_many(
            [target], np.array([raw]), None if errors is None else np.asarray(errors)[None]
        )[0]

    def score_many(
        self, targets: list[str], raw: np.ndarray, errors: np.ndarray | None = None
    ) -> list[float | None]:
        """``score`` of many windows in one calibration pass: ``raw`` their errors [B], and
        ``errors`` each metric's [B, M], which a per-metric fit needs."""
        if self.metric_scales:
            if errors is None:
                raise ValueError("a per-metric novelty fit scores each metric's error")
            ratio = _largest_ratio(np.asarray(errors, np.float64), self.usual(targets))
        else:
            scale = np.array([self.scales.get(t, np.nan) for t in targets], dtype=np.float64)
            ratio = np.asarray(raw, dtype=np.float64) / scale
        known = np.isfinite(ratio)
        calibrated = np.full(len(targets), np.nan)
        if known.any():
            calibrated[known] = self.calibrator.transform(ratio[known])
        return [float(v) if ok else None for v, ok in zip(calibrated, known, strict=True)]

    def usual(self, targets: list[str]) -> np.ndarray:
        """Each target's usual error per metric [B, M] of a per-metric fit (a row of NaN for
        a target not known)."""
        m = len(next(iter(self.metric_scales.values()), []))
        unknown = [np.nan] * m
        return np.array([self.metric_scales.get(t, unknown) for t in targets], np.float64)

    def forecast_badly(self, factor: float = OUTLIER_FACTOR) -> list[tuple[str, str, float]]:
        """(target, metric, times) for each target whose usual error on some metric is at
        least ``factor`` times the fleet's median usual on it, worst first: targets far
        outside the training fleets' ranges there (a VM sending 0 bytes/s on virtual NICs),
        whose novelty cannot see that metric move."""
        if len(self.metric_scales) < 2:
            return []
        usual = np.array(list(self.metric_scales.values()))
        times = usual / np.median(usual, axis=0)
        worst = times.argmax(axis=1)
        out = [
            (target, self._metric_name(int(m)), float(times[i, m]))
            for i, (target, m) in enumerate(zip(self.metric_scales, worst, strict=True))
            if times[i, m] >= factor
        ]
        return sorted(out, key=lambda row: -row[2])

    def _metric_name(self, m: int) -> str:
        return self.metric_names[m] if m < len(self.metric_names) else f"metric {m}"

    def as_dict(self) -> dict:
        return {
            "calibrator": self.calibrator.as_dict(),
            "scales": self.scales,
            "windows": self.windows,
            "metric_scales": self.metric_scales,
            "metric_names": self.metric_names,
        }

    @classmethod
    def from_dict(cls, data: dict) -> FleetNovelty:
        return cls(
            Calibrator.from_dict(data["calibrator"]),
            {k: float(v) for k, v in data.get("scales", {}).items()},
            int(data.get("windows", 0)),
            {k: [float(x) for x in v] for k, v in data.get("metric_scales", {}).items()},
            list(data.get("metric_names", [])),
        )


def _metric_scales(errors: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Each target's median error per metric, floored at the fleet's median of those (over
    the targets that send the metric: one not sent has error 0) and at ``SCALE_FLOOR``."""
    own = {t: np.nanmedian(e, axis=0) for t, e in errors.items()}
    stacked = np.array(list(own.values()))
    sent = np.where(stacked > 0, stacked, np.nan)
    with np.errstate(all="ignore"):
        fleet = np.nan_to_num(np.nanmedian(sent, axis=0), nan=SCALE_FLOOR)
    floor = np.maximum(fleet, SCALE_FLOOR)
    return {t: np.maximum(u, floor).tolist() for t, u in own.items()}


def _largest_ratio(errors: np.ndarray, usual: np.ndarray) -> np.ndarray:
    """Each window's largest ratio of a metric's error to its usual [B] (NaN for a window or
    target with none)."""
    if errors.shape[-1] != usual.shape[-1]:
        raise ValueError(f"{errors.shape[-1]} metric errors against {usual.shape[-1]} usual ones")
    ratio = errors / usual
    out = np.full(len(ratio), np.nan)
    rows = np.isfinite(ratio).all(axis=1)
    out[rows] = ratio[rows].max(axis=1)
    return out
