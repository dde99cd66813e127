"""The promoted anomaly model scores live data from the store, idempotently, and its
events become anomalies, incident signals and training labels."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ingest.simulator import ScenarioRates, SimConfig, Simulator
from tests.conftest import artefact_alarming_at, promote_artefact, recent_anomaly
from webapp.detection import labels, scoring, services
from webapp.detection.models import Anomaly, ModelVersion
from webapp.telemetry import query
from webapp.telemetry.models import Instance, Node
from webapp.telemetry.simulation import backfill
from webapp.telemetry.stats import ingest_stats


@pytest.fixture
def live_fleet(store):
    now = int(time.time())
    start = (now - 2 * 3600) // 60 * 60
    sim = Simulator(
        SimConfig(
            seed=21,
            n_nodes=2,
            n_instances=8,
            start=start,
            hours=3.0,
            rates=ScenarioRates(12.0, 0.5, 6.0),
        )
    )
    backfill(sim)
    ingest_stats.flush()
    return sim


def test_scoring_writes_scores_and_is_idempotent(live_fleet, anomaly_artefact):
    version = promote_artefact("anomaly", anomaly_artefact)
    now_ms = int(time.time() * 1000)
    first = scoring.score_fleet(now_ms)
    assert first["scored"] == Instance.objects.count() + Node.objects.count() > 0
    series = query.select("telltale_anomaly_score")
    assert len(series) == first["scored"]
    assert {s.labels["level"] for s in series} == {"vm", "host"}
    anomalies = Anomaly.objects.count()
    again = scoring.score_fleet(now_ms)
    assert again["scored"] == first["scored"] and Anomaly.objects.count() == anomalies
    data = query.get_store().read_raw([s.id for s in series], now_ms - 120_000, now_ms + 1)
    assert all(len(ts) == 1 for ts, _ in data.values())  # one score per target and minute
    for a in Anomaly.objects.all():
        assert a.model_version == version and 0 <= a.score <= 100
        assert a.attribution["metrics"] and all(
            0 <= share <= 1 for _, share in a.attribution["metrics"]
        )


def _always_alarming(anomaly_artefact, tmp_path):
    return artefact_alarming_at(anomaly_artefact, tmp_path, 0.0)


def test_the_first_promotion_scores_the_hours_before_it_without_paging_anyone(
    live_fleet,
    anomaly_artefact,
    tmp_path,
    django_capture_on_commit_callbacks,
    monkeypatch,
    viewer_client,
):
    """A new install's anomaly list and score charts do not begin at the promotion: the
    first anomaly version scores the fleet's recent hours after the fact, every 5 minutes.
    Those anomalies are marked backfilled and raise no incident signal; one still under way
    at the promotion is left open, and the first live round that flags it extends it."""
    from django.urls import reverse

    from webapp.detection import versions
    from webapp.incidents.models import Signal
    from workers import tasks

    queued, calibrations = [], []
    monkeypatch.setattr(tasks.backfill_anomalies, "delay", queued.append)
    monkeypatch.setattr(tasks.calibrate_novelty, "delay", calibrations.append)
    with django_capture_on_commit_callbacks(execute=True):
        version = promote_artefact("anomaly", _always_alarming(anomaly_artefact, tmp_path))
    assert queued == [version.pk] and calibrations == [version.pk]
    counts = scoring.backfill(version.pk, hours=2)
    targets = Instance.objects.count() + Node.objects.count()
    promoted_ms = int(version.promoted_at.timestamp() * 1000) // 60_000 * 60_000
    # Windows ending every 5 minutes in the two hours before the promotion, each target's
    # first few empty (the simulated history starts two hours back).
    assert 18 * targets <= counts["scored"] <= 23 * targets
    series = query.select("telltale_anomaly_score")
    assert len(series) == targets
    data = query.get_store().read_raw([s.id for s in series], 0, promoted_ms + 1)
    stamps = {int(t) for ts, _ in data.values() for t in ts}
    assert max(stamps) < promoted_ms and all(t % 300_000 == promoted_ms % 300_000 for t in stamps)
    # Every window alarms: one unbroken anomaly per target, under way at the promotion, and
    # none of them paging.
    assert counts["opened"] == targets == Anomaly.objects.filter(backfilled=True).count()
    assert set(Anomaly.objects.values_list("status", flat=True)) == {Anomaly.OPEN}
    assert not Signal.objects.exists()
    # Each names what moved, even where every window of it scored 0 (the level is 0 here).
    assert all(a.attribution["metrics"] for a in Anomaly.objects.all())
    a = Anomaly.objects.filter(level="vm").first()
    assert a.model_version == version and a.raw_score != 0
    page = viewer_client.get(reverse("anomaly_detail", args=[a.pk])).content.decode()
    assert 'id="backfilled"' in page
    listing = viewer_client.get(reverse("anomaly_list"), {"range": "24h"}).content.decode()
    assert listing.count(">backfilled</span>") == targets
    # Again: nothing new.
    assert scoring.backfill(version.pk, hours=2)["opened"] == 0
    assert Anomaly.objects.count() == targets
    assert len(query.get_store().read_raw([s.id for s in series], 0, promoted_ms + 1)) == targets
    # The first live round flags them still: the same anomalies, now live, and signalled
    # from when they began.
    scoring.score_fleet(promoted_ms + 60_000)
    assert Anomaly.objects.count() == targets and not Anomaly.objects.filter(backfilled=True)
    assert Anomaly.objects.get(pk=a.pk).start == a.start
    assert Signal.objects.filter(kind="anomaly").count() == targets
    # A later promotion does not score the past again.
    later = ModelVersion.objects.create(
        kind="anomaly", version=2, training_state="succeeded", artefact_path=anomaly_artefact
    )
    with django_capture_on_commit_callbacks(execute=True):
        versions.promote(later)
    assert queued == [version.pk]


def test_a_backfill_finishing_after_the_first_live_round_moves_its_anomalies_start_back(
    live_fleet, anomaly_artefact, tmp_path
):
    version = promote_artefact("anomaly", _always_alarming(anomaly_artefact, tmp_path))
    promoted_ms = int(version.promoted_at.timestamp() * 1000) // 60_000 * 60_000
    scoring.score_fleet(promoted_ms + 60_000)
    targets = Instance.objects.count() + Node.objects.count()
    live = {a.pk: a.start for a in Anomaly.objects.all()}
    assert len(live) == targets
    assert scoring.backfill(version.pk, hours=1)["opened"] == 0
    for a in Anomaly.objects.all():
        assert not a.backfilled and a.status == Anomaly.OPEN
        assert (live[a.pk] - a.start).total_seconds() >= 55 * 60  # began an hour earlier


def test_backfilled_anomalies_that_ended_before_the_promotion_are_closed_and_never_signal(
    live_fleet, anomaly_artefact, tmp_path
):
    from datetime import timedelta

    from webapp.incidents.models import Signal

    version = promote_artefact("anomaly", _always_alarming(anomaly_artefact, tmp_path))
    # Promoted 70 minutes after the last sample: its windows stop holding data 10 minutes
    # before the promotion, so every event ended before it.
    promoted_at = version.promoted_at + timedelta(minutes=70)
    ModelVersion.objects.filter(pk=version.pk).update(promoted_at=promoted_at)
    targets = Instance.objects.count() + Node.objects.count()
    assert scoring.backfill(version.pk, hours=3)["opened"] == targets
    assert set(Anomaly.objects.values_list("status", flat=True)) == {Anomaly.CLOSED}
    assert all(a.end < promoted_at - timedelta(minutes=5) for a in Anomaly.objects.all())
    scoring.score_fleet(int(promoted_at.timestamp() * 1000) + 60_000)
    assert not Signal.objects.exists()


def test_without_a_promoted_model_nothing_is_scored(live_fleet):
    assert scoring.score_fleet()["scored"] == 0


def _labelled_anomaly(artefact, actor, label: str, scenario: str = "") -> Anomaly:
    """An anomaly on the fleet's first instance that ended five minutes ago, labelled."""
    return services.label_anomaly(recent_anomaly(artefact), label, scenario, actor=actor)


def test_labels_become_training_windows(live_fleet, anomaly_artefact, users):
    instance = _labelled_anomaly(anomaly_artefact, users.operator, "false_positive").instance
    judged = labels.judgements()
    assert [(j.label, j.target_id) for j in judged] == [("normal", instance.pk)]
    from ingest.simulator import HOST_METRIC_NAMES, VM_METRIC_NAMES

    windows = labels.labelled_windows(
        {"vm": list(VM_METRIC_NAMES), "host": list(HOST_METRIC_NAMES)}, 240, 15
    )
    assert len(windows) == 1 and windows[0].label == "normal"
    assert windows[0].window.metrics.shape == (240, len(VM_METRIC_NAMES))
    assert (windows[0].window.metrics == windows[0].window.metrics).any()


def test_labelling_needs_the_operator_role(viewer_client, operator_client, anomaly_artefact, db):
    from django.urls import reverse

    version = promote_artefact("anomaly", anomaly_artefact)
    node = Node.objects.create(name="n")
    from django.utils import timezone

    anomaly = Anomaly.objects.create(
        level="host",
        node=node,
        start=timezone.now(),
        end=timezone.now(),
        score=70,
        model_version=version,
    )
    url = reverse("anomaly_label", args=[anomaly.pk])
    assert viewer_client.post(url, {"label": "true_positive"}).status_code == 403
    operator_client.post(url, {"label": "expected", "scenario": "scheduled_backup"})
    anomaly.refresh_from_db()
    assert (anomaly.label, anomaly.label_scenario) == ("expected", "scheduled_backup")
    page = viewer_client.get(reverse("anomaly_detail", args=[anomaly.pk]))
    assert page.status_code == 200


def test_an_open_anomalys_page_shows_no_empty_future(viewer_client, anomaly_artefact, db):
    from datetime import timedelta

    from django.urls import reverse
    from django.utils import timezone

    version = promote_artefact("anomaly", anomaly_artefact)
    node = Node.objects.create(name="n")
    now = timezone.now()
    open_now = Anomaly.objects.create(
        level="host",
        node=node,
        start=now - timedelta(minutes=5),
        end=now,
        score=70,
        model_version=version,
    )
    page = viewer_client.get(reverse("anomaly_detail", args=[open_now.pk]))
    tr = page.context["tr"]
    assert tr.end_ms <= int((timezone.now() + timedelta(minutes=1)).timestamp() * 1000) + 1
    assert tr.start_ms == int((open_now.start - timedelta(minutes=30)).timestamp() * 1000)
    old = Anomaly.objects.create(
        level="host",
        node=node,
        start=now - timedelta(days=1),
        end=now - timedelta(hours=23),
        score=70,
        model_version=version,
    )
    tr = viewer_client.get(reverse("anomaly_detail", args=[old.pk])).context["tr"]
    assert tr.end_ms == int((old.end + timedelta(hours=1)).timestamp() * 1000)  # padded as before


def test_a_stopped_instance_is_not_kept_alive_by_its_own_scores(live_fleet, anomaly_artefact):
    """Scoring writes telltale_anomaly_score for each target; that must not count as the
    target being seen, or a stopped instance would be scored (and "seen") forever. A target
    whose window holds no sample and no log line is not scored at all."""
    from datetime import timedelta

    from django.utils import timezone

    promote_artefact("anomaly", anomaly_artefact)
    stopped = Instance.objects.create(
        name="stopped-vm",
        node=Node.objects.first(),
        last_seen=timezone.now() - timedelta(minutes=2),
    )
    counts = scoring.score_fleet()
    assert counts["without_data"] == 1
    assert "stopped-vm" not in {s.labels.get("vm") for s in query.select("telltale_anomaly_score")}
    # Derived series written for it (as a round before this fix would have) leave it unseen.
    from ingest.types import MetricBatch, SeriesSamples
    from webapp.telemetry import writer

    labels = (("__name__", "telltale_anomaly_score"), ("level", "vm"), ("vm", "stopped-vm"))
    now_ms = int(time.time() * 1000)
    writer.write_metrics(
        MetricBatch(series=[SeriesSamples(labels, [now_ms], [50.0])]),
        source=writer.DERIVED_SOURCE,
        client="anomaly",
    )
    ingest_stats.flush()
    stopped.refresh_from_db()
    assert stopped.last_seen < timezone.now() - timedelta(minutes=1)


def test_a_label_stays_training_data_after_its_telemetry_ages_out(
    live_fleet, anomaly_artefact, users, store
):
    """Retention deletes samples and logs; the judgement's snapshot keeps the window, so the
    next model version still learns from it. Withdrawing the label drops the snapshot."""
    from ingest.simulator import HOST_METRIC_NAMES, VM_METRIC_NAMES
    from webapp.detection.models import LabelSnapshot
    from webapp.telemetry.models import LogRecord
    from workers.tasks import snapshot_labels

    names = {"vm": list(VM_METRIC_NAMES), "host": list(HOST_METRIC_NAMES)}
    anomaly = _labelled_anomaly(anomaly_artefact, users.operator, "expected", "scheduled_backup")
    instance = anomaly.instance
    before = labels.labelled_windows(names, 240, 15)
    assert snapshot_labels() == 0  # labelled_windows took it already
    assert LabelSnapshot.objects.count() == 1
    store.truncate()  # what retention does to the samples and logs of that time
    LogRecord.objects.all().delete()
    after = labels.labelled_windows(names, 240, 15)
    assert len(after) == 1 and (after[0].label, after[0].scenario) == (
        "expected",
        "scheduled_backup",
    )
    np.testing.assert_array_equal(after[0].window.metrics, before[0].window.metrics)
    assert after[0].window.logs == [tuple(x) for x in before[0].window.logs]
    assert after[0].window.target == instance.name
    # A longer window than the snapshot holds, or another step, is not made up.
    assert labels.labelled_windows(names, 960, 15) == []
    assert labels.labelled_windows(names, 240, 30) == []
    # Withdrawn: the snapshot goes too.
    anomaly.label = ""
    anomaly.save(update_fields=["label"])
    snapshot_labels()
    assert not LabelSnapshot.objects.exists()


def test_an_anomalys_page_links_to_its_incident(viewer_client, anomaly_artefact, db):
    from datetime import timedelta

    from django.urls import reverse
    from django.utils import timezone

    from webapp.incidents.services import record_signal

    version = promote_artefact("anomaly", anomaly_artefact)
    node = Node.objects.create(name="n")
    now = timezone.now()
    anomalies = [
        Anomaly.objects.create(
            level="host",
            node=node,
            start=now - timedelta(minutes=m),
            end=now,
            score=70,
            model_version=version,
        )
        for m in (5, 4)
    ]
    alone = Anomaly.objects.create(
        level="host",
        node=Node.objects.create(name="m"),
        start=now,
        end=now,
        score=70,
        model_version=version,
    )
    page = viewer_client.get(reverse("anomaly_detail", args=[alone.pk]))
    assert page.context["incident"] is None and "not correlated into one" in page.text
    for a in anomalies:  # two signals on one node make an incident
        record_signal("anomaly", a.pk, title="anomaly", start=a.start, node=node)
    page = viewer_client.get(reverse("anomaly_detail", args=[anomalies[0].pk]))
    incident = page.context["incident"]
    assert incident is not None
    assert f'href="{reverse("incident_detail", args=[incident.pk])}"' in page.text


def test_a_node_that_sends_only_node_exporter_series_is_scored(store, anomaly_artefact):
    """Pointed at Telltale with nothing but node_exporter, a node is scored on the host
    metrics derived from it, not skipped as a target without data."""
    from ingest.types import MetricBatch
    from tests.conftest import series_samples
    from webapp.telemetry import writer

    promote_artefact("anomaly", anomaly_artefact)
    now_ms = int(time.time() * 1000)
    scrapes = range(now_ms - 3_600_000, now_ms, 15_000)
    labels = {"instance": "db1.example:9100", "job": "node"}
    series = [
        series_samples(
            "node_cpu_seconds_total",
            {**labels, "cpu": "0", "mode": mode},
            [(t, share * t / 1000) for t in scrapes],
        )
        for mode, share in (("idle", 0.6), ("iowait", 0.02), ("steal", 0.0))
    ]
    series += [
        series_samples(name, labels, [(t, value) for t in scrapes])
        for name, value in (
            ("node_memory_MemAvailable_bytes", 3e9),
            ("node_memory_MemTotal_bytes", 8e9),
            ("node_load1", 0.8),
        )
    ]
    writer.write_metrics(MetricBatch(series=series), source="remote_write", client="t")
    ingest_stats.flush()
    counts = scoring.score_fleet(now_ms)
    assert counts["without_data"] == 0 and counts["scored"] == 1
    (score,) = query.select("telltale_anomaly_score")
    assert score.labels == {"level": "host", "node": "db1.example"}


def test_a_target_alarms_only_once_its_telemetry_fills_half_the_models_window(
    live_fleet, anomaly_artefact, tmp_path
):
    """A node that began sending minutes ago gives the model an hour of silence and then
    everything at once: it is scored and charted, but alarms only once its history fills
    half the window (the demo's own node scored 100 with 7 minutes of it)."""
    from ingest.types import MetricBatch
    from tests.conftest import series_samples
    from webapp.telemetry import writer

    promote_artefact("anomaly", _always_alarming(anomaly_artefact, tmp_path))
    detector = scoring._load(anomaly_artefact)
    window_ms = detector.window_steps * detector.step_seconds * 1000
    now_ms = int(time.time() * 1000) // 60_000 * 60_000

    def send(since_ms):
        points = [(t, 0.4) for t in range(since_ms, now_ms, 15_000)]
        batch = MetricBatch(
            series=[series_samples("host_cpu_utilization_ratio", {"node": "fresh"}, points)]
        )
        writer.write_metrics(batch, source="test", client="t")
        ingest_stats.flush()

    send(now_ms - int(0.4 * window_ms))
    counts = scoring.score_fleet(now_ms)
    assert counts["warming_up"] == 1
    assert counts["scored"] == Instance.objects.count() + Node.objects.count()
    fresh = Node.objects.get(name="fresh")
    assert not Anomaly.objects.filter(node=fresh).exists()
    assert Anomaly.objects.filter(node__isnull=False).exclude(node=fresh).exists()
    (alarm,) = query.select('telltale_anomaly_alarm{node="fresh",level="host"}')
    ((_, values),) = query.get_store().read_raw([alarm.id], now_ms, now_ms + 1).values()
    assert list(values) == [0.0]
    assert query.select('telltale_anomaly_score{node="fresh",level="host"}')
    # With more than half a window of history, it is judged like the rest.
    send(now_ms - int(0.6 * window_ms))
    counts = scoring.score_fleet(now_ms + 60_000)
    assert counts["warming_up"] == 0 and Anomaly.objects.filter(node=fresh).exists()


def test_a_windows_history_share_counts_from_its_first_sample_or_log_line():
    from models.anomaly.detector import Window

    metrics = np.full((8, 2), np.nan, np.float32)
    metrics[4:, 1] = 1.0
    window = Window("n", "host", 800.0, metrics)  # 8 steps of 100 s: from 0 to 800
    assert scoring.history_share(window, 100) == 0.5
    window.logs.append((250.0, "sshd started"))
    assert scoring.history_share(window, 100) == 0.75
    metrics[0, 0] = 0.0
    assert scoring.history_share(window, 100) == 1.0


def test_a_fleet_replay_counts_what_a_version_would_have_raised_here(live_fleet, anomaly_artefact):
    from models.anomaly.detector import AnomalyDetector
    from models.anomaly.postprocess import Thresholds

    detector = AnomalyDetector.load(anomaly_artefact)
    now_ms = int(time.time() * 1000)
    targets = Instance.objects.count() + Node.objects.count()
    detector.thresholds = Thresholds(default=0.0)  # every window alarms
    (always,) = scoring.replay([detector], now_ms, hours=2)
    assert always["replay_targets"] == targets
    # Windows every 15 minutes over two hours of data: about eight per target.
    assert 7 * targets <= always["replay_windows"] <= 8 * targets
    assert always["replay_alarm_events"] == targets  # one unbroken alarm each
    detector.thresholds = Thresholds(default=101.0)  # none can
    (never,) = scoring.replay([detector], now_ms, hours=2)
    assert never["replay_windows"] == always["replay_windows"]
    assert never["replay_alarm_events"] == 0 and never["replay_alarms_per_target_day"] == 0
    # The simulator feed recorded what it injected: alarming always finds every fault,
    # never finds none.
    assert always["replay_faults"] == never["replay_faults"] > 0
    assert always["replay_recall"] == 1.0 and never["replay_recall"] == 0.0
    # Each event is listed, with the injected case it overlaps.
    assert len(always["events"]) == targets and never["events"] == []
    assert {(e["level"], e["target"]) for e in always["events"]} == {
        ("vm", i.name) for i in Instance.objects.all()
    } | {("host", n.name) for n in Node.objects.all()}
    assert any(e["case"].startswith("fault: ") for e in always["events"])
    # A version is replayed at the alarm levels admins chose, as it would be served here.
    services.set_anomaly_threshold("vm", 100)
    services.set_anomaly_threshold("host", 100)
    detector.thresholds = Thresholds(default=0.0)
    (held,) = scoring.replay([detector], now_ms, hours=2)
    assert held["replay_windows"] == always["replay_windows"]
    assert held["replay_alarm_events"] < always["replay_alarm_events"]
    assert not query.select("telltale_anomaly_score") and not Anomaly.objects.exists()


def test_a_new_version_is_replayed_beside_the_promoted_one_on_this_fleet(
    live_fleet, anomaly_artefact, tmp_path, settings, viewer_client
):
    """The promoted version's column is its own replay: a promoted copy that alarms on every
    window shows one unbroken alarm per target and every injected fault found, whatever the
    new version does."""
    from django.urls import reverse

    from webapp.detection import versions

    settings.VAR_DIR = tmp_path
    promote_artefact("anomaly", _always_alarming(anomaly_artefact, tmp_path))
    version = versions.create_version("anomaly", {"train": versions.PROFILES["quick"]["anomaly"]})
    version = versions.run_training(version.pk)
    assert version.training_state == "succeeded", version.error
    targets = Instance.objects.count() + Node.objects.count()
    windows = version.comparison["fleet_replay.replay_windows (same windows)"]
    assert windows["candidate"] == windows["promoted"] > 0
    assert version.metrics["fleet_replay.replay_targets"] == targets
    events = version.comparison["fleet_replay.replay_alarm_events (same windows)"]
    assert events["promoted"] == targets and events["candidate"] <= windows["candidate"]
    assert version.comparison["fleet_replay.replay_recall (same windows)"]["promoted"] == 1.0
    rate = version.comparison["fleet_replay.replay_alarms_per_target_day (same windows)"]
    assert rate["candidate"] >= 0 and rate["promoted"] >= 0
    # Alarm by alarm: the promoted copy alarmed on every target throughout, so each of the
    # new version's events overlaps one of its events, and its events on targets the new
    # version left alone are what promoting it would take away.
    replay = version.replay
    assert replay["promoted_version"] == 1 and len(replay["events"]) == events["candidate"]
    assert all(e["promoted_too"] for e in replay["events"])
    quiet = targets - len({(e["level"], e["target"]) for e in replay["events"]})
    assert len(replay["promoted_only"]) == quiet
    # The version's page lists them.
    body = viewer_client.get(reverse("model_detail", args=[version.pk])).content.decode()
    section = body.split('id="replayed-alarms"')[1]
    assert f"{len(replay['events'])} alarm event" in section
    assert f"{quiet} of the promoted version's would no longer be raised" in section
    assert quiet and replay["promoted_only"][0]["target"] in section.split('id="promoted-only"')[1]
