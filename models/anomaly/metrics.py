"""Detection metrics, reported side by side (Merlion style): point-wise, point-adjusted,
event-level, NAB, deceptive-normal false positives and scenario accuracy.

Point-adjusted F1 counts a whole labelled segment as found when any point in it is flagged;
it inflates results and is never reported without the point-wise figures beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from models.anomaly.postprocess import Event, event_spans


def prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def pointwise(pred: np.ndarray, label: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 over points with a label (label -1 = not scored)."""
    pred, label = np.asarray(pred, bool), np.asarray(label)
    known = label >= 0
    pred, label = pred[known], label[known] == 1
    return prf(
        float((pred & label).sum()), float((pred & ~label).sum()), float((~pred & label).sum())
    )


def point_adjust(
    pred: np.ndarray, label: np.ndarray, series: np.ndarray | None = None
) -> np.ndarray:
    """Flag every point of a labelled segment that has at least one flagged point.
    Points must be time-ordered within each series; segments never cross series."""
    pred = np.asarray(pred, bool).copy()
    pos = np.asarray(label) == 1
    series = np.zeros(len(pred), int) if series is None else np.asarray(series)
    boundary = np.r_[True, series[1:] != series[:-1]]
    run_start = pos & (boundary | ~np.r_[False, pos[:-1]])
    run_id = np.cumsum(run_start) * pos
    hit = np.zeros(run_id.max() + 1, bool)
    np.logical_or.at(hit, run_id[pred & pos], True)
    hit[0] = False
    pred[pos] = hit[run_id[pos]]
    return pred


def pa_f1(pred: np.ndarray, label: np.ndarray, series: np.ndarray | None = None) -> float:
    return pointwise(point_adjust(pred, label, series), label)[2]


@dataclass
class Segment:
    """A labelled stretch (inclusive times). ``targets``: the series whose alarms count."""

    targets: frozenset[str]
    start: float
    end: float
    kind: str = "anomaly"  # anomaly | deceptive | ignore
    scenario: str = ""
    case_id: int = -1
    meta: dict = field(default_factory=dict)

    def overlaps(self, event: Event) -> bool:
        return event.target in self.targets and event.start <= self.end and event.end >= self.start


def label_segments(target: str, times: np.ndarray, label: np.ndarray, step: float) -> list[Segment]:
    """Contiguous runs of label 1 as segments (for datasets labelled per point)."""
    spans = event_spans(np.asarray(label) == 1)
    return [
        Segment(frozenset([target]), float(times[a]), float(times[b]) + step * 0.5)
        for a, b in spans
    ]


@dataclass
class EventScores:
    event_recall: float
    event_precision: float
    event_f1: float
    false_alarms: int
    false_alarms_per_day: float
    deceptive_fpr: float | None
    detected: list[int]  # indices of anomaly segments detected
    n_events: int


def event_scores(events: list[Event], segments: list[Segment], target_days: float) -> EventScores:
    """Event-level recall/precision; an event is a false alarm when it overlaps no anomaly
    and no ignore segment. Deceptive FPR: share of deceptive segments that a false alarm
    overlaps. ``target_days``: monitored time summed over targets, in days."""
    anomalies = [s for s in segments if s.kind == "anomaly"]
    excused = [s for s in segments if s.kind == "ignore"]
    deceptive = [s for s in segments if s.kind == "deceptive"]
    by_target: dict[str, list[Segment]] = {}
    for s in anomalies + excused:
        for t in s.targets:
            by_target.setdefault(t, []).append(s)
    true_events, false_events = [], []
    detected = set()
    index = {id(s): i for i, s in enumerate(anomalies)}
    for e in events:
        hits = [s for s in by_target.get(e.target, ()) if s.overlaps(e)]
        for s in hits:
            if s.kind == "anomaly":
                detected.add(index[id(s)])
        if any(s.kind == "anomaly" for s in hits):
            true_events.append(e)
        elif not hits:
            false_events.append(e)
    recall = len(detected) / len(anomalies) if anomalies else 0.0
    n_judged = len(true_events) + len(false_events)
    precision = len(true_events) / n_judged if n_judged else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    dfpr = None
    if deceptive:
        flagged = sum(any(d.overlaps(e) for e in false_events) for d in deceptive)
        dfpr = flagged / len(deceptive)
    per_day = len(false_events) / target_days if target_days > 0 else 0.0
    return EventScores(
        recall, precision, f1, len(false_events), per_day, dfpr, sorted(detected), len(events)
    )


def scenario_accuracy(true: list[str], pred: list[str]) -> float | None:
    if not true:
        return None
    return float(np.mean([t == p for t, p in zip(true, pred, strict=True)]))


# ---------------------------------------------------------------- NAB (standard profile)
NAB_PROFILES = {
    "standard": (1.0, 0.11, 1.0),
    "reward_low_FP_rate": (1.0, 0.22, 1.0),
    "reward_low_FN_rate": (1.0, 0.11, 2.0),
}


def _scaled_sigmoid(x: float) -> float:
    if x > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


@dataclass
class NabFile:
    raw: float  # detector score
    null: float  # score of a detector that never alerts
    perfect: float  # every window found at its left edge
    detected: int
    windows: int
    false_positives: int


def nab_file_score(
    times: np.ndarray,
    alarms: np.ndarray,
    windows: list[tuple[float, float]],
    profile: str = "standard",
) -> NabFile:
    """NAB's scoring of one file: ``alarms`` flags the points where the detector alerts.
    Inside a window only the first alert counts (sigmoid reward, earlier is better); alerts
    outside windows cost up to A_FP, less just after a window; a missed window costs A_FN;
    the first 15 % of the file (at most 750 points) is probationary and not scored."""
    tp_w, fp_w, fn_w = NAB_PROFILES[profile]
    n = len(times)
    probation = min(math.floor(0.15 * n), 750)
    times = np.asarray(times, dtype=np.float64)
    win_idx = []
    for a, b in windows:
        inside = np.flatnonzero((times >= a) & (times <= b))
        if len(inside):
            win_idx.append((int(inside[0]), int(inside[-1])))
    max_tp = _scaled_sigmoid(-1.0)
    best = [None] * len(win_idx)
    fp_total, n_fp = 0.0, 0
    w = 0
    prev_right, prev_width = None, None
    for i in np.flatnonzero(np.asarray(alarms, bool)):
        while w < len(win_idx) and win_idx[w][1] < i:
            prev_right, prev_width = win_idx[w][1], win_idx[w][1] - win_idx[w][0] + 1
            w += 1
        if i < probation:
            continue
        if w < len(win_idx) and win_idx[w][0] <= i:
            left, right = win_idx[w]
            width = right - left + 1
            score = _scaled_sigmoid(-(right - i + 1) / width) * tp_w / max_tp
            if best[w] is None:
                best[w] = score
            continue
        if prev_right is None:
            unweighted = -1.0
        else:
            unweighted = _scaled_sigmoid(abs(prev_right - i) / max(prev_width - 1, 1))
        fp_total += unweighted * fp_w
        n_fp += 1
    raw = fp_total + sum(-fn_w if b is None else b for b in best)
    return NabFile(
        raw=raw,
        null=-fn_w * len(win_idx),
        perfect=tp_w * len(win_idx),
        detected=sum(b is not None for b in best),
        windows=len(win_idx),
        false_positives=n_fp,
    )


def nab_normalised(files: list[NabFile]) -> float:
    """Corpus score 0-100 (0 = never alerting, 100 = perfect), as NAB normalises it."""
    raw = sum(f.raw for f in files)
    null = sum(f.null for f in files)
    perfect = sum(f.perfect for f in files)
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)
