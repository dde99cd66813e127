from __future__ import annotations

import plotly.graph_objects as go
import pytest
from django.urls import reverse

from tests.dashboards.test_pages import fleet
from webapp.dashboards import services
from webapp.dashboards.models import Dashboard


def _post(client, url, name="CPU by node", variable="node", panels=None):
    panels = panels or [
        {
            "title": "VM CPU",
            "query": 'vm_cpu_utilization_ratio{node="$node"}',
            "agg": "avg",
            "type": "line",
            "unit": "ratio",
        },
        {
            "title": "Host CPU now",
            "query": 'host_cpu_utilization_ratio{node="$node"}',
            "agg": "last",
            "type": "stat",
            "unit": "ratio",
        },
    ]
    data = {
        "name": name,
        "description": "per node",
        "variable": variable,
        "panels-TOTAL_FORMS": str(len(panels)),
        "panels-INITIAL_FORMS": "0",
        "panels-MIN_NUM_FORMS": "0",
        "panels-MAX_NUM_FORMS": "24",
    }
    for i, p in enumerate(panels):
        for key, value in p.items():
            data[f"panels-{i}-{key}"] = value
    return client.post(url, data)


def test_operator_saves_a_dashboard_and_its_url_is_shareable(operator_client, viewer_client, store):
    fleet(2)
    response = _post(operator_client, reverse("dashboard_create"))
    assert response.status_code == 302
    dashboard = Dashboard.objects.get()
    assert dashboard.slug == "cpu-by-node" and len(dashboard.panels) == 2
    shared = viewer_client.get(
        reverse("dashboard_view", args=["cpu-by-node"]), {"var": "node-01", "range": "6h"}
    )
    assert shared.status_code == 200 and shared.context["value"] == "node-01"
    line, stat = shared.context["panels"]
    assert line["error"] is None and len(line["figure"]["data"]) == 2
    go.Figure(line["figure"])
    go.Figure(stat["figure"])
    assert stat["figure"]["data"][0]["type"] == "indicator"


def test_invalid_panel_is_refused_naming_the_panel(operator_client):
    response = _post(
        operator_client,
        reverse("dashboard_create"),
        panels=[{"title": "x", "query": "rate(up[5m])", "agg": "avg", "type": "line", "unit": ""}],
    )
    assert response.status_code == 200
    assert "panel 1, query" in response.context["error"]
    assert not Dashboard.objects.exists()


def test_unknown_variable_is_refused():
    with pytest.raises(services.PanelError, match="unknown variable"):
        services.clean_panels([{"query": 'up{node="$instance"}'}], "node")


def test_variable_values_are_escaped_into_the_selector():
    query = services.substitute('up{node="$node"}', "node", 'evil"} or {x="1')
    assert query == 'up{node="evil\\"} or {x=\\"1"}'


def test_viewer_cannot_save_dashboards(viewer_client):
    assert _post(viewer_client, reverse("dashboard_create")).status_code == 403
    assert not Dashboard.objects.exists()


def test_edit_and_delete(operator_client, store):
    _post(operator_client, reverse("dashboard_create"))
    _post(operator_client, reverse("dashboard_edit", args=["cpu-by-node"]), name="Renamed")
    dashboard = Dashboard.objects.get()
    assert dashboard.name == "Renamed" and dashboard.slug == "renamed"
    operator_client.post(reverse("dashboard_delete", args=["renamed"]))
    assert not Dashboard.objects.exists()
