"""Post-processing as separate steps (Merlion style): raw score → calibrated 0-100 →
threshold → events.

Calibration turns any raw score into "how rare is this among validation windows": the
exceedance probability p of the raw score (empirical below the 95th percentile, a
generalised Pareto tail above it, so scores beyond anything seen in validation still
rank, but never rarer than the share of separate validation excursions that reached
them), mapped to ``100 · min(1, -log10 p / 6)``. A calibrated 50 is therefore a
one-in-a-thousand window, 67 one in ten thousand, 100 one in a million or rarer — the same
meaning for every method and dataset, which is what lets one threshold rule serve them all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

DECADES = 6.0
TAIL_Q = 0.95
GRID = 256
MAX_TAIL_SHAPE = 0.5
# The largest calibration scores kept for the empirical floor of the tail (see
# ``Calibrator.exceedance``); beyond them the floor is a lower bound, which is still safe.
TAIL_KEEP = 1000


def _fit_tail(exc: np.ndarray) -> tuple[float, float]:
    """Generalised Pareto (shape, scale) of the exceedances over the tail threshold, the shape
    capped at ±MAX_TAIL_SHAPE; an exponential tail (0, mean) when no fit is possible."""
    fallback = (0.0, float(exc.mean()) if len(exc) else 1.0)
    if len(exc) < 20 or exc.std() <= 0:
        return fallback
    # Fitted in units of the mean exceedance: the optimiser's start and tolerances are then
    # the same whatever the raw score's units, so multiplying every raw score by a constant
    # leaves every calibrated score as it was (fitted in raw units it moved by up to 0.015).
    unit = float(exc.mean())
    try:
        shape, _, scale = stats.genpareto.fit(exc / unit, floc=0.0)
        if np.isfinite(shape) and abs(shape) > MAX_TAIL_SHAPE:
            # The scale fitted along with a shape beyond the cap belongs to that shape; with
            # the capped one it would make the tail far too light (or heavy). Refit it.
            shape = float(np.clip(shape, -MAX_TAIL_SHAPE, MAX_TAIL_SHAPE))
            _, _, scale = stats.genpareto.fit(exc / unit, fc=shape, floc=0.0)
    except (ValueError, RuntimeError):
        return fallback
    scale *= unit
    if not (np.isfinite(shape) and np.isfinite(scale) and scale > 0):
        return fallback
    return float(shape), float(scale)


@dataclass
class Calibrator:
    grid: list[float] = field(default_factory=list)  # raw-score quantiles at probs
    probs: list[float] = field(default_factory=list)
    tail_u: float = 0.0
    tail_shape: float = 0.0
    tail_scale: float = 1.0
    n: int = 0
    # The peaks of the calibration part's excursions above tail_u, ascending (at most
    # TAIL_KEEP); empty in artefacts saved before 2026-11-30, which then calibrate as they did.
    tail_values: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, raw: np.ndarray, series: np.ndarray | None = None) -> Calibrator:
        """``raw`` in time order within each series; ``series`` says which series each score
        belongs to (one series when omitted), so that excursions never span two."""
        raw = np.asarray(raw, dtype=np.float64)
        series = np.zeros(len(raw), np.int64) if series is None else np.asarray(series)
        keep = np.isfinite(raw)
        # A run starts at every change of series and after every dropped score (the scores
        # either side of it are not adjacent); numbered runs, so ids never collide.
        series = np.cumsum(np.r_[True, (np.diff(series) != 0) | ~keep[:-1]])[keep]
        raw = raw[keep]
        if len(raw) < 10:
            raise ValueError("calibration needs at least 10 finite validation scores")
        probs = np.linspace(0.0, TAIL_Q, GRID)
        grid = np.quantile(raw, probs)
        u = float(grid[-1])
        exc = raw[raw > u] - u
        shape, scale = _fit_tail(exc)
        spread = float(grid[-1] - grid[0])
        scale = max(scale, 1e-6 * max(spread, 1e-6), 1e-12)
        top = np.sort(excursion_peaks(raw, series, u))[-TAIL_KEEP:]
        return cls(grid.tolist(), probs.tolist(), u, shape, scale, len(raw), top.tolist())

    def exceedance(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        grid, probs = np.asarray(self.grid), np.asarray(self.probs)
        # Ties in the grid (many identical scores) must not make p depend on position.
        uniq, first = np.unique(grid, return_index=True)
        cdf = np.interp(raw, uniq, probs[first], left=0.0, right=TAIL_Q)
        p = 1.0 - cdf
        over = raw > self.tail_u
        z = np.maximum(raw[over] - self.tail_u, 0.0) / self.tail_scale
        if abs(self.tail_shape) < 1e-6:
            tail = np.exp(-z)
        else:
            base = np.maximum(1.0 + self.tail_shape * z, 0.0)
            tail = np.where(base > 0, base ** (-1.0 / self.tail_shape), 0.0)
        p[over] = (1.0 - TAIL_Q) * tail
        if self.tail_values and self.n:
            # Never rarer than observed: a score that k separate excursions of the n
            # calibration windows reached has p >= k / n. A fitted tail with a negative shape
            # ends at a finite point, which can lie at or below scores the calibration part
            # itself holds; NAB's noise-free daily series repeats the same largest error
            # every day, and each repetition calibrated to 100, a one-in-a-million event,
            # once a day. Excursions, not windows: one incident of the calibration part
            # (SMD's training part holds unlabelled ones) spans many overlapping windows;
            # counted window by window, six of them made every score up to their peak "one in
            # 800", so no smaller incident could ever alarm. Interpolated between the
            # observed peaks, so the floor falls strictly and the calibrated score stays
            # strictly increasing in the raw one (a step function would map a range of raw
            # scores to one value, and a rule such as BGL's "the calibrated value of logit
            # 0" would then flag scores below 0).
            values, first = np.unique(np.asarray(self.tail_values), return_index=True)
            seen = (len(self.tail_values) - first) / self.n  # share at or above each value
            xs = np.r_[self.tail_u, values]
            ps = np.r_[max(1.0 - TAIL_Q, seen[0]), seen]
            p[over] = np.maximum(p[over], np.interp(raw[over], xs, ps, right=0.0))
        p[~np.isfinite(raw)] = 1.0
        return np.clip(p, 1e-300, 1.0)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        p = self.exceedance(raw)
        return np.clip(-np.log10(p) / DECADES, 0.0, 1.0) * 100.0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        return cls(**data)


def excursion_peaks(raw: np.ndarray, series: np.ndarray, level: float) -> np.ndarray:
    """The peak of every run of consecutive scores of one series above ``level`` (runs
    declustering): an incident that keeps the score high for many windows is one excursion."""
    above = np.flatnonzero(raw > level)
    if not len(above):
        return np.empty(0)
    starts = np.r_[True, (np.diff(above) != 1) | (np.diff(series[above]) != 0)]
    return np.maximum.reduceat(raw[above], np.flatnonzero(starts))


def online_calibrate(reference: np.ndarray, raw: np.ndarray, block: int) -> np.ndarray:
    """Causal calibration for streams without a training split (NAB): each block of
    ``block`` time-ordered scores is calibrated on the reference scores plus every score
    *before* the block, never on the block itself or anything later."""
    raw = np.asarray(raw, dtype=np.float64)
    out = np.empty(len(raw))
    for lo in range(0, len(raw), block):
        past = np.concatenate([reference, raw[:lo]])
        series = np.r_[np.zeros(len(reference), np.int64), np.ones(lo, np.int64)]
        out[lo : lo + block] = Calibrator.fit(past, series).transform(raw[lo : lo + block])
    return out


@dataclass
class Thresholds:
    """Calibrated-score thresholds per series group, with a default for the rest."""

    default: float = 50.0
    groups: dict[str, float] = field(default_factory=dict)

    def for_group(self, group: str) -> float:
        return self.groups.get(group, self.default)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Thresholds:
        return cls(float(data.get("default", 50.0)), dict(data.get("groups", {})))


def threshold(calibrated: np.ndarray, level: float) -> np.ndarray:
    return np.asarray(calibrated) >= level


@dataclass
class Event:
    """Consecutive flagged points of one target merged into one event."""

    target: str
    start: float  # time of the first flagged point
    end: float  # time of the last flagged point
    peak: float  # highest calibrated score
    peak_time: float
    n_points: int
    mean: float
    scenario: str = ""
    scenario_probability: float = 0.0
    metrics: list[tuple[str, float]] = field(default_factory=list)
    templates: list[tuple[str, float]] = field(default_factory=list)


def event_spans(flags: np.ndarray, max_gap: int = 0) -> list[tuple[int, int]]:
    """[start, end] index pairs (inclusive) of runs of True, bridging gaps of ≤ max_gap."""
    idx = np.flatnonzero(np.asarray(flags, dtype=bool))
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > max_gap + 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def merge_events(
    target: str,
    times: np.ndarray,
    calibrated: np.ndarray,
    level: float,
    max_gap: int = 1,
) -> list[Event]:
    """Events of one target from its time-ordered calibrated scores."""
    times = np.asarray(times, dtype=np.float64)
    calibrated = np.asarray(calibrated, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    times, calibrated = times[order], calibrated[order]
    out = []
    for a, b in event_spans(calibrated >= level, max_gap):
        seg = calibrated[a : b + 1]
        k = int(np.argmax(seg))
        flagged = seg[seg >= level]
        out.append(
            Event(
                target=target,
                start=float(times[a]),
                end=float(times[b]),
                peak=float(seg[k]),
                peak_time=float(times[a + k]),
                n_points=len(flagged),
                mean=float(flagged.mean()),
            )
        )
    return out


def merge_attributions(
    parts: list[list[tuple[str, float]]], weights: list[float], top: int = 10
) -> list[tuple[str, float]]:
    """Weighted sum of ranked share lists -> one ranked list; shares are fractions of the
    total, so the cut list sums to at most 1."""
    if parts and float(sum(weights)) <= 0:
        # Windows flagged at a level of 0 can all score 0 (none rarer than calibration's
        # least): they still say what moved, each as much as the others.
        weights = [1.0] * len(parts)
    total: dict[str, float] = {}
    for items, w in zip(parts, weights, strict=True):
        for name, share in items:
            total[name] = total.get(name, 0.0) + w * share
    s = float(sum(weights))
    if s <= 0 or not total:
        return []
    ranked = sorted(total.items(), key=lambda kv: -kv[1])[:top]
    return [(name, value / s) for name, value in ranked]
