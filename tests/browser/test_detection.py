"""Detection pages in a real browser: the interference fleet view, a node's heat map, an
instance's P band and a what-if placement from the form; an operator labels an anomaly and a
viewer cannot. No console errors; screenshots kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.browser.conftest import login
from tests.conftest import PASSWORD, backfill_quiet_fleet, promote_artefact
from webapp.detection.interference import predict_fleet
from webapp.detection.models import Anomaly, InterferencePrediction, ModelVersion
from webapp.telemetry.models import Instance, Node

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def predicted_fleet(clean_store, interference_artefact):
    backfill_quiet_fleet(hours=1.0)
    promote_artefact("interference", interference_artefact)
    predict_fleet()
    assert InterferencePrediction.objects.exists()


def _plotted_traces(page) -> list[str]:
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    return plot.evaluate("el => el.data.map(t => t.type || 'scatter')")


def test_interference_fleet_node_instance_and_what_if(page, live_server, users, predicted_fleet):
    login(page, live_server, "viewer", PASSWORD)
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/interference/")
    rows = page.locator("table.table tbody tr")
    assert rows.count() == InterferencePrediction.objects.values("instance").distinct().count()

    # The node picker leads to the node's heat map, drawn by plotly.
    node = Node.objects.filter(instances__isnull=False).first()
    page.select_option("#node-pick", label=node.name)
    page.wait_for_url(f"**/interference/nodes/{node.name}/")
    assert "heatmap" in _plotted_traces(page)

    page.goto(f"{live_server.url}/interference/")
    instance = Instance.objects.filter(node=node).first()
    page.get_by_role("link", name=instance.name, exact=True).click()
    page.wait_for_url(f"**/interference/instances/{instance.name}/")
    assert _plotted_traces(page)

    # What-if from the form: the moved instance and every instance already on the target.
    target = Node.objects.exclude(pk=node.pk).filter(instances__isnull=False).first()
    page.goto(f"{live_server.url}/interference/")
    page.get_by_role("link", name="What-if placement").click()
    page.fill("#instance", instance.name)
    page.fill("#node", target.name)
    page.get_by_role("button", name="Predict").click()
    page.wait_for_url("**/what-if/?instance=**")
    table = page.locator("section.card table")
    assert f"{instance.name} (moved)" in table.inner_text()
    existing = set(Instance.objects.filter(node=target).values_list("name", flat=True))
    shown = table.locator("tbody tr td:first-child").all_inner_texts()
    assert set(shown) == existing
    p_after = float(table.locator("tbody tr").first.locator("td").nth(1).inner_text())
    assert 0.0 <= p_after <= 1.0

    # An unknown node is refused on the page with the reason, not a server error.
    page.fill("#node", "no-such-node")
    page.get_by_role("button", name="Predict").click()
    page.wait_for_url("**node=no-such-node**")
    assert "no-such-node" in page.get_by_role("alert").inner_text()


@pytest.fixture
def open_anomaly(clean_store):
    node = Node.objects.create(name="node-a")
    instance = Instance.objects.create(name="vm-a", node=node)
    version = ModelVersion.objects.create(
        kind="anomaly", version=1, status="promoted", training_state="succeeded"
    )
    end = datetime.now(tz=UTC) - timedelta(minutes=5)
    return Anomaly.objects.create(
        level="vm",
        instance=instance,
        start=end - timedelta(minutes=10),
        end=end,
        score=81.0,
        scenario="cpu_hog",
        attribution={"metrics": [["vm_cpu_utilization_ratio", 1.0]], "templates": []},
        model_version=version,
    )


def test_operator_labels_an_anomaly_and_a_viewer_cannot(page, live_server, users, open_anomaly):
    url = f"{live_server.url}/anomalies/{open_anomaly.pk}/"
    login(page, live_server, "viewer", PASSWORD)
    page.wait_for_url(f"{live_server.url}/")
    page.goto(url)
    assert "not labelled" in page.locator("dl").inner_text()
    assert page.get_by_role("form", name="Label this anomaly").count() == 0
    page.context.clear_cookies()

    login(page, live_server, "operator", PASSWORD)
    page.wait_for_url(f"{live_server.url}/")
    page.goto(url)
    form = page.get_by_role("form", name="Label this anomaly")
    form.locator("#label").select_option("false_positive")
    form.locator("#scenario").fill("noisy_neighbor")
    form.get_by_role("button", name="Save label").click()
    page.wait_for_url(url)
    assert "false positive · noisy_neighbor" in page.locator("dl").inner_text()
    labelled = Anomaly.objects.get(pk=open_anomaly.pk)
    assert (labelled.label, labelled.label_scenario) == ("false_positive", "noisy_neighbor")
    assert labelled.labeled_by == users.operator
