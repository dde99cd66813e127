"""Novelty calibrated on the fleet's own windows: each target against its own usual error."""

import numpy as np
import pytest

from models.anomaly.novelty import MIN_WINDOWS, FleetNovelty


def _fleet(rng, n=96):
    # Two targets whose usual forecast error differs a hundredfold (one sends fewer metrics).
    return {
        "quiet": rng.gamma(2.0, 0.05, n),
        "noisy": rng.gamma(2.0, 5.0, n),
    }


def test_each_target_is_judged_against_its_own_usual_error():
    fit = FleetNovelty.fit(_fleet(np.random.default_rng(0)))
    # The noisy target's ordinary error would be extreme for the quiet one, not for itself.
    assert fit.score("noisy", 10.0) < 60
    assert fit.score("quiet", 10.0) > 90
    # Ten times its own usual error is novel for either.
    assert fit.score("noisy", 100 * 10.0) > 90


def test_a_target_without_enough_history_has_no_novelty_yet():
    raw = _fleet(np.random.default_rng(1))
    raw["new"] = np.ones(MIN_WINDOWS - 1)
    fit = FleetNovelty.fit(raw)
    assert fit.score("new", 50.0) is None and fit.score("unknown", 1.0) is None
    assert fit.score("quiet", np.nan) is None
    with pytest.raises(ValueError, match="at least"):
        FleetNovelty.fit({"new": np.ones(3)})


def test_round_trips_through_json():
    fit = FleetNovelty.fit(_fleet(np.random.default_rng(3)))
    again = FleetNovelty.from_dict(fit.as_dict())
    assert again.scales == fit.scales and again.windows == fit.windows == 192
    assert again.score("quiet", 1.0) == pytest.approx(fit.score("quiet", 1.0))


def test_unrecognised_is_never_learnt_as_a_scenario():
    from models.anomaly.datamodule import WindowShape
    from models.anomaly.detector import Window
    from models.anomaly.logmining import LogMiner
    from models.anomaly.novelty import NOVEL_SCENARIO
    from models.anomaly.userlabels import LabeledWindow, user_groups

    shape = WindowShape(window_steps=12, patch_steps=4, step_seconds=15)
    w = Window("vm-1", "vm", 1_736_121_600.0, np.ones((12, 2), np.float32), [])
    classes = ["normal"]
    windows = [LabeledWindow(w, "anomaly", NOVEL_SCENARIO)]
    groups, _ = user_groups(windows, shape, classes, LogMiner())
    assert classes == ["normal"]
    assert (groups[0].label == 1).all() and (groups[0].scenario == -1).all()


def test_names_people_gave_only_to_normal_windows_are_expected():
    from models.anomaly.detector import Window
    from models.anomaly.novelty import NOVEL_SCENARIO
    from models.anomaly.userlabels import LabeledWindow, expected_names

    w = Window("vm-1", "vm", 0.0, np.ones((12, 2), np.float32), [])
    labels = [
        LabeledWindow(w, "expected", "nightly_backup"),
        LabeledWindow(w, "normal", "deploy"),  # a false positive, with its cause
        LabeledWindow(w, "anomaly", "disk_full"),
        LabeledWindow(w, "normal", "disk_full"),  # named as a fault elsewhere: not expected
        LabeledWindow(w, "expected", None),
        LabeledWindow(w, "normal", NOVEL_SCENARIO),
    ]
    assert expected_names(labels) == {"nightly_backup", "deploy"}


def _metric_errors(rng, n=96, metrics=3, odd=None):
    # Each metric's usual error about 0.1; ``odd``: a metric forecast 100 times worse all
    # the time (a VM whose virtual NICs send 0 bytes/s, which no training fleet did).
    e = rng.gamma(2.0, 0.05, (n, metrics))
    if odd is not None:
        e[:, odd] *= 100
    return e


def test_one_metric_always_forecast_badly_does_not_hide_the_others():
    rng = np.random.default_rng(4)
    errors = {f"vm-{i}": _metric_errors(rng) for i in range(6)}
    errors["lab-vm"] = _metric_errors(rng, odd=0)
    per_metric = FleetNovelty.fit(errors)
    one_each = FleetNovelty.fit({t: e.max(axis=1) for t, e in errors.items()})
    # Its CPU (metric 1) forecast 30 times worse than usual; the odd metric as always.
    window = np.array([10.0, 3.0, 0.1])
    assert per_metric.score("lab-vm", window.max(), window) > 90
    assert one_each.score("lab-vm", window.max()) < 60
    # Its ordinary windows stay ordinary, and the same jump is novel on any other VM.
    assert per_metric.score("lab-vm", 10.0, np.array([10.0, 0.1, 0.1])) < 60
    assert per_metric.score("vm-0", 3.0, np.array([0.1, 3.0, 0.1])) > 90


def test_a_metric_a_target_forecasts_perfectly_is_held_to_the_fleets_usual():
    rng = np.random.default_rng(5)
    errors = {f"vm-{i}": _metric_errors(rng) for i in range(6)}
    errors["flat"] = _metric_errors(rng)
    errors["flat"][:, 2] = 1e-6  # a constant series, forecast exactly
    fit = FleetNovelty.fit(errors)
    usual = fit.usual(["flat", "vm-0", "unknown"])
    # Floored at the fleet's median (about 0.08 here), the lowest any target is held to.
    assert usual[0, 2] > 0.05 and usual[0, 2] == min(u[2] for u in fit.metric_scales.values())
    assert np.isnan(usual[2]).all()
    # An error the fleet calls ordinary on that metric is ordinary for it too.
    assert fit.score("flat", 0.1, np.array([0.1, 0.1, 0.15])) < 60
    # A metric a target does not send (error 0 everywhere) does not lower the fleet's floor.
    errors["vm-5"][:, 1] = 0.0
    assert FleetNovelty.fit(errors).metric_scales["vm-5"][1] > 0.05


def test_a_per_metric_fit_round_trips_and_needs_each_metrics_error():
    rng = np.random.default_rng(6)
    fit = FleetNovelty.fit({f"vm-{i}": _metric_errors(rng) for i in range(3)})
    again = FleetNovelty.from_dict(fit.as_dict())
    assert again.metric_scales == fit.metric_scales and again.windows == 3 * 96
    window = np.array([0.2, 0.9, 0.1])
    assert again.score("vm-1", 0.9, window) == pytest.approx(fit.score("vm-1", 0.9, window))
    with pytest.raises(ValueError, match="each metric"):
        fit.score("vm-1", 0.9)
    with pytest.raises(ValueError, match="metric errors against"):
        fit.score("vm-1", 0.9, np.ones(4))
    with pytest.raises(ValueError, match="all"):
        FleetNovelty.fit({"a": np.ones((20, 3)), "b": np.ones(20)})


def test_targets_forecast_badly_as_usual_are_named_with_their_metric():
    rng = np.random.default_rng(7)
    errors = {f"vm-{i}": _metric_errors(rng) for i in range(6)}
    errors["lab-vm"] = _metric_errors(rng, odd=0)
    fit = FleetNovelty.fit(errors)
    assert fit.forecast_badly() == [("lab-vm", "metric 0", pytest.approx(100, rel=0.5))]
    fit.metric_names = ["network_in", "cpu", "memory"]
    again = FleetNovelty.from_dict(fit.as_dict())
    assert [row[:2] for row in again.forecast_badly()] == [("lab-vm", "network_in")]
    # Without per-metric usual errors there is nothing to compare.
    assert FleetNovelty.fit({t: e.max(axis=1) for t, e in errors.items()}).forecast_badly() == []
