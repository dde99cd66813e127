"""Grafana's annotations HTTP API, as deploy scripts call it."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import bearer
from webapp.incidents.models import Annotation
from webapp.telemetry.models import Node

NOW_MS = int(time.time() * 1000)


def post(client, body, **headers):
    return client.post(
        reverse("annotations"), json.dumps(body), content_type="application/json", **headers
    )


def test_round_trip_with_grafana_field_names(client, make_token):
    writer = make_token("annotations:write", "read", name="deploy-bot")
    response = post(
        client,
        {
            "time": NOW_MS - 60_000,
            "timeEnd": NOW_MS,
            "tags": ["deploy", "api"],
            "text": "Deploy v2.3.1",
            "dashboardUID": "abc",
            "panelId": 2,
        },
        **bearer(writer),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Annotation added" and isinstance(body["id"], int)
    listed = client.get(
        reverse("annotations"),
        {"from": NOW_MS - 3_600_000, "to": NOW_MS, "tags": "deploy"},
        **bearer(writer),
    ).json()
    (item,) = listed
    assert (item["time"], item["timeEnd"], item["text"], item["tags"]) == (
        NOW_MS - 60_000,
        NOW_MS,
        "Deploy v2.3.1",
        ["api", "deploy"],
    )
    assert item["dashboardUID"] == "abc" and item["panelId"] == 2 and item["login"] == "deploy-bot"
    url = reverse("annotation", args=[body["id"]])
    patched = client.patch(
        url,
        json.dumps({"text": "Deploy v2.3.2", "tags": ["deploy"]}),
        content_type="application/json",
        **bearer(writer),
    )
    assert patched.status_code == 200 and patched.json()["message"] == "Annotation patched"
    assert Annotation.objects.get().text == "Deploy v2.3.2" and Annotation.objects.get().tags == [
        "deploy"
    ]
    assert client.get(reverse("annotations"), {"tags": "api"}, **bearer(writer)).json() == []
    assert client.delete(url, **bearer(writer)).json()["message"] == "Annotation deleted"
    assert not Annotation.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"text": "no time"}, "time"),
        ({"time": "yesterday", "text": "x"}, "time"),
        ({"time": NOW_MS, "timeEnd": NOW_MS - 1, "text": "x"}, "timeEnd"),
        ({"time": NOW_MS}, "text"),
        ({"time": NOW_MS, "text": "x" * 10_001}, "text"),
        ({"time": NOW_MS, "text": "x", "tags": "deploy"}, "tags"),
        ({"time": NOW_MS, "text": "x", "tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"time": NOW_MS, "text": "x", "node": "nope"}, "node"),
        ({"time": NOW_MS, "text": "x", "label": "maybe"}, "label"),
    ],
)
def test_bad_requests_name_the_field(client, make_token, body, field):
    response = post(client, body, **bearer(make_token("annotations:write")))
    assert response.status_code == 400 and response.json()["field"] == field
    assert not Annotation.objects.exists()


def test_permissions(client, make_token, viewer_client, operator_client, admin_client, db):
    body = {"time": NOW_MS, "text": "x"}
    assert post(client, body).status_code == 401
    assert post(client, body, **bearer(make_token("read"))).status_code == 403
    assert post(viewer_client, body).status_code == 403
    assert post(operator_client, body).status_code == 200
    annotation_id = Annotation.objects.get().pk
    assert viewer_client.get(reverse("annotations")).status_code == 200
    assert operator_client.delete(reverse("annotation", args=[annotation_id])).status_code == 403
    assert admin_client.delete(reverse("annotation", args=[annotation_id])).status_code == 200


def test_session_writes_need_csrf(users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users.operator)
    assert post(client, {"time": NOW_MS, "text": "x"}).status_code == 403
    client.get(reverse("overview"))  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    assert post(client, {"time": NOW_MS, "text": "x"}, HTTP_X_CSRFTOKEN=token).status_code == 200


def test_annotations_show_on_the_node_charts(operator_client, store):
    from ingest.types import MetricBatch
    from tests.conftest import series_samples
    from webapp.telemetry import writer

    writer.write_metrics(
        MetricBatch(
            series=[
                series_samples(
                    "host_cpu_utilization_ratio",
                    {"node": "n1"},
                    [(NOW_MS - 60_000, 0.5), (NOW_MS, 0.6)],
                )
            ]
        ),
        source="t",
        client="t",
    )
    post(
        operator_client,
        {"time": NOW_MS - 30_000, "timeEnd": NOW_MS - 10_000, "text": "maintenance", "node": "n1"},
    )
    post(operator_client, {"time": NOW_MS - 30_000, "text": "global deploy"})
    Node.objects.create(name="other")
    post(operator_client, {"time": NOW_MS - 30_000, "text": "elsewhere", "node": "other"})
    page = operator_client.get(reverse("node_detail", args=["n1"]))
    shapes = dict(page.context["figures"])["host_cpu_utilization_ratio"]["layout"]["shapes"]
    names = {s["name"] for s in shapes}
    assert {"maintenance", "global deploy"} <= names and "elsewhere" not in names
