"""One code path for every method: windows → raw scores → calibration (validation) →
threshold → events → metrics. Telltale and the baselines differ only in ``raw``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.anomaly.datamodule import window_labels
from models.anomaly.features import FeatureSpec, SeriesGroup, windows_of
from models.anomaly.metrics import Segment, event_scores, pa_f1, pointwise
from models.anomaly.postprocess import Calibrator, Event, merge_events


class Method(Protocol):
    name: str

    def raw(self, group: SeriesGroup, keys: np.ndarray, spec: FeatureSpec | None) -> dict: ...


@dataclass
class Scored:
    """Scores of the windows of one group, in key order."""

    group: str
    keys: np.ndarray  # [N, 2] (target, end step)
    targets: list[str]  # target names of the group
    times: np.ndarray  # window end, epoch seconds
    raw: np.ndarray
    label: np.ndarray  # -1/0/1 per window (last patch), -1 where unknown
    scenario_true: np.ndarray | None = None
    scenario_probs: np.ndarray | None = None
    calibrated: np.ndarray | None = None


def score(
    method: Method,
    group: SeriesGroup,
    keys: np.ndarray,
    spec: FeatureSpec | None,
    patch_steps: int,
) -> Scored:
    res = method.raw(group, keys, spec)
    label, scen = window_labels(group, keys, patch_steps)
    if label is None:
        label = np.full(len(keys), -1.0)
    return Scored(
        group.name,
        keys,
        group.target_names,
        group.window_end_ts(keys[:, 1], keys[:, 0]).astype(np.float64),
        np.asarray(res["raw"], dtype=np.float64),
        label,
        scen,
        res.get("scenario"),
    )


def all_windows(group: SeriesGroup, window_steps: int, stride: int, first_end: int) -> np.ndarray:
    return windows_of(group, window_steps, stride, max(first_end, 1))


def fit_calibrator(scored: list[Scored], normal_only: bool) -> Calibrator:
    """Calibration on validation windows: only those labelled normal when labels exist. Each
    target's windows go in time order, so the calibrator can tell one long excursion from
    many short ones."""
    raw, series, offset = [], [], 0
    for s in scored:
        order = np.lexsort((s.times, s.keys[:, 0]))
        values = s.raw[order].astype(np.float64)
        if normal_only:
            values[s.label[order] != 0] = np.nan  # left out, and it ends an excursion
        raw.append(values)
        series.append(s.keys[order, 0].astype(np.int64) + offset)
        offset += int(s.keys[:, 0].max(initial=0)) + 1
    return Calibrator.fit(np.concatenate(raw), np.concatenate(series))


def events_of(s: Scored, level: float, max_gap: int = 1) -> list[Event]:
    out: list[Event] = []
    order = np.lexsort((s.times, s.keys[:, 0]))
    k = s.keys[order, 0]
    bounds = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
    for a, b in itertools.pairwise(bounds):
        idx = order[a:b]
        if (s.calibrated[idx] >= level).any():
            out += merge_events(
                s.targets[int(k[a])], s.times[idx], s.calibrated[idx], level, max_gap
            )
    return out


def target_days(scored: list[Scored]) -> float:
    """Monitored time summed over targets (each window stands for one stride)."""
    total = 0.0
    for s in scored:
        if len(s.times) < 2:
            continue
        per_target = np.bincount(s.keys[:, 0])
        gaps = np.diff(np.unique(s.times))
        stride = float(np.median(gaps)) if len(gaps) else 0.0
        total += per_target.sum() * stride
    return total / 86_400


def point_metrics(scored: list[Scored], levels: dict[str, float]) -> dict[str, float]:
    preds, labels, series = [], [], []
    offset = 0
    for s in scored:
        order = np.lexsort((s.times, s.keys[:, 0]))
        preds.append(s.calibrated[order] >= levels[s.group])
        labels.append(s.label[order])
        series.append(s.keys[order, 0] + offset)
        offset += len(s.targets)
    pred, label, ser = np.concatenate(preds), np.concatenate(labels), np.concatenate(series)
    p, r, f = pointwise(pred, label)
    return {"precision": p, "recall": r, "f1": f, "pa_f1": pa_f1(pred, label, ser)}


def evaluate(
    scored: list[Scored],
    segments: list[Segment],
    levels: dict[str, float],
    max_gap: int = 1,
    days: float | None = None,
) -> dict:
    """Point-wise, point-adjusted and event-level figures at the given thresholds.
    ``days``: monitored target-days when window times are not clock times (BGL lines)."""
    events = [e for s in scored for e in events_of(s, levels[s.group], max_gap)]
    ev = event_scores(events, segments, target_days(scored) if days is None else days)
    out = point_metrics(scored, levels)
    out.update(
        event_recall=ev.event_recall,
        event_precision=ev.event_precision,
        event_f1=ev.event_f1,
        false_alarms=ev.false_alarms,
        false_alarms_per_day=ev.false_alarms_per_day,
        deceptive_fpr=ev.deceptive_fpr,
        n_events=ev.n_events,
    )
    return out


def select_threshold(
    scored: list[Scored],
    segments: list[Segment],
    max_deceptive_fpr: float = 0.05,
    prior: float | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[float, dict]:
    """Threshold on validation data maximising event F1; thresholds whose deceptive FPR
    exceeds the cap lose against any that meets it; ties go to the higher threshold.

    ``prior`` (anomalies per target-day expected in deployment) makes the choice independent
    of how many cases the validation fleet happens to hold: precision is then estimated as
    R * prior / (R * prior + false alarms per target-day), with recall R from validation."""
    candidates = np.arange(20.0, 100.01, 1.0) if candidates is None else candidates
    groups = {s.group for s in scored}
    best, best_key, best_res = float(candidates[-1]), None, {}
    for level in candidates:
        res = evaluate(scored, segments, dict.fromkeys(groups, float(level)))
        f1 = res["event_f1"]
        if prior is not None:
            r, fa = res["event_recall"], res["false_alarms_per_day"]
            p = r * prior / (r * prior + fa) if r * prior + fa > 0 else 0.0
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            res["event_f1_at_prior"] = f1
        dfpr = res["deceptive_fpr"]
        ok = dfpr is None or dfpr <= max_deceptive_fpr
        key = (ok, round(f1, 6), level)
        if best_key is None or key > best_key:
            best, best_key, best_res = float(level), key, res
    return best, best_res


def scenario_predictions(
    scored: list[Scored], segments: list[Segment], classes: list[str], allowed: list[str]
) -> tuple[list[str], list[str]]:
    """Per anomaly case: the true scenario and the class (among ``allowed``) with the highest
    mean probability over the windows that overlap the case on its own targets, each window
    weighted by its anomaly probability (evidence accumulates over a case, as over an event).
    Independent of the threshold: it asks *which* anomaly; detection is scored separately."""
    allowed_idx = np.array([classes.index(c) for c in allowed])
    index: dict[str, list[tuple[Scored, np.ndarray]]] = {}
    for s in scored:
        if s.scenario_probs is None:
            continue
        order = np.argsort(s.keys[:, 0], kind="stable")
        k = s.keys[order, 0]
        bounds = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
        for a, b in itertools.pairwise(bounds):
            index.setdefault(s.targets[int(k[a])], []).append((s, order[a:b]))
    true, pred = [], []
    for seg in segments:
        if seg.kind != "anomaly":
            continue
        probs, weights = [], []
        for name in seg.targets:
            for s, idx in index.get(name, ()):
                hit = idx[(s.times[idx] >= seg.start) & (s.times[idx] <= seg.end)]
                probs.append(s.scenario_probs[hit])
                weights.append(1.0 / (1.0 + np.exp(-np.clip(s.raw[hit], -30, 30))))
        if not probs or not sum(len(w) for w in weights):
            continue
        w = np.concatenate(weights)
        mean = (np.concatenate(probs) * w[:, None]).sum(0) / max(w.sum(), 1e-12)
        true.append(seg.scenario)
        pred.append(classes[int(allowed_idx[np.argmax(mean[allowed_idx])])])
    return true, pred
