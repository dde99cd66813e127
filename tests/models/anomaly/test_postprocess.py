"""Calibration, thresholds, event merging and attribution merging."""

import numpy as np

from models.anomaly.postprocess import (
    Calibrator,
    Thresholds,
    event_spans,
    merge_attributions,
    merge_events,
    online_calibrate,
    threshold,
)


def test_calibration_maps_exceedance_to_0_100_monotonically():
    rng = np.random.default_rng(0)
    cal = Calibrator.fit(rng.normal(size=20_000))
    x = np.linspace(-3, 8, 200)
    s = cal.transform(x)
    assert np.all(np.diff(s) >= -1e-9)
    assert s[0] < 1 and s[-1] == 100.0
    # The 99.9th percentile of the validation scores sits near 50 (one in a thousand).
    assert abs(cal.transform(np.array([3.09]))[0] - 50) < 6
    # Beyond everything seen, scores still rank (tail model), and NaN means "no evidence".
    assert cal.transform(np.array([4.5]))[0] > cal.transform(np.array([4.0]))[0]
    assert cal.transform(np.array([np.nan]))[0] == 0.0


def test_a_clipped_tail_shape_gets_its_own_scale():
    """Very heavy tails (shape 1.4, as on Nezha's calibration hour) are modelled with the
    shape capped at 0.5; the scale must be the most likely one for that shape, not the one
    fitted along with 1.4 (which made the tail far too light)."""
    from scipy import stats

    raw = stats.genpareto(1.4).rvs(size=2760, random_state=np.random.default_rng(3))
    cal = Calibrator.fit(raw)
    assert cal.tail_shape == 0.5
    exc = raw[raw > cal.tail_u] - cal.tail_u

    def loglik(scale: float) -> float:
        return float(stats.genpareto.logpdf(exc, 0.5, scale=scale).sum())

    assert loglik(cal.tail_scale) > max(loglik(0.9 * cal.tail_scale), loglik(1.1 * cal.tail_scale))
    # Fewer calibration scores beyond a one-in-46,000 level than with the old scale (4).
    assert (cal.exceedance(raw) < 1 / 46_000).sum() <= 2
    top = np.sort(raw)[-3:]
    assert np.all(np.diff(cal.transform(top)) > 0)


def test_calibrated_scores_do_not_depend_on_the_raw_scores_units():
    """Multiplying every raw score by a constant (a pooled error scale, a unit change) must
    leave every calibrated score, and so every alarm, exactly as it was."""
    rng = np.random.default_rng(0)
    for trial in range(12):
        raw = rng.pareto(rng.uniform(1.5, 6), 2000) * rng.uniform(0.1, 10)
        scored = np.concatenate([raw[:50] * 3, rng.pareto(2, 200)])
        reference = Calibrator.fit(raw).transform(scored)
        for factor in (1e-3, 7.3, 1e4):
            rescaled = Calibrator.fit(raw * factor).transform(scored * factor)
            np.testing.assert_allclose(rescaled, reference, rtol=0, atol=1e-9, err_msg=f"{trial}")


def test_calibration_round_trips_and_handles_ties():
    raw = np.r_[np.zeros(900), np.arange(100.0)]
    cal = Calibrator.fit(raw)
    again = Calibrator.from_dict(cal.as_dict())
    np.testing.assert_allclose(cal.transform(raw), again.transform(raw))
    assert cal.transform(np.array([0.0]))[0] < 10


def test_a_score_is_never_rarer_than_the_calibration_part_shows():
    """A light, bounded tail fitted to a few recurring top scores must not call those very
    scores one-in-a-million: k separate excursions of the n calibration windows at or above x
    means p(x) >= k / n."""
    rng = np.random.default_rng(0)
    # A daily routine: the same two large errors every day, tiny ones otherwise.
    day = np.r_[rng.uniform(0.0, 0.001, 286), 0.0193, 0.0194]
    raw = np.tile(day, 10)
    cal = Calibrator.fit(raw)
    p = cal.exceedance(np.array([0.0193, 0.0194]))
    assert p[0] >= 10 / len(raw) and p[1] >= 10 / len(raw)
    assert (cal.transform(np.array([0.0193, 0.0194])) < 50).all()
    assert cal.transform(np.array([0.05]))[0] == 100.0  # far beyond anything seen still alarms
    # Streaming (NAB): after the first day the routine never alarms again.
    stream = online_calibrate(day[:200], np.tile(day, 12), 288)
    assert not (stream[288:] >= 50).any()


def test_one_long_excursion_of_the_calibration_part_counts_once():
    """An unlabelled incident in the calibration part keeps the score high for many
    overlapping windows. Counted window by window it made every score below its peak
    common, so a smaller incident later could never alarm; counted once, it is one event in
    n windows, and the same windows spread out as separate excursions still count each."""
    rng = np.random.default_rng(2)
    quiet = rng.gamma(2.0, 1.0, 5000)
    smaller = np.array([30.0])  # far above the quiet scores, far below the incident
    incident = np.r_[quiet[:2500], np.full(12, 400.0), quiet[2500:]]
    one = Calibrator.fit(incident)
    assert one.transform(smaller)[0] >= 50
    # The same twelve windows as twelve excursions a hundred windows apart: common.
    spread = quiet.copy()
    spread[np.arange(12) * 100 + 50] = 400.0
    assert Calibrator.fit(spread).transform(smaller)[0] < 50
    # Two series: the windows at the end of one and the start of the next are not adjacent.
    raw = np.r_[quiet[:2500], [400.0] * 6, [400.0] * 6, quiet[2500:]]
    series = np.r_[np.zeros(2506, int), np.ones(2506, int)]
    assert Calibrator.fit(raw, series).exceedance(np.array([400.0]))[0] >= 2 / len(raw)
    assert Calibrator.fit(raw).exceedance(np.array([400.0]))[0] < 2 / len(raw)
    # Series ids in any order, a dropped score between two of them: still two excursions.
    gap = np.r_[quiet[:2500], [400.0] * 6, np.nan, [400.0] * 6, quiet[2500:]]
    ids = np.r_[np.ones(2507, int), np.zeros(2506, int)]
    assert (np.asarray(Calibrator.fit(gap, ids).tail_values) >= 400).sum() == 2


def test_a_calibrator_saved_without_its_tail_values_loads_and_calibrates_as_before():
    raw = np.random.default_rng(1).gamma(2.0, 1.0, 5000)
    cal = Calibrator.fit(raw)
    old = {k: v for k, v in cal.as_dict().items() if k != "tail_values"}
    again = Calibrator.from_dict(old)
    assert again.tail_values == []
    # Without them only the fitted tail decides; the floor can only make scores less rare.
    x = np.linspace(0, 20, 50)
    assert (again.exceedance(x) <= cal.exceedance(x) + 1e-15).all()
    assert (again.exceedance(x) < cal.exceedance(x)).any()


def test_thresholds_per_group():
    t = Thresholds(default=50, groups={"host": 70})
    assert t.for_group("vm") == 50 and t.for_group("host") == 70
    assert threshold(np.array([49.0, 50.0, 71.0]), 50).tolist() == [False, True, True]
    assert Thresholds.from_dict(t.as_dict()) == t


def test_event_spans_bridge_small_gaps():
    flags = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1], bool)
    assert event_spans(flags) == [(1, 2), (4, 4), (8, 8)]
    assert event_spans(flags, max_gap=1) == [(1, 4), (8, 8)]
    assert event_spans(np.zeros(4, bool)) == []


def test_merge_events_orders_by_time_and_reports_peak():
    times = np.array([300.0, 0.0, 100.0, 200.0, 500.0])
    scores = np.array([10.0, 60.0, 90.0, 55.0, 70.0])
    events = merge_events("vm:a", times, scores, 50, max_gap=0)
    assert [(e.start, e.end) for e in events] == [(0.0, 200.0), (500.0, 500.0)]
    assert events[0].peak == 90.0 and events[0].peak_time == 100.0 and events[0].n_points == 3


def test_merge_attributions_of_windows_that_all_scored_0_weighs_them_equally():
    merged = merge_attributions([[("cpu", 1.0)], [("cpu", 0.5), ("disk", 0.5)]], [0.0, 0.0])
    assert merged == [("cpu", 0.75), ("disk", 0.25)]
    assert merge_attributions([], []) == []


def test_merge_attributions_weights_and_normalises():
    merged = merge_attributions(
        [[("cpu", 0.8), ("disk", 0.2)], [("disk", 1.0)]], weights=[1.0, 3.0]
    )
    assert merged[0][0] == "disk"
    assert abs(sum(s for _, s in merged) - 1.0) < 1e-9
