"""Training (fast_dev_run), the artefact, and the serving API on simulated windows."""

import json

import numpy as np
import pytest

from ingest.simulator import SimConfig, Simulator
from models.anomaly.detector import ARTEFACT_FILES, AnomalyDetector, Window
from models.anomaly.train import LabeledWindow, ModelConfig, TrainConfig, train

START = 1_736_121_600 + 10 * 86_400


@pytest.fixture(scope="module")
def sim_windows():
    """Windows of a small fleet the model never saw, with raw log text."""
    sim = Simulator(SimConfig(seed=424242, n_nodes=2, hours=2, start=START))
    chunk = sim.simulate_chunk(0, sim.n_steps)
    W = 240
    lines = list(sim.log_entries(chunk.logs))
    out = []
    for col, inst in enumerate(chunk.instance_idx[:6]):
        name = sim.fleet.instance_names[int(inst)]
        end = START + W * 15
        logs = [(e.ts_ns / 1e9, e.message) for e in lines if e.instance == name]
        out.append(Window(name, "vm", end, chunk.vm[:W, col], logs))
    node = sim.fleet.node_names[0]
    host_logs = [(e.ts_ns / 1e9, e.message) for e in lines if e.instance is None and e.node == node]
    out.append(Window(node, "host", START + W * 15, chunk.host[:W, 0], host_logs))
    return out


@pytest.fixture(scope="module")
def artefact(tmp_path_factory, sim_windows):
    out = tmp_path_factory.mktemp("anomaly")
    model = ModelConfig(fast_dev_run=True, d_model=16, ff=32, batch_size=64)
    extra = [
        LabeledWindow(sim_windows[0], "expected", "weekly_report_job"),
        LabeledWindow(sim_windows[1], "anomaly", "cpu_hog"),
    ]
    cfg = TrainConfig.quick(out_dir=str(out), model=model, extra_windows=extra, test_seed=424242)
    result = train(cfg)
    return result


def test_training_writes_a_self_contained_artefact(artefact):
    d = artefact.artefact_dir
    for name in ARTEFACT_FILES:
        assert (d / name).exists(), name
    config = json.loads((d / "config.json").read_text())
    assert config["net"]["vocab_size"] == 8192
    assert "weekly_report_job" in config["classes"]  # a user's scenario became a class
    # ... known as expected, like the catalogue's deceptive normals; a fault's name is not.
    assert {"weekly_report_job", "scheduled_backup", "rolling_deployment"} <= set(
        config["expected_classes"]
    )
    assert "cpu_hog" not in config["expected_classes"]
    metrics = json.loads((d / "metrics.json").read_text())
    assert len(metrics["data_hash"]) == 64
    assert 424242 not in (metrics["train_seed"], metrics["val_seed"])
    thresholds = json.loads((d / "thresholds.json").read_text())
    assert set(thresholds["groups"]) == {"vm", "host"}


def test_detector_scores_windows_with_raw_text(artefact, sim_windows):
    det = AnomalyDetector.load(artefact.artefact_dir)
    assert det.window_steps == 240 and det.step_seconds == 15
    assert len(det.metric_names["vm"]) == 19 and len(det.metric_names["host"]) == 17
    scores = det.score(sim_windows, explain="all")
    assert [s.target for s in scores] == [w.target for w in sim_windows]
    for s in scores:
        assert 0.0 <= s.score <= 100.0 and np.isfinite(s.raw)
        assert s.scenario in det.classes and 0.0 <= s.scenario_probability <= 1.0
        shares = [v for _, v in s.metrics]
        assert shares and sum(shares) <= 1 + 1e-6 and shares == sorted(shares, reverse=True)
    assert any(s.templates for s in scores)
    # Template texts (what the app stores) are accepted as well as raw lines; the serving
    # miner may generalise a cluster in between, so scores agree closely, not bit for bit.
    as_templates = [
        Window(w.target, w.level, w.end, w.metrics, [(t, det.template_text(m)) for t, m in w.logs])
        for w in sim_windows
    ]
    again = det.score(as_templates, explain="none")
    np.testing.assert_allclose([s.raw for s in scores], [s.raw for s in again], atol=0.02)


def test_detector_events_merge_consecutive_windows(artefact, sim_windows):
    det = AnomalyDetector.load(artefact.artefact_dir)
    w = sim_windows[0]
    series = [Window(w.target, "vm", w.end + 300 * k, w.metrics, w.logs) for k in range(5)]
    scores = det.score(series, explain="all")
    for s, v in zip(scores, (80, 85, 10, 90, 95), strict=True):
        s.score = float(v)
    events = det.events(scores, threshold=50, max_gap=0)
    assert [(e.start, e.end) for e in events] == [
        (w.end, w.end + 300),
        (w.end + 900, w.end + 1200),
    ]
    assert events[1].peak == 95 and events[0].metrics


def test_unknown_level_and_bad_shape_are_refused(artefact, sim_windows):
    det = artefact.detector
    with pytest.raises(ValueError):
        det.score([Window("x", "pod", 0.0, np.zeros((240, 19), np.float32))])
    with pytest.raises(ValueError):
        det.score([Window("x", "vm", 0.0, np.zeros((240, 5), np.float32))])


def test_novelty_alarms_where_no_learnt_scenario_explains_the_window(artefact, sim_windows):
    from models.anomaly.novelty import NOVEL_SCENARIO, FleetNovelty
    from models.anomaly.postprocess import Thresholds

    det = AnomalyDetector.load(artefact.artefact_dir)
    w = sim_windows[2]
    plain = det.score([w], explain="none")[0]
    assert plain.novelty_raw is not None and plain.novelty is None and not plain.novel
    # The target's usual error is a tenth of this window's: novel at any level.
    usual = {w.target: np.full(40, plain.novelty_raw / 10.0) * np.linspace(0.9, 1.1, 40)}
    fleet = {"vm": FleetNovelty.fit(usual)}
    never = Thresholds(default=100.0, groups={"vm": 100.0, "host": 100.0})
    s = det.score([w], novelty=fleet, thresholds=never)[0]
    assert s.novelty == 100.0 and s.novel and s.is_anomalous
    assert s.scenario == NOVEL_SCENARIO and s.alarm_score == 100.0
    assert s.metrics and s.metrics[0][1] > 0  # explained by the forecast error
    # Above its novelty level only: the same window is quiet.
    strict = Thresholds(default=100.0, groups={"vm": 100.1})
    quiet = det.score([w], novelty=fleet, novelty_levels=strict, thresholds=never)[0]
    assert not quiet.is_anomalous and not quiet.novel and quiet.alarm_score == quiet.score
    # A window the scenario head takes for an expected scenario (here: every class counts
    # as expected, as a user's labels could make it) does not alarm on novelty.
    det.expected_classes = list(det.classes)
    known = det.score([w], novelty=fleet, thresholds=never)[0]
    assert not known.novel and not known.is_anomalous and known.novelty == 100.0


def test_per_metric_novelty_names_what_moved_against_the_targets_own_usual(artefact, sim_windows):
    from models.anomaly.novelty import FleetNovelty
    from models.anomaly.postprocess import Thresholds

    det = AnomalyDetector.load(artefact.artefact_dir)
    names = det.specs["vm"].metric_names
    w = sim_windows[2]
    err = np.asarray(det.score([w], explain="none")[0].novelty_errors)
    assert err.shape == (len(names),) and (err >= 0).all()
    worst = int(err.argmax())
    # Usually a tenth of this window's error on every metric, but as bad as now on its
    # worst one: that metric is how this target always is.
    usual = np.outer(np.linspace(0.9, 1.1, 40), err / 10.0)
    usual[:, worst] *= 10.0
    per_metric = {"vm": FleetNovelty.fit({w.target: usual})}
    one_each = {"vm": FleetNovelty.fit({w.target: usual.max(axis=1)})}
    never = Thresholds(default=100.0, groups={"vm": 100.0, "host": 100.0})
    # Against one usual error (its worst metric's), nothing is new; against each metric's,
    # every other metric is ten times its usual, and the worst is not what it names first.
    assert not det.score([w], novelty=one_each, thresholds=never)[0].novel
    s = det.score([w], novelty=per_metric, thresholds=never)[0]
    assert s.novel and s.novelty == 100.0
    assert s.metrics and s.metrics[0][0] != names[worst]
    # Where one usual error is low enough to call the window new, the worst metric leads.
    low = {"vm": FleetNovelty.fit({w.target: usual.max(axis=1) / 10.0})}
    assert det.score([w], novelty=low, thresholds=never)[0].metrics[0][0] == names[worst]


def test_training_hides_metrics_of_some_windows_while_fitting_only(tmp_path, monkeypatch):
    """The served training hides metrics in a share of its windows (fleets send what their
    exporters give); the error scale is then computed on the windows as they are."""
    from models.anomaly import datamodule

    assert TrainConfig().model.metric_dropout == 0.3
    calls = []

    def spy(values, share, rng):
        calls.append(share)

    monkeypatch.setattr(datamodule, "hide_metrics", spy)
    model = ModelConfig(fast_dev_run=True, d_model=16, ff=32, batch_size=64, metric_dropout=0.5)
    train(TrainConfig.quick(out_dir=str(tmp_path), model=model, test_seed=424242))
    assert calls and set(calls) == {0.5}
    assert len(calls) == 1  # the one fitting batch; the error scale reads windows as they are
    fitted = len(calls)
    model.metric_dropout = 0.0
    train(TrainConfig.quick(out_dir=str(tmp_path / "plain"), model=model, test_seed=424242))
    assert len(calls) == fitted  # no hiding without it
