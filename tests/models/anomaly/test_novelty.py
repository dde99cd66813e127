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
