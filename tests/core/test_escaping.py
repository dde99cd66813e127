"""Hostile text from ingest and from colleagues is escaped on every page that shows it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.core import hostile


@pytest.fixture
def seeded(store, users, make_token, admin_client, operator_client):
    hostile.ingest(Client(), make_token("metrics:write", "logs:write", "annotations:write"))
    incident_id, anomaly_id = hostile.incident_and_anomaly()
    # Through the UI: a comment, a chart annotation (as charts.js posts it), a failed login.
    operator_client.post(
        reverse("incident_act", args=[incident_id]), {"action": "comment", "text": hostile.COMMENT}
    )
    import json
    import time

    now = int(time.time() * 1000)
    response = operator_client.post(
        reverse("annotations"),
        json.dumps(
            {"time": now - 600_000, "timeEnd": now - 300_000, "text": hostile.ANNOTATION_UI,
             "node": hostile.NODE, "incident": incident_id, "tags": ["ui"]}
        ),
        content_type="application/json",
    )  # fmt: skip
    assert response.status_code == 200, response.content
    Client().post(reverse("login"), {"username": hostile.IMG, "password": "x"})
    return hostile.Seeded(hostile.NODE, incident_id, anomaly_id)


def test_every_page_escapes_hostile_text(admin_client, seeded):
    shown = {}
    for path, expected in hostile.pages(seeded).items():
        response = admin_client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        for payload in hostile.PAYLOADS:
            assert payload not in html, f"{path} renders {payload!r} unescaped"
        assert "onerror=window.__xss=1>" not in html, path
        assert 'href="javascript:' not in html, path
        if expected:
            assert hostile.escaped(expected) in html, f"{path} does not show {expected!r}"
        shown[path] = html
    incident = shown[reverse("incident_detail", args=[seeded.incident_id])]
    # The comment keeps its Markdown and shows the typed HTML as text.
    assert "<strong>note</strong>" in incident
    assert hostile.escaped(hostile.SCRIPT) in incident
    node_page = shown[reverse("node_detail", args=[seeded.node_name]) + "?range=1h"]
    # Annotations reach the chart as JSON in a <script type="application/json">: < is \u003C.
    assert "deploy \\u003Cimg src=x onerror=window.__xss=1\\u003E" in node_page


def test_markdown_comment_shows_raw_html_as_text():
    from webapp.incidents.markdown import render

    html = render(f"**b** {hostile.IMG}\n\n<div onclick=x>block</div>\n\n`<i>`")
    assert "<strong>b</strong>" in html
    assert hostile.escaped(hostile.IMG) in html and "<img" not in html
    assert "&lt;div onclick=x&gt;block&lt;/div&gt;" in html
    assert "<code>&lt;i&gt;</code>" in html


def test_runbook_link_only_for_web_urls(viewer_client, db):
    # Annotations are templated from label values, which ingest clients choose.
    from webapp.alerting.models import AlertInstance, AlertRule

    rule = AlertRule.objects.create(name="cpu_high", selector="host_cpu", summary="x")
    for n, (url, linked) in enumerate(
        (("https://wiki.example/run", True), ("javascript:window.__xss=1", False))
    ):
        alert = AlertInstance.objects.create(
            rule=rule, fingerprint=f"f{n}", labels={"alertname": "cpu_high"},
            annotations={"runbook_url": url}, state="firing",
        )  # fmt: skip
        html = viewer_client.get(reverse("alert_detail", args=[alert.pk])).content.decode()
        assert url in html
        assert (f'href="{url}"' in html) is linked
