"""Metrics: point-wise beside point-adjusted, events, deceptive FPR, NAB scoring."""

import numpy as np
import pytest

from models.anomaly.metrics import (
    NabFile,
    Segment,
    event_scores,
    nab_file_score,
    nab_normalised,
    pa_f1,
    point_adjust,
    pointwise,
    scenario_accuracy,
)
from models.anomaly.postprocess import Event


def _event(target, start, end):
    return Event(target, start, end, 80.0, start, 1, 80.0)


def test_point_adjust_fills_hit_segments_only_and_respects_series():
    label = np.array([0, 1, 1, 1, 0, 1, 1, 0])
    pred = np.array([0, 0, 1, 0, 0, 0, 0, 1], bool)
    adj = point_adjust(pred, label)
    assert adj.tolist() == [0, 1, 1, 1, 0, 0, 0, 1]
    p, r, f = pointwise(pred, label)
    assert (p, r) == (0.5, 0.2)
    assert pa_f1(pred, label) > f  # the inflation is what we report beside, never alone
    # A segment that spans two series is two segments.
    series = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    assert point_adjust(pred, label, series).tolist() == [0, 1, 1, 0, 0, 0, 0, 1]


def test_pointwise_ignores_unknown_labels():
    assert pointwise(np.array([1, 1], bool), np.array([1, -1])) == (1.0, 1.0, 1.0)


def test_event_scores_recall_precision_deceptive_and_excused():
    segs = [
        Segment(frozenset(["a"]), 100, 200),
        Segment(frozenset(["b"]), 100, 200),
        Segment(frozenset(["a"]), 500, 600, "deceptive"),
        Segment(frozenset(["a"]), 800, 900, "deceptive"),
        Segment(frozenset(["c"]), 0, 1000, "ignore"),
    ]
    events = [_event("a", 150, 160), _event("a", 550, 560), _event("c", 10, 20)]
    ev = event_scores(events, segs, target_days=2.0)
    assert ev.event_recall == 0.5
    assert ev.event_precision == 0.5  # the excused event on c is neither true nor false
    assert ev.false_alarms == 1 and ev.false_alarms_per_day == 0.5
    assert ev.deceptive_fpr == 0.5


def test_scenario_accuracy():
    assert scenario_accuracy(["x", "y"], ["x", "z"]) == 0.5
    assert scenario_accuracy([], []) is None


def test_nab_scoring_rewards_early_detection_and_charges_false_positives():
    times = np.arange(1000.0)
    windows = [(400.0, 499.0)]
    early = np.zeros(1000, bool)
    early[400] = True
    late = np.zeros(1000, bool)
    late[495] = True
    fp = early.copy()
    fp[800] = True
    s_early, s_late, s_fp = (nab_file_score(times, a, windows) for a in (early, late, fp))
    assert s_early.raw == pytest.approx(1.0, abs=1e-6)  # left edge earns the full A_TP
    assert 0 < s_late.raw < s_early.raw
    assert s_fp.raw < s_early.raw and s_fp.false_positives == 1
    none = nab_file_score(times, np.zeros(1000, bool), windows)
    assert none.raw == -1.0 and none.detected == 0
    # Alerts in the probationary period (first 15 %) are not scored.
    prob = np.zeros(1000, bool)
    prob[10] = True
    assert nab_file_score(times, prob, windows).false_positives == 0
    assert nab_normalised([none]) == 0.0 and nab_normalised([s_early]) == pytest.approx(100.0)
    assert nab_normalised([NabFile(0, 0, 0, 0, 0, 0)]) == 0.0
