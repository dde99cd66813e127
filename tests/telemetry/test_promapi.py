"""The Prometheus HTTP API as Grafana's Prometheus data source calls it."""

from __future__ import annotations

import base64
import time

import pytest
from django.urls import reverse

from ingest.types import MetricBatch
from tests.conftest import bearer, series_samples
from webapp.telemetry import writer

NOW_S = int(time.time()) // 60 * 60


@pytest.fixture
def data(store):
    series = [
        series_samples(
            "node_load1",
            {"node": node, "job": "node"},
            [((NOW_S - 600 + i * 15) * 1000, float(i) * mult) for i in range(41)],
        )
        for node, mult in (("a", 1.0), ("b", 2.0))
    ]
    writer.write_metrics(MetricBatch(series=series), source="t", client="t")


def _basic(token):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"grafana:{token}".encode()).decode()}


def test_query_range_as_grafana_posts_it(client, data, make_token):
    token = make_token("read")
    response = client.post(
        reverse("prom_query_range"),
        {"query": 'node_load1{node="b"}', "start": NOW_S - 600, "end": NOW_S, "step": "60"},
        **_basic(token),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "matrix"
    (result,) = body["data"]["result"]
    assert result["metric"] == {"__name__": "node_load1", "node": "b", "job": "node"}
    assert result["values"][0] == [NOW_S - 600, "0"]
    assert result["values"][-1] == [NOW_S, "80"]
    assert len(result["values"]) == 11


def test_query_range_accepts_rfc3339_and_duration_steps(viewer_client, data):
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW_S - 300))
    response = viewer_client.get(
        reverse("prom_query_range"),
        {"query": "node_load1", "start": start, "end": NOW_S, "step": "1m"},
    )
    assert response.status_code == 200
    assert len(response.json()["data"]["result"]) == 2


def test_grafana_health_check_query(viewer_client):
    response = viewer_client.get(reverse("prom_query"), {"query": "1+1", "time": NOW_S})
    assert response.json()["data"] == {"resultType": "scalar", "result": [NOW_S, "2"]}


def test_instant_query_returns_latest_value(viewer_client, data):
    response = viewer_client.get(
        reverse("prom_query"), {"query": 'node_load1{node="a"}', "time": NOW_S}
    )
    (sample,) = response.json()["data"]["result"]
    assert sample["value"] == [NOW_S, "40"]


def test_series_labels_and_label_values(viewer_client, data):
    series = viewer_client.get(
        reverse("prom_series"), {"match[]": "node_load1", "start": 0, "end": NOW_S}
    ).json()
    assert sorted(s["node"] for s in series["data"]) == ["a", "b"]
    labels = viewer_client.get(reverse("prom_labels")).json()["data"]
    assert {"__name__", "node", "job"} <= set(labels)
    values = viewer_client.get(reverse("prom_label_values", args=["node"])).json()["data"]
    assert values == ["a", "b"]
    names = viewer_client.get(reverse("prom_label_values", args=["__name__"])).json()["data"]
    assert names == ["node_load1"]
    assert viewer_client.get(reverse("prom_buildinfo")).json()["status"] == "success"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"query": "rate(x[5m])", "start": 0, "end": 10, "step": 1}, "only plain series selectors"),
        ({"query": "up", "start": "yesterday", "end": 10, "step": 1}, 'invalid parameter "start"'),
        ({"query": "up", "start": 0, "end": 10, "step": "fast"}, 'invalid parameter "step"'),
        ({"query": "up", "start": 0, "end": 10_000_000, "step": 1}, "maximum resolution"),
        ({"query": "up", "start": 10, "end": 0, "step": 1}, "end timestamp must not be before"),
    ],
)
def test_errors_use_prometheus_shape(viewer_client, params, message):
    response = viewer_client.get(reverse("prom_query_range"), params)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert message in body["error"]


def test_read_api_auth(client, make_token, db):
    url = reverse("prom_labels")
    assert client.get(url).status_code == 401
    assert client.get(url, **bearer("tt_unknown")).status_code == 401
    assert client.get(url, **bearer(make_token("metrics:write"))).status_code == 403
    assert client.get(url, **bearer(make_token("read"))).status_code == 200


def test_own_range_api_with_aggregation(viewer_client, data):
    response = viewer_client.get(
        reverse("api_range"),
        {
            "match": 'node_load1{node="a"}',
            "start": NOW_S - 600,
            "end": NOW_S,
            "step": "300",
            "agg": "max",
        },
    )
    body = response.json()["data"]
    assert body["resolution"] == "raw"
    assert [p[1] for p in body["series"][0]["points"]] == [19.0, 39.0, 40.0]


def test_absurd_timestamps_are_clamped_not_crashing(viewer_client, data):
    response = viewer_client.get(
        reverse("prom_query_range"),
        {"query": "node_load1", "start": 1e15, "end": 1e15 + 60, "step": "15"},
    )
    assert response.status_code == 200 and response.json()["data"]["result"] == []
