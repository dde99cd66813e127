"""Attribution scored against what the simulator's cases really did."""

from __future__ import annotations

import numpy as np
import pytest

from models.anomaly.attribution_eval import (
    attribution_note,
    chance_hit,
    changed_metrics,
    deviation_metrics,
    deviation_templates,
    evaluate_attribution,
    explained_cases,
    hits,
)
from models.anomaly.features import fit_spec
from models.anomaly.metrics import Segment
from models.anomaly.pipeline import Scored
from models.anomaly.train import ModelConfig, TrainConfig, train


@pytest.fixture(scope="module")
def trained_quick(tmp_path_factory):
    model = ModelConfig(fast_dev_run=True, d_model=16, ff=32, batch_size=64)
    out = tmp_path_factory.mktemp("anomaly")
    return train(TrainConfig.quick(out_dir=str(out), model=model, test_seed=424243))


def test_a_scenario_changes_the_metrics_its_catalogue_entry_names():
    assert changed_metrics("cpu_hog", "vm") == {
        "vm_cpu_utilization_ratio",
        "vm_request_latency_seconds",
        "vm_requests_per_second",
    }
    assert changed_metrics("cpu_hog", "host") == set()


def test_deviation_ranks_the_metric_that_left_its_history_first():
    rng = np.random.default_rng(0)
    values = rng.normal(10.0, 1.0, (240, 3)).astype(np.float32)
    spec = fit_spec(values[None].repeat(2, 0), ["a", "b", "c"])
    values[-20:, 1] += 8.0
    values[:, 2] = np.nan  # a metric the target does not export is ranked last, not an error
    ranked = deviation_metrics(values, spec, "t", patch=20)
    assert ranked[0][0] == "b" and "c" not in [n for n, _ in ranked]
    assert sum(share for _, share in ranked) == pytest.approx(1.0)


def test_deviation_ranks_a_template_new_in_the_last_patch_first():
    texts = ["heartbeat ok", "disk <*> failed", "GET /api <*>"]
    step = np.array([5, 50, 100, 230, 231, 235, 236])
    template = np.array([0, 0, 2, 0, 1, 1, 2])
    count = np.array([3, 3, 1, 3, 2, 4, 1])
    ranked = deviation_templates(step, template, count, window=240, patch=20, texts=texts)
    assert ranked[0][0] == "disk <*> failed"
    assert "GET /api <*>" in [n for n, _ in ranked]  # in the last patch, but seen before


def test_hits_and_chance():
    ranked = [("a", 0.5), ("b", 0.3), ("c", 0.2)]
    assert hits(ranked, {"c"}, 3) and not hits(ranked, {"c"}, 2) and not hits([], {"a"}, 3)
    assert chance_hit(10, 1, 3) == pytest.approx(0.3)
    assert chance_hit(4, 2, 3) == pytest.approx(1.0)
    assert chance_hit(0, 1, 3) == 0.0 and chance_hit(5, 0, 3) == 0.0


def _scored(calibrated: list[float], target: int = 0) -> Scored:
    n = len(calibrated)
    return Scored(
        group="vm",
        keys=np.stack([np.full(n, target), np.arange(n) + 240], axis=1),
        targets=["vm:a", "vm:b"],
        times=1000.0 + 300.0 * np.arange(n),
        raw=np.asarray(calibrated, float),
        label=np.zeros(n),
        calibrated=np.asarray(calibrated, float),
    )


def test_a_case_counts_only_through_flagged_windows_of_its_own_target():
    s = _scored([10, 80, 90, 20, 95])
    inside = Segment(frozenset(["vm:a"]), 1200.0, 2000.0, "anomaly", "cpu_hog", 1)
    other = Segment(frozenset(["vm:b"]), 1000.0, 3000.0, "anomaly", "cpu_hog", 2)
    decoy = Segment(frozenset(["vm:a"]), 1000.0, 3000.0, "deceptive", "nightly_backup", 3)
    missed = Segment(frozenset(["vm:a"]), 1800.0, 2000.0, "anomaly", "cpu_hog", 4)
    cases = explained_cases([s], [inside, other, decoy, missed], {"vm": 50.0})
    assert len(cases) == 1
    seg, _, idx, weights = cases[0]
    assert seg.case_id == 1 and list(idx) == [1, 2] and list(weights) == [80, 90]


def test_attribution_on_a_simulated_fleet_is_scored_for_every_detected_case(trained_quick):
    det, val = trained_quick.detector, trained_quick.data["val"]
    specs = trained_quick.data["specs"]
    W, P = det.window_steps, det.shape.patch_steps
    scored = []
    for g in (val.vm, val.host):
        ends = np.arange(W, g.values.shape[0] + 1, P)
        keys = np.array([(t, e) for t in range(len(g.target_names)) for e in ends])
        scored.append(
            Scored(g.name, keys, list(g.target_names), g.window_end_ts(keys[:, 1], keys[:, 0]),
                   np.zeros(len(keys)), np.zeros(len(keys)), calibrated=np.full(len(keys), 60.0))
        )  # fmt: skip
    # Every window flagged: each anomaly case with a window of its own is explained.
    levels = {"vm": 50.0, "host": 50.0}
    figures = evaluate_attribution(
        det, {"vm": val.vm, "host": val.host}, specs, scored, val.segments, levels,
        val.case_templates,
    )  # fmt: skip
    expected = len(explained_cases(scored, val.segments, levels))
    assert figures["cases_explained"] == expected > 0
    assert 0 < figures["cases_with_lines"] <= expected
    for method in ("telltale", "deviation"):
        for key in ("metric_hit_at_1", "metric_hit_at_3", "template_hit_at_3"):
            assert 0.0 <= figures[method][key] <= 1.0
        assert figures[method]["metric_hit_at_1"] <= figures[method]["metric_hit_at_3"]
    assert 0.0 < figures["chance"]["metric_hit_at_3"] < 1.0
    # The model-free ranking of the same windows finds what the cases changed more often
    # than chance: the truth sets (catalogue metrics, the case's own lines) are the right ones.
    for key in ("metric_hit_at_3", "template_hit_at_3"):
        assert figures["deviation"][key] > figures["chance"][key]
    assert f"attribution of {expected} detected anomaly cases" in attribution_note(figures)
    # The case templates are the mined lines the case wrote, so some window holds them.
    assert any(val.case_templates.values())


def test_root_cause_labels_are_read_in_window_end_time(tmp_path):
    from models.anomaly.datasets import series_group, with_history
    from models.anomaly.datasets.smd import root_causes

    history = series_group("machine", np.zeros((50, 4)), 60, "m")
    test, hist = with_history(history, series_group("machine", np.zeros((30, 4)), 60, "m"), 9)
    (tmp_path / "m.txt").write_text("3-6:2,4\n25-40:1\n")
    [seg] = root_causes(tmp_path, "m", test, hist, end_inclusive=False, rows=30)
    assert seg["metrics"] == ["machine_2", "machine_4"]
    assert seg["start"] == test.ts[hist + 3] + 60 and seg["end"] == test.ts[hist + 5] + 60
    [inclusive] = root_causes(tmp_path, "m", test, hist, end_inclusive=True, rows=30)
    assert inclusive["end"] == test.ts[hist + 6] + 60
    assert root_causes(None, "m", test, hist, False, 30) == []
    assert root_causes(tmp_path, "absent", test, hist, False, 30) == []


class _Ranker:
    """A detector stand-in whose attribution always ranks the metrics in one order."""

    window_steps = 12

    class shape:  # mirrors AnomalyDetector.shape
        patch_steps = 4

    def __init__(self, order):
        self.order = order

    def explain_group(self, group, keys, spec, top=5):
        shares = [(n, 1.0 / (i + 1)) for i, n in enumerate(self.order)][:top]
        return [(shares, []) for _ in range(len(keys))]


def test_root_cause_hit_rate_counts_labelled_metrics_among_the_top_ranked():
    from models.anomaly.attribution_eval import pooled_root_cause, root_cause_hits
    from models.anomaly.datasets import series_group

    rng = np.random.default_rng(0)
    values = rng.normal(0, 1, (40, 4)).astype(np.float32)
    group = series_group("machine", values, 60, "m")
    spec = fit_spec(values[:, None], group.metric_names)
    n = 10
    keys = np.stack([np.zeros(n, int), np.arange(n) + 20], axis=1)
    scored = Scored("machine", keys, ["m"], group.window_end_ts(keys[:, 1]), np.zeros(n),
                    np.zeros(n), calibrated=np.r_[np.full(5, 10.0), np.full(5, 90.0)])  # fmt: skip
    t = scored.times
    labelled = [
        {"start": t[5], "end": t[9], "metrics": ["machine_2", "machine_4"]},
        {"start": t[0], "end": t[4], "metrics": ["machine_1"]},  # never flagged: not counted
    ]
    det = _Ranker(["machine_2", "machine_1", "machine_4", "machine_3"])
    part = root_cause_hits(det, group, spec, scored, 50.0, labelled)
    assert part["segments"] == 1
    assert part["sums"]["telltale"] == [0.5, 1.0]  # the top 2 hold one of the two, the top 3 both
    assert part["sums"]["chance"] == [0.5, 0.75]
    empty = {"segments": 0, "sums": {m: [0.0, 0.0] for m in part["sums"]}}  # nothing found
    pooled = pooled_root_cause([part, empty])
    assert pooled["segments_detected"] == 1 and pooled["telltale"]["hit_rate_100"] == 0.5
    assert pooled_root_cause([empty]) is None
