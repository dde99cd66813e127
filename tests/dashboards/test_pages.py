"""Pages render real data, explain empty states, and do not query per node."""

from __future__ import annotations

import time

import plotly.graph_objects as go
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ingest.types import LogBatch, LogEntry, MetricBatch
from tests.conftest import series_samples
from tests.support.exporters import node_exporter_series
from webapp.dashboards import charts
from webapp.telemetry import writer
from webapp.telemetry.stats import ingest_stats

NOW = int(time.time() * 1000) // 1000 * 1000


def fleet(n_nodes: int, vms_per_node: int = 2) -> None:
    series, entries = [], []
    for n in range(n_nodes):
        node = f"node-{n:02d}"
        labels = {"node": node, "cluster": "eu1", "rack": f"r{n % 3}"}
        points = [(NOW - 600_000 + i * 15_000, 0.1 * n + i / 100) for i in range(40)]
        series.append(series_samples("host_cpu_utilization_ratio", labels, points))
        for v in range(vms_per_node):
            vm = {**labels, "vm": f"vm-{n:02d}-{v}", "workload": "oltp-db"}
            series.append(series_samples("vm_cpu_utilization_ratio", vm, points))
        entries.append(
            LogEntry(ts_ns=time.time_ns(), message=f"disk error on {node}", severity=17, node=node)
        )
    writer.write_metrics(MetricBatch(series=series), source="test", client="t")
    writer.write_logs(
        LogBatch(entries=entries), source="test", client="t", batch_digest=str(n_nodes).encode()
    )
    ingest_stats.flush()


@pytest.mark.parametrize(
    "page", ["overview", "node_list", "explore", "dashboard_list", "anomaly_list", "model_list"]
)
def test_empty_pages_explain_themselves(viewer_client, page, store):
    response = viewer_client.get(reverse(page))
    assert response.status_code == 200


def test_overview_shows_nodes_states_and_errors(viewer_client, store):
    fleet(3)
    body = viewer_client.get(reverse("overview")).content.decode()
    assert "node-00" in body and "node-02" in body
    assert "disk error on node-01" in body
    assert "Healthy" in body and "No data" in body


def test_node_and_instance_pages_chart_their_metrics(viewer_client, store):
    fleet(1)
    response = viewer_client.get(reverse("node_detail", args=["node-00"]))
    assert response.status_code == 200
    figures = dict(response.context["figures"])
    assert "host_cpu_utilization_ratio" in figures
    go.Figure(figures["host_cpu_utilization_ratio"])  # a valid plotly figure
    assert "vm-00-0" in response.content.decode()
    response = viewer_client.get(reverse("instance_detail", args=["vm-00-0"]))
    assert "vm_cpu_utilization_ratio" in dict(response.context["figures"])


def test_instance_page_names_a_node_that_still_sends_its_series_after_it_moved(
    viewer_client, store
):
    def send(node, at):
        labels = {"node": node, "vm": "vm-moved"}
        batch = MetricBatch(
            series=[series_samples("vm_cpu_utilization_ratio", labels, [(at, 0.5)])]
        )
        writer.write_metrics(batch, source="test", client="t")

    send("old-node", NOW - 120_000)
    page = viewer_client.get(reverse("instance_detail", args=["vm-moved"])).content.decode()
    assert 'id="also-reporting"' not in page
    send("new-node", NOW - 60_000)
    send("old-node", NOW - 45_000)  # a stale exporter where it ran before
    page = viewer_client.get(reverse("instance_detail", args=["vm-moved"]))
    assert page.context["instance"].node.name == "new-node"
    body = page.content.decode()
    assert 'id="also-reporting"' in body and "old-node" in body.split('id="also-reporting"')[1]


def test_the_instance_page_charts_its_anomaly_score_against_the_alarm_level(viewer_client, store):
    """Not the alarm series beside it: that repeats the score's alarming windows for alert
    rules."""
    from webapp.detection import services as detection_services

    fleet(1)
    labels = {"level": "vm", "node": "node-00", "vm": "vm-00-0"}
    points = [(NOW - 600_000 + i * 60_000, 20.0 + i) for i in range(10)]
    for metric in ("telltale_anomaly_score", "telltale_anomaly_alarm"):
        batch = MetricBatch(series=[series_samples(metric, labels, points)])
        writer.write_metrics(batch, source=writer.DERIVED_SOURCE, client="anomaly")
    detection_services.set_anomaly_threshold("vm", 61)
    figures = dict(
        viewer_client.get(reverse("instance_detail", args=["vm-00-0"])).context["figures"]
    )
    assert "telltale_anomaly_alarm" not in figures
    shapes = go.Figure(figures["telltale_anomaly_score"]).layout.shapes
    assert [(s.type, s.y0) for s in shapes if s.type == "line"] == [("line", 61)]
    # Its node's cluster has a level of its own: that one.
    detection_services.set_anomaly_threshold("vm", 70, cluster="eu1")
    figures = dict(
        viewer_client.get(reverse("instance_detail", args=["vm-00-0"])).context["figures"]
    )
    shapes = go.Figure(figures["telltale_anomaly_score"]).layout.shapes
    assert [s.y0 for s in shapes if s.type == "line"] == [70]


def test_node_list_filters(viewer_client, store):
    fleet(4)

    def names(**query):
        page = viewer_client.get(reverse("node_list"), query).context["page"]
        return sorted(n.name for n in page)

    assert names(rack="r1") == ["node-01"]
    assert names(q="node-0") == ["node-00", "node-01", "node-02", "node-03"]
    assert names(state="healthy") == ["node-00", "node-01", "node-02", "node-03"]
    assert names(state="nodata") == []


def test_explore_plots_a_selector_and_searches_logs(viewer_client, store):
    fleet(2)
    response = viewer_client.get(
        reverse("explore"), {"q": 'vm_cpu_utilization_ratio{node="node-01"}', "agg": "max"}
    )
    assert response.context["series_count"] == 2 and response.context["error"] is None
    go.Figure(response.context["figure"])
    bad = viewer_client.get(reverse("explore"), {"q": "rate(x[5m])"})
    assert "only plain series selectors" in bad.context["error"]
    logs = viewer_client.get(
        reverse("explore"), {"logs": 1, "logq": "disk error", "severity": "error"}
    ).context["logs"]
    assert len(logs) == 2


@pytest.mark.parametrize(
    "page, args", [("overview", []), ("node_list", []), ("node_detail", ["node-00"])]
)
def test_query_count_does_not_grow_with_the_fleet(viewer_client, store, page, args):
    fleet(2)
    viewer_client.get(reverse(page, args=args))  # warm caches (sessions, templates)
    with CaptureQueriesContext(connection) as small:
        viewer_client.get(reverse(page, args=args))
    fleet(12)
    with CaptureQueriesContext(connection) as large:
        viewer_client.get(reverse(page, args=args))
    assert len(large) == len(small), [q["sql"][:120] for q in large.captured_queries]


def test_charts_downsample_keeping_extremes():
    ts = list(range(10_000))
    values = [0.0] * 10_000
    values[5_000] = 99.0
    t2, v2 = charts.downsample(ts, values, limit=1000)
    assert len(t2) <= 1000 and 99.0 in v2
    figure = charts.time_series_figure(
        charts.ChartSpec(
            "x", "ratio", [charts.Line("a", ts, values)], [charts.Region(1, 2, "r")], [(0.5, "t")]
        ),
        0,
        10_000,
    )
    go.Figure(figure)
    assert len(figure["data"][0]["x"]) <= charts.MAX_POINTS_PER_LINE


def test_a_nodes_page_says_which_model_inputs_it_sends_and_which_are_derived(viewer_client, store):
    labels = {"instance": "db1.example:9100", "job": "node"}
    points = [(NOW - 60_000 + i * 15_000, 1e9 * (i + 1)) for i in range(4)]
    series = [
        series_samples("host_load1", labels, points),
        series_samples("node_memory_MemAvailable_bytes", labels, points),
        series_samples("node_memory_MemTotal_bytes", labels, points),
        # Only one of the two series the CPU needs: not derivable.
        series_samples("node_cpu_seconds_total", {**labels, "cpu": "0", "mode": "idle"}, points),
    ]
    writer.write_metrics(MetricBatch(series=series), source="test", client="t")
    response = viewer_client.get(reverse("node_detail", args=["db1.example"]))
    inputs = response.context["model_inputs"]
    assert [r.metric for r in inputs["stated"]] == ["host_load1"]
    assert [(r.metric, r.origin) for r in inputs["derived"]] == [
        ("host_memory_utilization_ratio", "node_exporter")
    ]
    assert "host_cpu_utilization_ratio" in {r.metric for r in inputs["missing"]}
    body = response.content.decode()
    assert "1 of 17 sent under the models' names, 1 derived from node_exporter series" in body


def test_a_node_exporter_hosts_charts_are_what_the_models_read_not_its_raw_counters(
    viewer_client, store
):
    """Its CPU chart is the utilisation the models derive from the CPU-seconds counters, and
    the series a derived chart reads are not charted again beside it."""
    batch = MetricBatch(series=node_exporter_series({"node": "ne-1"}, idle=0.7))
    writer.write_metrics(batch, source="remote_write", client="t")
    figures = dict(viewer_client.get(reverse("node_detail", args=["ne-1"])).context["figures"])
    assert "node_cpu_seconds_total" not in figures
    assert "node_load1" not in figures and "host_load1" in figures
    (trace,) = go.Figure(figures["host_cpu_utilization_ratio"]).data
    assert trace.name == "derived from node_exporter"
    drawn = [v for v in trace.y if v is not None]
    assert drawn and all(abs(v - 0.25) < 1e-3 for v in drawn)
    # Over a week it would read raw counters for days: the chart says so instead.
    week = viewer_client.get(reverse("node_detail", args=["ne-1"]), {"range": "7d"})
    cpu = go.Figure(dict(week.context["figures"])["host_cpu_utilization_ratio"])
    assert not cpu.data and "drawn for ranges up to 2 days" in cpu.layout.title.text


def test_an_anomalys_page_charts_its_top_metric_first_even_when_derived(viewer_client, store):
    from datetime import UTC, datetime, timedelta

    from webapp.detection.models import Anomaly, ModelVersion
    from webapp.telemetry.models import Node

    batch = MetricBatch(series=node_exporter_series({"node": "ne-2"}, idle=0.7))
    writer.write_metrics(batch, source="remote_write", client="t")
    end = datetime.now(tz=UTC)
    anomaly = Anomaly.objects.create(
        level="host",
        node=Node.objects.get(name="ne-2"),
        start=end - timedelta(minutes=4),
        end=end,
        score=97,
        scenario="unrecognised",
        attribution={"metrics": [["host_cpu_utilization_ratio", 0.8], ["host_load1", 0.2]]},
        model_version=ModelVersion.objects.create(kind="anomaly", version=1),
    )
    response = viewer_client.get(reverse("anomaly_detail", args=[anomaly.pk]))
    metrics = [metric for metric, _ in response.context["figures"]]
    assert metrics[:2] == ["host_cpu_utilization_ratio", "host_load1"]
    assert "node_cpu_seconds_total" not in metrics
