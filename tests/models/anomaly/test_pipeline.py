"""The evaluation's shared code path: calibration of scored windows."""

import numpy as np

from models.anomaly.pipeline import Scored, fit_calibrator


def _scored(raw: np.ndarray, targets: np.ndarray, steps: np.ndarray, label: np.ndarray) -> Scored:
    keys = np.c_[targets, steps]
    return Scored("vm", keys, ["a", "b"], steps * 60.0, raw, label)


def test_calibration_counts_an_incident_once_whatever_order_the_windows_come_in():
    """Windows arrive in key order, not time order, and two targets interleave; one target's
    twelve consecutive incident windows are still one excursion, so a score between the
    quiet windows and the incident alarms. A labelled window among them, left out of the
    calibration, splits the incident in two."""
    rng = np.random.default_rng(4)
    n = 2500
    raw = rng.gamma(2.0, 1.0, 2 * n)
    targets = np.r_[np.zeros(n, int), np.ones(n, int)]
    steps = np.r_[np.arange(n), np.arange(n)]
    raw[1000:1012] = 400.0  # target a, steps 1000-1011
    shuffle = rng.permutation(2 * n)
    unlabelled = np.zeros(2 * n, int)
    shuffled = _scored(raw[shuffle], targets[shuffle], steps[shuffle], unlabelled[shuffle])
    one = fit_calibrator([shuffled], False)
    assert _peaks_at(one, 400.0) == 1
    assert one.transform(np.array([30.0]))[0] >= 50

    labelled = unlabelled.copy()
    labelled[1006] = 1  # an anomaly someone labelled, in the middle of the incident
    split = fit_calibrator([_scored(raw, targets, steps, labelled)], True)
    assert split.n == 2 * n - 1
    assert _peaks_at(split, 400.0) == 2

    # Two groups calibrated together never join the end of one with the start of the next.
    ends = rng.gamma(2.0, 1.0, 2 * n)
    ends[n - 3 : n] = 400.0  # the last windows of the first group's target 0...
    ends[n : n + 3] = 400.0  # ...and the first windows of the second group's target 0
    first = _scored(ends[:n], np.zeros(n, int), np.arange(n), np.zeros(n, int))
    second = _scored(ends[n:], np.zeros(n, int), np.arange(n), np.zeros(n, int))
    assert _peaks_at(fit_calibrator([first, second], False), 400.0) == 2


def _peaks_at(cal, level: float) -> int:
    """Excursions of the calibration part that reached ``level``."""
    return int((np.asarray(cal.tail_values) >= level).sum())
