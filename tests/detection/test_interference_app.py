"""Interference predictions from the store for the whole fleet, what-if placement (page and
API), and the clear refusals schedulers need."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.conftest import backfill_quiet_fleet, bearer, promote_artefact
from webapp.detection.interference import predict_fleet
from webapp.detection.models import InterferencePrediction
from webapp.telemetry import query
from webapp.telemetry.models import Instance, Node


@pytest.fixture
def fleet(store):
    return backfill_quiet_fleet(hours=2.0)


def test_predictions_for_every_placed_instance(fleet, interference_artefact):
    promote_artefact("interference", interference_artefact)
    now_ms = int(time.time() * 1000)
    n = predict_fleet(now_ms)
    placed = Instance.objects.filter(node__isnull=False).count()
    assert n == placed == InterferencePrediction.objects.count()
    for p in InterferencePrediction.objects.all():
        assert 0 <= p.p_low <= p.p <= p.p_high <= 1
    assert predict_fleet(now_ms) == n and InterferencePrediction.objects.count() == n  # same minute
    assert len(query.select("telltale_interference_p")) == n
    worst = InterferencePrediction.objects.order_by("p").first()
    neighbours = Instance.objects.filter(node=worst.node).exclude(pk=worst.instance_id).count()
    assert len(worst.neighbours) == min(neighbours, 5)


def test_the_first_promotion_predicts_the_hours_before_it_where_each_instance_ran_then(
    fleet, interference_artefact, django_capture_on_commit_callbacks, monkeypatch
):
    """P over time does not begin at the promotion: the first interference version predicts
    the recent hours every 5 minutes, each instance on the node its placement history puts
    it on at that time, and raises no incident signal for the past."""
    from webapp.detection import interference
    from webapp.incidents.models import Signal
    from webapp.telemetry import services
    from workers import tasks

    moved = Instance.objects.filter(node__isnull=False).order_by("name").first()
    before = moved.node
    after = Node.objects.exclude(pk=before.pk).order_by("name").first()
    move_at = timezone.now() - timedelta(minutes=30)
    services.record_placement(moved.pk, after.pk, move_at)
    queued = []
    monkeypatch.setattr(tasks.backfill_interference, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        version = promote_artefact("interference", interference_artefact)
    assert queued == [version.pk]
    stored = interference.backfill(version.pk, hours=1)
    placed = Instance.objects.filter(node__isnull=False).count()
    times = set(InterferencePrediction.objects.values_list("ts", flat=True))
    assert len(times) == 11 and stored == 11 * placed  # 5-minute rounds before the promotion
    assert max(times) < version.promoted_at and all(
        t.minute % 5 == max(times).minute % 5 for t in times
    )
    history = InterferencePrediction.objects.filter(instance=moved)
    assert {p.node_id for p in history.filter(ts__lt=move_at)} == {before.pk}
    assert {p.node_id for p in history.filter(ts__gt=move_at)} == {after.pk}
    assert not Signal.objects.exists()
    assert interference.backfill(version.pk, hours=1) == 0  # its minutes are done
    # One series per instance and node it ran on: the moved one has two.
    assert len(query.select("telltale_interference_p")) == placed + 1


def test_an_instance_that_stopped_reporting_does_not_block_the_fleet(fleet, interference_artefact):
    promote_artefact("interference", interference_artefact)
    node = Node.objects.first()
    stopped_at = timezone.now() - timedelta(hours=3)
    silent = Instance.objects.create(name="stopped-vm", node=node, last_seen=stopped_at)
    n = predict_fleet(int(time.time() * 1000))
    assert n == Instance.objects.filter(node__isnull=False).count() - 1
    assert not InterferencePrediction.objects.filter(instance=silent).exists()
    on_node = InterferencePrediction.objects.filter(node=node)
    assert on_node.exists()
    assert all("stopped-vm" not in [name for name, _ in p.neighbours] for p in on_node)


def test_a_node_without_full_capacity_is_skipped_not_fatal(fleet, interference_artefact):
    """A host known only by cores and memory (no cache or bandwidth figures) cannot be
    predicted on; its instances are skipped and the rest of the fleet still is."""
    promote_artefact("interference", interference_artefact)
    placed = Instance.objects.filter(node__isnull=False).count()
    real = Node.objects.create(name="real-host", cpu_cores=8, memory_bytes=32 * 2**30)
    moved = Instance.objects.filter(node__isnull=False).first()
    moved.node = real
    moved.save(update_fields=["node"])
    assert predict_fleet(int(time.time() * 1000)) == placed - 1
    assert not InterferencePrediction.objects.filter(instance=moved).exists()


def test_predictions_on_a_host_unlike_the_training_nodes_are_marked_extrapolated(
    fleet, interference_artefact, viewer_client
):
    """A small real host (the lab's 2 cores): the prediction is stored and shown, with why
    it is extrapolation; predictions on simulated nodes are not marked."""
    promote_artefact("interference", interference_artefact)
    small = Node.objects.create(
        name="small-host", cpu_cores=2, memory_bytes=8 * 2**30, llc_mb=4, membw_gbps=10,
        net_gbit=1, disk_mbps=80,
    )  # fmt: skip
    moved = Instance.objects.filter(node__isnull=False).first()
    moved.node = small
    moved.save(update_fields=["node"])
    predict_fleet(int(time.time() * 1000))
    on_small = InterferencePrediction.objects.get(instance=moved)
    assert on_small.unfamiliar and "CPU cores 2" in on_small.unfamiliar[0]
    assert not InterferencePrediction.objects.exclude(instance=moved).exclude(unfamiliar=[])
    page = viewer_client.get(reverse("interference"))
    assert page.context["extrapolated"] == 1 and "1 of the" in page.text
    assert page.text.count(">extrapolated</abbr>") == 1
    page = viewer_client.get(reverse("interference_instance", args=[moved.name]))
    assert 'id="extrapolated"' in page.text and "CPU cores 2" in page.text
    other = Instance.objects.filter(node__isnull=False).exclude(node=small).first()
    answer = viewer_client.get(reverse("what_if"), {"instance": other.name, "node": small.name})
    assert "CPU cores 2" in answer.context["result"]["moved"]["unfamiliar"][0]
    assert 'id="extrapolated"' in answer.text
    back = viewer_client.get(
        reverse("what_if"), {"instance": moved.name, "node": other.node.name}
    ).context["result"]
    assert back["moved"]["unfamiliar"] == [] and back["existing"][0]["unfamiliar"] == []


def _what_if(client, body, **headers):
    return client.post(
        reverse("what_if_api"), json.dumps(body), content_type="application/json", **headers
    )


def test_what_if_api(fleet, interference_artefact, make_token, client):
    promote_artefact("interference", interference_artefact)
    token = bearer(make_token("read"))
    moved = Instance.objects.filter(node__isnull=False).first()
    target = Node.objects.exclude(pk=moved.node_id).first()
    response = _what_if(client, {"instance": moved.name, "node": target.name}, **token)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["moved"]["instance"] == moved.name and 0 <= body["moved"]["p"] <= 1
    assert {r["instance"] for r in body["existing"]} == set(
        Instance.objects.filter(node=target).values_list("name", flat=True)
    )
    assert _what_if(client, {"instance": "nope", "node": target.name}, **token).status_code == 404
    assert (
        _what_if(client, {"instance": moved.name, "node": "nope"}, **token).json()["field"]
        == "node"
    )
    assert _what_if(client, {"instance": moved.name}, **token).json()["field"] == "node"
    same = _what_if(client, {"instance": moved.name, "node": moved.node.name}, **token)
    assert same.status_code == 400 and "already runs" in same.json()["error"]
    empty = Node.objects.create(name="bare-metal-unknown")
    refused = _what_if(client, {"instance": moved.name, "node": empty.name}, **token)
    assert refused.status_code == 409 and "capacity" in refused.json()["error"]
    partial = Node.objects.create(name="cores-only", cpu_cores=8, memory_bytes=2**34)
    refused = _what_if(client, {"instance": moved.name, "node": partial.name}, **token)
    assert refused.status_code == 409 and "llc_mb" in refused.json()["error"]
    assert _what_if(client, {"instance": moved.name, "node": target.name}).status_code == 401


def test_what_if_leaves_out_an_instance_that_sent_nothing(
    fleet, interference_artefact, viewer_client
):
    promote_artefact("interference", interference_artefact)
    moved = Instance.objects.filter(node__isnull=False).first()
    target = Node.objects.exclude(pk=moved.node_id).first()
    Instance.objects.create(name="stopped-vm", node=target)  # placed there, no samples
    response = _what_if(viewer_client, {"instance": moved.name, "node": target.name})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["absent"] == ["stopped-vm"]
    assert "stopped-vm" not in {r["instance"] for r in body["existing"]}
    page = viewer_client.get(reverse("what_if"), {"instance": moved.name, "node": target.name})
    assert "Not counted: stopped-vm is placed on" in page.text
    # Nothing to move: a clear refusal naming the field, not a server error.
    refused = _what_if(viewer_client, {"instance": "stopped-vm", "node": moved.node.name})
    assert refused.status_code == 409 and refused.json()["field"] == "instance"
    assert "no metric samples" in refused.json()["error"]


def test_what_if_without_a_model_says_so(fleet, viewer_client):
    moved = Instance.objects.filter(node__isnull=False).first()
    target = Node.objects.exclude(pk=moved.node_id).first()
    response = _what_if(viewer_client, {"instance": moved.name, "node": target.name})
    assert response.status_code == 409 and "no interference model" in response.json()["error"]


def test_interference_pages(fleet, interference_artefact, viewer_client):
    promote_artefact("interference", interference_artefact)
    predict_fleet()
    fleet_page = viewer_client.get(reverse("interference"))
    assert fleet_page.status_code == 200
    # The interval's promise is stated with the promoted model's own calibration target.
    assert fleet_page.context["coverage"] == 0.9
    assert (
        "contain P in 90 % of the windows of workloads the model never trained on"
        in fleet_page.text
    )
    # Where the promoted version learnt, and what that means on a real host, is said.
    assert fleet_page.context["simulated_only"]
    assert "learnt from simulated fleets only" in fleet_page.text
    node = Node.objects.first()
    page = viewer_client.get(reverse("interference_node", args=[node.name]))
    assert page.status_code == 200 and page.context["heatmap"]["data"][0]["type"] == "heatmap"
    # Columns are times on a date axis (plotly spaces the ticks), inside the range shown.
    heatmap = page.context["heatmap"]
    assert heatmap["layout"]["xaxis"]["type"] == "date"
    tr = page.context["tr"]
    assert all(tr.start_ms < x < tr.end_ms for x in heatmap["data"][0]["x"])
    instance = Instance.objects.filter(node__isnull=False).first()
    assert (
        viewer_client.get(reverse("interference_instance", args=[instance.name])).status_code == 200
    )
    target = Node.objects.exclude(pk=instance.node_id).first()
    page = viewer_client.get(reverse("what_if"), {"instance": instance.name, "node": target.name})
    assert page.context["result"]["moved"]["instance"] == instance.name
    # The moved instance's wider interval is stated with the artefact's own figure.
    widening = json.loads((Path(interference_artefact) / "calibration.json").read_text())[
        "what_if_extra_margin"
    ]
    assert page.context["widening_pp"] == pytest.approx(100 * widening)
    assert f"{100 * widening:.1f} pp wider on each side" in page.text


def test_only_a_version_trained_without_a_dataset_is_called_simulator_trained():
    from webapp.detection.interference import trained_on_simulator
    from webapp.detection.models import ModelVersion

    assert not trained_on_simulator(None)
    sim = ModelVersion(kind="interference", version=1, config={"train": {"seeds": [1, 2]}})
    lab = ModelVersion(kind="interference", version=2, config={"train": {"dataset": "var/lab"}})
    assert trained_on_simulator(sim) and not trained_on_simulator(lab)


def test_interval_coverage_is_unknown_rather_than_invented(tmp_path):
    from webapp.detection.interference import interval_coverage, what_if_widening
    from webapp.detection.models import ModelVersion

    assert interval_coverage(None) is None
    version = ModelVersion(kind="interference", version=1, artefact_path=str(tmp_path))
    assert interval_coverage(version) is None  # no calibration.json
    (tmp_path / "calibration.json").write_text('{"coverage_target": 0.8}')
    assert interval_coverage(version) == 0.8
    assert what_if_widening(version) is None  # calibrated before what-if margins existed
    (tmp_path / "calibration.json").write_text(
        '{"coverage_target": 0.8, "what_if_extra_margin": 0.02}'
    )
    assert what_if_widening(version) == 0.02
    (tmp_path / "calibration.json").write_text("{not json")
    assert interval_coverage(version) is None


def test_the_fleet_view_names_every_placed_instance_it_could_not_predict(
    fleet, interference_artefact, viewer_client
):
    promote_artefact("interference", interference_artefact)
    real = Node.objects.create(name="real-host", cpu_cores=8, memory_bytes=32 * 2**30)
    on_real = Instance.objects.filter(node__isnull=False).first()
    on_real.node = real
    on_real.save(update_fields=["node"])
    stopped = Instance.objects.create(
        name="stopped-vm",
        node=Node.objects.exclude(pk=real.pk).first(),
        first_seen=timezone.now() - timedelta(hours=5),
        last_seen=timezone.now() - timedelta(minutes=20),
    )
    Instance.objects.create(  # stopped long ago: not listed any more
        name="gone-vm",
        node=stopped.node,
        first_seen=timezone.now() - timedelta(days=5),
        last_seen=timezone.now() - timedelta(hours=3),
    )
    predict_fleet(int(time.time() * 1000))
    page = viewer_client.get(reverse("interference"))
    reasons = {u["instance"].name: u["reason"] for u in page.context["unpredicted"]}
    assert reasons == {
        on_real.name: "node real-host has no known llc_mb, membw, net, disk capacity "
        "(an admin sets it on the node's page)",
        "stopped-vm": "no metric samples in the window the model reads before the latest round",
    }
    assert page.context["total"] == Instance.objects.filter(node__isnull=False).count() - 3
    assert "Not predicted" in page.text and "stopped-vm" in page.text
    # The instance's own page says why too.
    page = viewer_client.get(reverse("interference_instance", args=[stopped.name]))
    assert page.context["missing"] == reasons["stopped-vm"]
    assert "Not in the latest prediction round" in page.text
    # One placed after the round is not blamed on missing data.
    late = Instance.objects.create(name="new-vm", node=stopped.node)
    late.first_seen = timezone.now() + timedelta(minutes=2)
    late.save(update_fields=["first_seen"])
    page = viewer_client.get(reverse("interference"))
    reasons = {u["instance"].name: u["reason"] for u in page.context["unpredicted"]}
    assert reasons["new-vm"] == "placed after the latest round"


def test_an_instance_outside_the_most_slowed_is_not_said_to_have_no_neighbours(
    fleet, interference_artefact, viewer_client, monkeypatch
):
    """Blame is computed for the most slowed instances only; the others' pages must say so,
    not that the node has no neighbours."""
    from webapp.detection import interference

    monkeypatch.setattr(interference, "ATTRIBUTE_WORST", 1)
    promote_artefact("interference", interference_artefact)
    predict_fleet()
    spared = InterferencePrediction.objects.order_by("-p").first()
    assert spared.neighbours == []
    page = viewer_client.get(reverse("interference_instance", args=[spared.instance.name]))
    assert page.context["neighbours_predicted"] is True
    assert "No neighbours on this node" not in page.text
    assert "most slowed instances of the fleet" in page.text
    assert page.context["missing"] is None
    # Predicted in the latest round but looking at an older range: nothing is missing.
    old = viewer_client.get(
        reverse("interference_instance", args=[spared.instance.name]),
        {"from": str(time.time() - 30 * 86400), "to": str(time.time() - 29 * 86400)},
    )
    assert old.context["latest"] is None and old.context["missing"] is None


def test_the_fleet_view_sorts_both_ways_by_every_column(
    fleet, interference_artefact, viewer_client
):
    promote_artefact("interference", interference_artefact)
    predict_fleet()
    names = sorted(Instance.objects.filter(node__isnull=False).values_list("name", flat=True))
    up = viewer_client.get(reverse("interference"), {"sort": "instance"})
    down = viewer_client.get(reverse("interference"), {"sort": "-instance"})
    assert [r.instance.name for r in up.context["rows"]] == names
    assert [r.instance.name for r in down.context["rows"]] == names[::-1]
    widths = [
        r.width
        for r in viewer_client.get(reverse("interference"), {"sort": "-width"}).context["rows"]
    ]
    assert widths == sorted(widths, reverse=True)


def test_a_neighbour_whose_removal_would_not_help_shows_a_plain_negative_gain(
    fleet, interference_artefact, viewer_client
):
    promote_artefact("interference", interference_artefact)
    predict_fleet()
    row = InterferencePrediction.objects.order_by("p").first()
    row.neighbours = [["helper-vm", -0.0012], ["noisy-vm", 0.0431]]
    row.save(update_fields=["neighbours"])
    page = viewer_client.get(reverse("interference_instance", args=[row.instance.name]))
    assert "-0.001" in page.text and "+-" not in page.text and "+0.043" in page.text


def test_what_if_compares_with_p_in_place_from_the_same_minutes(
    fleet, interference_artefact, viewer_client
):
    """ "P now" is predicted from the same window as the move, not read from a stored round
    (which may be minutes or hours old), so "change" is the move's effect alone."""
    version = promote_artefact("interference", interference_artefact)
    moved = Instance.objects.filter(node__isnull=False).first()
    target = Node.objects.exclude(pk=moved.node_id).first()
    resident = Instance.objects.filter(node=target).first()
    InterferencePrediction.objects.create(  # a stale round must not be shown as now
        instance=resident,
        node=target,
        ts=timezone.now() - timedelta(hours=3),
        p=0.123,
        p_low=0.1,
        p_high=0.2,
        neighbours=[],
        model_version=version,
    )
    body = _what_if(viewer_client, {"instance": moved.name, "node": target.name}).json()
    for row in [body["moved"], *body["existing"]]:
        assert row["p_now"] is not None and row["p_now"] != 0.123
        assert row["change"] == pytest.approx(row["p"] - row["p_now"], abs=2e-4)
    page = viewer_client.get(reverse("what_if"), {"instance": moved.name, "node": target.name})
    assert "from the same minutes of data as the move" in page.text
    # Where the moved instance runs now has no known capacity: no P now, still an answer.
    bare = Node.objects.create(name="cores-only", cpu_cores=8, memory_bytes=2**34)
    moved.node = bare
    moved.save(update_fields=["node"])
    body = _what_if(viewer_client, {"instance": moved.name, "node": target.name}).json()
    assert body["moved"]["p_now"] is None and body["moved"]["change"] is None
    assert all(row["p_now"] is not None for row in body["existing"])


def test_a_slowdown_is_one_signal_that_ends_when_p_recovers(
    fleet, interference_artefact, monkeypatch
):
    """Suspects used to be recorded per hour and never ended, so an incident built on one
    could never resolve; now each slowdown is one signal, ended on recovery or staleness."""
    from webapp.detection import interference
    from webapp.incidents.models import Incident, Signal
    from webapp.incidents.services import auto_resolve

    promote_artefact("interference", interference_artefact)
    t0 = (int(time.time()) // 60) * 60_000
    placed = Instance.objects.filter(node__isnull=False).count()
    monkeypatch.setattr(interference, "SUSPECT_BELOW", 1.01)  # every instance is a suspect
    for minute in range(3):
        predict_fleet(t0 + minute * 60_000)
    signals = Signal.objects.filter(kind="interference")
    assert signals.count() == placed and not signals.filter(end__isnull=False).exists()
    silent = Instance.objects.create(
        name="stopped-vm",
        node=Node.objects.first(),
        last_seen=timezone.now() - timedelta(hours=3),
    )
    Signal.objects.create(
        kind="interference",
        source_id="legacy",
        title="old",
        instance=silent,
        start=timezone.now() - timedelta(hours=2),
    )
    monkeypatch.setattr(interference, "SUSPECT_BELOW", 0.0)  # everyone recovered
    predict_fleet(t0 + 3 * 60_000)
    assert not Signal.objects.filter(kind="interference", end__isnull=True).exists()
    ended = {s.end for s in signals.exclude(source_id="legacy")}
    assert [int(e.timestamp() * 1000) for e in ended] == [t0 + 3 * 60_000]
    predict_fleet(t0 + 3 * 60_000)  # the same round again changes nothing
    assert Signal.objects.filter(kind="interference").count() == placed + 1
    later = timezone.now() + timedelta(hours=2)
    auto_resolve(now=later)
    incidents = Incident.objects.filter(signals__kind="interference").distinct()
    assert incidents.exists() and all(i.state == Incident.RESOLVED for i in incidents)
    # A new slowdown is a new signal.
    monkeypatch.setattr(interference, "SUSPECT_BELOW", 1.01)
    predict_fleet(t0 + 4 * 60_000)
    assert Signal.objects.filter(kind="interference", end__isnull=True).count() == placed


def test_old_predictions_are_dropped_with_the_raw_retention(fleet, interference_artefact, settings):
    from workers.schedule import beat_schedule
    from workers.tasks import prediction_retention

    settings.TELLTALE_RETENTION_DAYS = 2
    version = promote_artefact("interference", interference_artefact)
    instance = Instance.objects.filter(node__isnull=False).first()
    for days in (3, 1):
        InterferencePrediction.objects.create(
            instance=instance,
            node=instance.node,
            ts=timezone.now() - timedelta(days=days),
            p=0.8,
            p_low=0.7,
            p_high=0.9,
            model_version=version,
        )
    assert beat_schedule()["drop-old-predictions"]["task"] == prediction_retention.name
    assert prediction_retention() == 1
    kept = InterferencePrediction.objects.get()
    assert kept.ts > timezone.now() - timedelta(days=2)


def test_a_long_range_is_drawn_from_bucket_means():
    from datetime import UTC, datetime

    from webapp.detection.interference_views import band_points

    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [(start + timedelta(minutes=m), 0.5 + (m % 2) * 0.2, 0.4, 0.9) for m in range(3000)]
    start_ms = int(start.timestamp() * 1000)
    end_ms = start_ms + 3000 * 60_000
    ts, p, low, high = band_points(rows, start_ms, end_ms, max_points=100)
    assert len(ts) == len(p) == len(low) == len(high) == 100
    assert ts == sorted(ts) and all(v == pytest.approx(0.6) for v in p)  # 30 minutes a bucket
    assert low[0] == pytest.approx(0.4) and high[-1] == pytest.approx(0.9)
    few = band_points(rows[:5], start_ms, end_ms, max_points=100)
    assert few[0] == [start_ms + m * 60_000 for m in range(5)] and few[1][:2] == [0.5, 0.7]
    assert band_points([], start_ms, end_ms) == ([], [], [], [])


def test_an_admin_gives_a_node_its_capacity_and_its_instances_are_predicted(
    fleet, interference_artefact, admin_client, viewer_client
):
    """A host known only by cores and memory (an agent's) gets no prediction until an admin
    states its cache and bandwidth on the node's page; each bad field is named."""
    promote_artefact("interference", interference_artefact)
    real = Node.objects.create(name="real-host", cpu_cores=8, memory_bytes=32 * 2**30)
    moved = Instance.objects.filter(node__isnull=False).first()
    moved.node = real
    moved.save(update_fields=["node"])
    predict_fleet(int(time.time() * 1000))
    assert not InterferencePrediction.objects.filter(instance=moved).exists()
    page = viewer_client.get(reverse("node_detail", args=[real.name]))
    assert page.context["capacity_form"] is None and "Last-level cache" in page.text
    url = reverse("node_capacity", args=[real.name])
    values = {"cpu_cores": 8, "memory_gb": 32, "llc_mb": 30, "membw_gbps": 80, "net_gbit": 25}
    assert viewer_client.post(url, {**values, "disk_mbps": 2000}).status_code == 403
    page = admin_client.post(url, {**values, "disk_mbps": -1}, follow=True)
    assert "Disk (MB/s) (disk_mbps):" in page.text
    real.refresh_from_db()
    assert real.disk_mbps is None
    admin_client.post(url, {**values, "disk_mbps": 2000})
    real.refresh_from_db()
    assert (real.llc_mb, real.disk_mbps, real.memory_bytes) == (30.0, 2000.0, 32 * 2**30)
    predict_fleet(int(time.time() * 1000) + 60_000)
    assert InterferencePrediction.objects.filter(instance=moved).exists()
    page = admin_client.get(reverse("node_detail", args=[real.name]))
    assert "2000 MB/s" in page.text and page.context["capacity_form"] is not None


def test_a_suspect_without_predictions_ends_at_its_last_one_after_ten_minutes(
    fleet, interference_artefact, monkeypatch
):
    from webapp.detection import interference
    from webapp.incidents.models import Signal

    version = promote_artefact("interference", interference_artefact)
    node = Node.objects.first()
    at = timezone.now().replace(second=0, microsecond=0)
    gone = Instance.objects.create(name="gone-vm", node=node)
    paused = Instance.objects.create(name="paused-vm", node=node)
    for instance, minutes in ((gone, 12), (paused, 3)):  # last predicted that long ago
        InterferencePrediction.objects.create(
            instance=instance,
            node=node,
            ts=at - timedelta(minutes=minutes),
            p=0.4,
            p_low=0.3,
            p_high=0.5,
            model_version=version,
        )
        Signal.objects.create(
            kind="interference",
            source_id=f"{instance.pk}:1",
            title="slow",
            instance=instance,
            start=at - timedelta(minutes=30),
        )
    interference.track_suspects([], at)
    assert Signal.objects.get(instance=gone).end == at - timedelta(minutes=12)
    assert Signal.objects.get(instance=paused).end is None  # a missed round is not the end


def test_an_extrapolated_p_opens_no_incident_and_is_not_what_alert_rules_read(
    fleet, interference_artefact, monkeypatch
):
    """On a real host the shipped model's P is extrapolated (and was worse than P = 1 on the
    lab host): it must not open incidents or page, only be shown as what it is."""
    from webapp.detection import interference
    from webapp.incidents.models import Signal

    version = promote_artefact("interference", interference_artefact)
    node = Node.objects.first()
    at = timezone.now().replace(second=0, microsecond=0)
    slowed, extrapolated = Instance.objects.filter(node=node).order_by("name")[:2]

    def row(instance, unfamiliar):
        return InterferencePrediction(
            instance=instance, node=node, ts=at, p=0.4, p_low=0.3, p_high=0.5,
            unfamiliar=unfamiliar, model_version=version,
        )  # fmt: skip

    interference.track_suspects([row(slowed, []), row(extrapolated, ["CPU cores 2"])], at)
    assert list(Signal.objects.values_list("instance", flat=True)) == [slowed.pk]
    # Slowed, then extrapolated (its metrics went missing): the incident loses its ground.
    later = at + timedelta(minutes=1)
    interference.track_suspects([row(slowed, ["5 metrics missing"])], later)
    assert Signal.objects.get(instance=slowed).end == later
    # Rounds write P for every prediction, the trusted P only where it is not extrapolated.
    from models.interference.predictor import InterferencePredictor

    def first_unfamiliar(self, victims):
        return [["capacity unlike training"]] + [[] for _ in victims[1:]]

    monkeypatch.setattr(InterferencePredictor, "unfamiliar_many", first_unfamiliar)
    n = interference.predict_fleet(int(later.timestamp() * 1000) + 60_000)
    assert len(query.select("telltale_interference_p")) == n
    assert len(query.select(interference.TRUSTED_P)) == n - 1


def test_a_node_reporting_its_own_capacity_needs_only_what_no_exporter_states(
    fleet, interference_artefact, admin_client
):
    """node_exporter's CPUs, memory and link speed fill three of the six figures; an admin
    states the three it cannot know (cache on a VM-less host exporter, memory and disk
    bandwidth) and the node's instances are predicted."""
    from ingest.types import MetricBatch
    from tests.conftest import series_samples
    from webapp.telemetry import services, writer

    promote_artefact("interference", interference_artefact)
    now_ms = int(time.time() * 1000)
    points = [(now_ms - 60_000, 1.0), (now_ms - 30_000, 2.0)]
    labels = {"node": "exporter-host"}
    series = [
        series_samples("node_cpu_seconds_total", {**labels, "cpu": str(c), "mode": m}, points)
        for c in range(48)
        for m in ("idle", "user")
    ]
    series += [
        series_samples("node_memory_MemTotal_bytes", labels, [(t, 256 * 2**30) for t, _ in points]),
        series_samples(
            "node_network_speed_bytes",
            {**labels, "device": "eth0"},
            [(t, 25e9 / 8) for t, _ in points],
        ),
        series_samples(
            "node_network_speed_bytes",
            {**labels, "device": "docker0"},
            [(t, 1e9) for t, _ in points],
        ),
    ]
    writer.write_metrics(MetricBatch(series=series), source="remote_write", client="t")
    host = Node.objects.get(name="exporter-host")
    Node.objects.filter(pk=host.pk).update(last_seen=timezone.now())
    assert services.refresh_reported_capacity(now_ms) == 1
    host.refresh_from_db()
    assert host.reported_capacity == {
        "figures": {"cores": 48.0, "mem_gb": 256.0, "net": 25.0},
        "origins": {"cores": "node_exporter", "mem_gb": "node_exporter", "net": "node_exporter"},
    }
    assert services.refresh_reported_capacity(now_ms) == 0  # nothing changed
    moved = Instance.objects.filter(node__isnull=False).first()
    Instance.objects.filter(pk=moved.pk).update(node=host)
    predict_fleet(now_ms)
    assert not InterferencePrediction.objects.filter(instance=moved).exists()
    from webapp.detection.interference import unpredicted

    (row,) = unpredicted(timezone.now(), set(), only=moved)
    assert "llc_mb, membw, disk" in row["reason"]
    page = admin_client.get(reverse("node_detail", args=[host.name]))
    assert '<dd>48 <span class="muted">(reported by node_exporter)</span></dd>' in page.text
    url = reverse("node_capacity", args=[host.name])
    admin_client.post(url, {"llc_mb": 30, "membw_gbps": 80, "disk_mbps": 2000})
    predict_fleet(now_ms + 60_000)
    assert InterferencePrediction.objects.filter(instance=moved).exists()
