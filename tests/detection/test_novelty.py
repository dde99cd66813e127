"""Novelty: the promoted anomaly model also alarms on behaviour none of its learnt scenarios
explains, judged against each target's own windows."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from models.anomaly.detector import AnomalyDetector
from models.anomaly.novelty import NOVEL_SCENARIO, FleetNovelty
from tests.conftest import (
    artefact_alarming_at,
    backfill_quiet_fleet,
    promote_artefact,
    recent_anomaly,
)
from webapp.detection import novelty, scoring
from webapp.detection.models import Anomaly, NoveltyCalibration
from webapp.telemetry import query
from webapp.telemetry.models import Instance, Node

EVERY = timedelta(minutes=5)


@pytest.fixture
def quiet_fleet(store):
    """Three hours of a small fleet without injected cases, up to now."""
    return backfill_quiet_fleet(hours=3.0, history_hours=3.0)


def _never_alarming(anomaly_artefact, tmp_path) -> str:
    """Supervised alarm levels no window reaches: any alarm is novelty's."""
    return artefact_alarming_at(anomaly_artefact, tmp_path, 101.0)


def test_novelty_is_fitted_on_each_targets_own_windows(quiet_fleet, anomaly_artefact):
    version = promote_artefact("anomaly", anomaly_artefact)
    # A version that does not exist: nothing to fit.
    assert novelty.fit(version.pk + 1000)["fitted"] == []
    out = novelty.fit(version.pk, hours=2, every=EVERY)
    assert sorted(out["fitted"]) == ["host", "vm"]
    rows = {r.level: r for r in NoveltyCalibration.objects.filter(version=version)}
    assert rows["vm"].targets == Instance.objects.count()
    assert rows["host"].targets == Node.objects.count()
    assert rows["vm"].windows == 24 * rows["vm"].targets  # every 5 minutes for two hours
    assert set(rows["vm"].data["scales"]) == set(Instance.objects.values_list("name", flat=True))
    # Each target's usual error of each metric the model reads.
    vm_metrics = len(AnomalyDetector.load(version.artefact_path).specs["vm"].metric_names)
    usual = rows["vm"].data["metric_scales"]
    assert set(usual) == set(rows["vm"].data["scales"])
    assert all(len(u) == vm_metrics and min(u) > 0 for u in usual.values())
    # Refitting replaces the fit; it never adds a second one.
    novelty.fit(version.pk, hours=2, every=EVERY)
    assert NoveltyCalibration.objects.filter(version=version).count() == 2
    # Too little history for any target: the level is skipped, and says why.
    short = novelty.fit(version.pk, hours=0.5, every=EVERY)
    assert short["fitted"] == [] and "at least" in short["skipped"]["vm"]
    assert NoveltyCalibration.objects.filter(version=version).count() == 2


def test_rounds_chart_novelty_and_alarm_on_it_where_no_scenario_explains_it(
    quiet_fleet, anomaly_artefact, tmp_path, settings
):
    from webapp.incidents.models import Signal

    version = promote_artefact("anomaly", _never_alarming(anomaly_artefact, tmp_path))
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    # Before the first fit: scored, nothing novel, no novelty series.
    first = scoring.score_fleet(now_ms - 120_000)
    assert first["scored"] > 0 and first["anomalous"] == 0
    assert not query.select("telltale_anomaly_novelty")
    novelty.fit(version.pk, hours=2, every=EVERY, now_ms=now_ms)
    settings.TELLTALE_NOVELTY_LEVEL = 1  # every window that is at all unusual alarms
    counts = scoring.score_fleet(now_ms)
    assert len(query.select("telltale_anomaly_novelty")) == counts["scored"]
    anomalies = list(Anomaly.objects.all())
    assert anomalies and counts["anomalous"] >= len(anomalies)
    for a in anomalies:
        assert a.scenario == NOVEL_SCENARIO and a.model_version == version
        assert a.score >= 1 and a.attribution["metrics"]  # the forecast error's metrics
    # Novelty pages as a warning, however high: it says "unlike before", not what is wrong.
    signals = Signal.objects.filter(kind="anomaly")
    assert signals.count() == len(anomalies)
    assert set(signals.values_list("severity", flat=True)) == {"warning"}
    # What the anomaly alert rules read is the score it alarmed on.
    alarm = query.select("telltale_anomaly_alarm")
    data = query.get_store().read_raw([s.id for s in alarm], now_ms, now_ms + 1)
    assert sum(v[0] > 0 for _, v in data.values()) == counts["anomalous"]


def test_novelty_alarms_can_be_turned_off(quiet_fleet, anomaly_artefact, tmp_path, settings):
    version = promote_artefact("anomaly", _never_alarming(anomaly_artefact, tmp_path))
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    novelty.fit(version.pk, hours=2, every=EVERY, now_ms=now_ms)
    settings.TELLTALE_NOVELTY_LEVEL = 0
    counts = scoring.score_fleet(now_ms)
    assert counts["anomalous"] == 0 and not Anomaly.objects.exists()
    assert len(query.select("telltale_anomaly_novelty")) == counts["scored"]  # still charted


def test_the_alarm_levels_page_shows_the_novelty_fit_and_tries_a_level(
    quiet_fleet, anomaly_artefact, viewer_client
):
    from django.urls import reverse

    version = promote_artefact("anomaly", anomaly_artefact)
    page = viewer_client.get(reverse("alarm_levels")).content.decode()
    assert "Not fitted yet" in page and 'data-field="novelty-level">95<' in page
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    novelty.fit(version.pk, hours=2, every=EVERY, now_ms=now_ms)
    scoring.score_fleet(now_ms)
    page = viewer_client.get(reverse("alarm_levels"), {"novelty": "1"}).content.decode()
    assert "Not fitted yet" not in page
    assert 'data-novelty="vm"' in page and 'data-novelty-backtest="host"' in page
    assert '>tried</th><td class="num">1.0</td>' in page
    # A VM whose usual network error is far beyond the fleet's is listed, worst first.
    row = NoveltyCalibration.objects.get(version=version, level="vm")
    fleet = FleetNovelty.from_dict(row.data)
    odd = sorted(fleet.metric_scales)[0]
    net = fleet.metric_names.index("vm_network_receive_bytes_per_second")
    fleet.metric_scales[odd][net] *= 1000
    NoveltyCalibration.objects.filter(pk=row.pk).update(data=fleet.as_dict())
    page = viewer_client.get(reverse("alarm_levels")).content.decode()
    listed = page.split('data-field="forecast-badly">')[1].split("</ul>")[0]
    assert listed.startswith(f"<li>{odd}: <code>vm_network_receive_bytes_per_second</code>")
    bad = viewer_client.get(reverse("alarm_levels"), {"novelty": "lots"})
    assert bad.status_code == 400 and "novelty: a number" in bad.content.decode()


def test_admins_set_a_novelty_level_for_a_cluster_and_only_its_targets_alarm_at_it(
    quiet_fleet, anomaly_artefact, tmp_path, settings, admin_client, operator_client
):
    from django.urls import reverse

    from webapp.core.models import AuditEvent
    from webapp.detection.models import AnomalyThreshold

    version = promote_artefact("anomaly", _never_alarming(anomaly_artefact, tmp_path))
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    novelty.fit(version.pk, hours=2, every=EVERY, now_ms=now_ms)
    settings.TELLTALE_NOVELTY_LEVEL = 100  # the fleet: only the most novel windows alarm
    first, second = Node.objects.order_by("name")[:2]
    Node.objects.filter(pk=second.pk).update(cluster="batch")  # two clusters of one node each
    cluster = first.cluster
    assert cluster != "batch" and all(node.instances.exists() for node in (first, second))
    form = {"signal": "novelty", "level": "vm", "cluster": cluster, "value": "1", "reason": "t"}
    assert operator_client.post(reverse("alarm_levels"), form).status_code == 403
    assert admin_client.post(reverse("alarm_levels"), form).status_code == 302
    row = AnomalyThreshold.objects.get()
    assert (row.signal, row.level, row.cluster, row.value) == ("novelty", "vm", cluster, 1.0)
    assert AuditEvent.objects.filter(action="anomaly.novelty_level").exists()
    # The score's own levels are untouched by it.
    assert scoring.alarm_levels(scoring._load(version.artefact_path)).clusters == {}
    counts = scoring.score_fleet(now_ms)
    anomalies = list(Anomaly.objects.select_related("instance__node"))
    assert anomalies and counts["anomalous"] >= len(anomalies)
    assert {a.instance.node.cluster for a in anomalies} == {cluster}
    page = admin_client.get(reverse("alarm_levels"), {"novelty": "5", "novelty_cluster": cluster})
    body = page.content.decode()
    assert 'data-novelty-clusters="vm"' in body
    assert 'data-clusters="vm"' not in body  # not a level of the score
    assert 'data-field="novelty-in-force-vm"><strong>100.0</strong>' in body
    assert '>in force</th><td class="num">1.0</td>' in body
    bad = admin_client.post(reverse("alarm_levels"), {**form, "cluster": "nowhere"})
    assert bad.status_code == 400 and "cluster: no node" in bad.content.decode()
    bad = admin_client.post(reverse("alarm_levels"), {**form, "signal": "loudness"})
    assert bad.status_code == 400 and "signal:" in bad.content.decode()
    # Blank: back to the fleet's (here the setting's).
    admin_client.post(reverse("alarm_levels"), {**form, "value": ""})
    assert not AnomalyThreshold.objects.exists()


def test_operators_refit_from_the_command_line(quiet_fleet, anomaly_artefact):
    from io import StringIO

    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="no anomaly version"):
        call_command("calibrate_novelty")
    promote_artefact("anomaly", anomaly_artefact)
    out = StringIO()
    call_command("calibrate_novelty", "--hours", "2", "--every-minutes", "5", stdout=out)
    assert "vm    fitted on 8 targets, 192 windows" in out.getvalue()
    with pytest.raises(CommandError, match="more than 0"):
        call_command("calibrate_novelty", "--hours", "0")


def test_admins_refit_from_the_page(anomaly_artefact, admin_client, operator_client, monkeypatch):
    from django.urls import reverse

    from workers import tasks

    version = promote_artefact("anomaly", anomaly_artefact)
    queued = []
    monkeypatch.setattr(tasks.calibrate_novelty, "delay", queued.append)
    url = reverse("alarm_levels")
    assert operator_client.post(url, {"action": "refit-novelty"}).status_code == 403
    assert queued == []
    assert 'id="refit-novelty"' in admin_client.get(url).content.decode()
    assert admin_client.post(url, {"action": "refit-novelty"}).status_code == 302
    assert queued == [version.pk]


def test_a_true_novelty_alarm_trains_the_anomaly_head_not_a_scenario_named_unrecognised(
    quiet_fleet, anomaly_artefact, users, operator_client
):
    from django.urls import reverse

    from webapp.detection import labels, services

    anomaly = recent_anomaly(anomaly_artefact, score=96, scenario=NOVEL_SCENARIO)
    page = operator_client.get(reverse("anomaly_detail", args=[anomaly.pk])).content.decode()
    assert 'name="scenario" list="scenario-names" value=""' in page  # not prefilled
    services.label_anomaly(anomaly, "true_positive", "", actor=users.operator)
    assert [(j.label, j.scenario) for j in labels.judgements()] == [("anomaly", "")]
    # Named by the person who looked: that scenario is what the next version learns.
    services.label_anomaly(anomaly, "true_positive", "runaway_batch_job", actor=users.operator)
    assert [j.scenario for j in labels.judgements()] == ["runaway_batch_job"]


def test_a_learnt_scenario_names_an_open_anomaly_whatever_novelty_says():
    from types import SimpleNamespace

    from webapp.detection.scoring import _outranks

    def window(score, novel):
        return SimpleNamespace(alarm_score=score, novel=novel)

    learnt = Anomaly(level="host", score=70, scenario="disk_io_saturation")
    assert not _outranks(window(100, True), learnt)  # novelty never renames it
    assert _outranks(window(80, False), learnt) and not _outranks(window(60, False), learnt)
    novel = Anomaly(level="host", score=100, scenario=NOVEL_SCENARIO)
    assert _outranks(window(60, False), novel)  # a scenario the model knows, even if lower
    assert not _outranks(window(100, True), novel) and _outranks(window(100.5, True), novel)
