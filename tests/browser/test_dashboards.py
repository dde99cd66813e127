"""The product in a real browser: overview → anomaly, zoom sets the URL range, a node and
its logs, drag to annotate, save a custom dashboard. No console errors; screenshots kept."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from ingest.types import LogBatch, LogEntry, MetricBatch
from tests.browser.conftest import login
from tests.conftest import PASSWORD, series_samples, wait_for
from webapp.dashboards.models import Dashboard
from webapp.detection.models import Anomaly, ModelVersion
from webapp.incidents.models import Annotation
from webapp.telemetry import writer
from webapp.telemetry.models import Instance

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fleet_data(clean_store):
    now = int(time.time() * 1000) // 15_000 * 15_000
    series = []
    for n in range(3):
        labels = {"node": f"node-{n}", "cluster": "eu1", "rack": "r1"}
        points = [
            (now - 3_600_000 + i * 15_000, 0.3 + 0.1 * n + (i % 20) / 100) for i in range(240)
        ]
        series.append(series_samples("host_cpu_utilization_ratio", labels, points))
        series.append(
            series_samples(
                "vm_cpu_utilization_ratio", {**labels, "vm": f"vm-{n}", "workload": "web"}, points
            )
        )
    writer.write_metrics(MetricBatch(series=series), source="test", client="t")
    writer.write_logs(
        LogBatch(
            entries=[
                LogEntry(
                    ts_ns=time.time_ns() - 600 * 10**9,
                    message="kernel: EXT4-fs error on sda1",
                    severity=17,
                    node="node-1",
                )
            ]
        ),
        source="test",
        client="t",
        batch_digest=b"browser",
    )
    version = ModelVersion.objects.create(
        kind="anomaly", version=1, status="promoted", training_state="succeeded"
    )
    end = datetime.now(tz=UTC) - timedelta(minutes=5)
    return Anomaly.objects.create(
        level="vm",
        instance=Instance.objects.get(name="vm-1"),
        node=None,
        start=end - timedelta(minutes=10),
        end=end,
        score=93.0,
        scenario="memory_leak",
        attribution={
            "metrics": [["vm_cpu_utilization_ratio", 0.8]],
            "templates": [["kernel: EXT4-fs error on <*>", 0.2]],
        },
        model_version=version,
    )


def test_overview_to_anomaly_zoom_node_logs(page, live_server, users, fleet_data):
    login(page, live_server, "operator", PASSWORD)
    page.wait_for_url(f"{live_server.url}/")
    page.get_by_role("link", name="vm-1").first.click()
    page.wait_for_url(f"**/anomalies/{fleet_data.pk}/")
    assert "memory_leak" in page.locator("h1").inner_text()
    page.screenshot(path="test-artifacts/anomaly-page.png", full_page=True)

    # A day (1-minute rollups, 120 s steps) is an even grid, shipped as x0 + dx rather than
    # a list of timestamps: plotly must still place the hour of points where they were taken.
    page.goto(f"{live_server.url}/nodes/node-1/?range=24h")
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    first, last, count = plot.evaluate(
        "el => { const cd = el.calcdata[0]; return [cd[0].x, cd[cd.length - 1].x, cd.length]; }"
    )
    assert count >= 20 and 3_300_000 < last - first < 3_700_000, (first, last, count)
    assert abs(last - time.time() * 1000) < 180_000

    page.goto(f"{live_server.url}/nodes/node-1/?range=1h")
    assert "EXT4-fs error" in page.locator("table.logs").inner_text()
    chart = page.locator("[data-figure] .nsewdrag").first
    chart.wait_for()
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_url("**from=**")
    query = parse_qs(urlsplit(page.url).query)
    assert "range" not in query and float(query["to"][0]) > float(query["from"][0])


def test_drag_to_annotate(page, live_server, users, fleet_data):
    login(page, live_server, "operator", PASSWORD)
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/nodes/node-0/?range=1h")
    page.get_by_role("button", name="Annotate").click()
    page.once("dialog", lambda dialog: dialog.accept("kernel upgrade"))
    chart = page.locator("[data-figure] .nsewdrag").first
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    # The page posts the annotation in the background: wait for it to be committed.
    wait_for(lambda: Annotation.objects.exists(), timeout=30)
    note = Annotation.objects.get()
    assert (
        note.text == "kernel upgrade" and note.node.name == "node-0" and note.time_end > note.time
    )


def test_save_a_custom_dashboard(page, live_server, users, fleet_data):
    login(page, live_server, "operator", PASSWORD)
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/dashboards/new/")
    page.fill("#id_name", "Web tier")
    page.select_option("#id_variable", "node")
    page.fill("#id_panels-0-title", "VM CPU")
    page.fill("#id_panels-0-query", 'vm_cpu_utilization_ratio{node="$node"}')
    page.get_by_role("button", name="Add a panel").click()
    page.fill("#id_panels-1-query", 'host_cpu_utilization_ratio{node="$node"}')
    page.select_option("#id_panels-1-type", "stat")
    page.get_by_role("button", name="Save dashboard").click()
    page.wait_for_url("**/dashboards/web-tier/")
    assert Dashboard.objects.get().panels[1]["type"] == "stat"
    page.select_option("#var", "node-2")
    page.wait_for_url("**var=node-2**")
    assert page.locator("[data-figure] .main-svg").count() >= 2
