from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.urls import reverse

from ingest.types import LogBatch, LogEntry
from webapp.incidents import services
from webapp.incidents.models import Incident
from webapp.telemetry import writer
from webapp.telemetry.models import Node

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _incident(node_name="node-a"):
    node = Node.objects.get_or_create(name=node_name)[0]
    start = datetime.now(tz=UTC) - timedelta(minutes=10)
    services.record_signal(
        "alert", f"a-{node_name}", title="CPU high", start=start, node=node, severity="critical"
    )
    return Incident.objects.get(node=node)


def test_comment_and_log_line_xss_is_inert(operator_client, db):
    incident = _incident()
    writer.write_logs(
        LogBatch(entries=[LogEntry(ts_ns=time.time_ns() - 60 * 10**9, message=XSS, node="node-a")]),
        source="t",
        client="t",
        batch_digest=b"x",
    )
    operator_client.post(
        reverse("incident_act", args=[incident.pk]),
        {"action": "comment", "text": f"**bold** [link](javascript:alert(2)) {XSS}"},
    )
    html = operator_client.get(reverse("incident_detail", args=[incident.pk])).content.decode()
    assert "<strong>bold</strong>" in html  # Markdown is rendered…
    assert "<script>alert" not in html and "onerror=alert" not in html.replace(
        "onerror=alert(1)&gt;", ""
    )
    assert "javascript:alert" not in html
    assert (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    )  # …and the log line shown as text


def test_operator_changes_state_assigns_labels_and_viewer_cannot(
    operator_client, viewer_client, users, db
):
    incident = _incident()
    url = reverse("incident_act", args=[incident.pk])
    assert viewer_client.post(url, {"action": "state", "state": "acknowledged"}).status_code == 403
    operator_client.post(url, {"action": "state", "state": "acknowledged"})
    operator_client.post(url, {"action": "assign", "user": users.operator.pk})
    operator_client.post(url, {"action": "label", "label": "true_positive", "scenario": "cpu_hog"})
    operator_client.post(url, {"action": "title", "title": "CPU hog on node-a"})
    incident.refresh_from_db()
    assert (incident.state, incident.assignee, incident.label, incident.title) == (
        "acknowledged",
        users.operator,
        "true_positive",
        "CPU hog on node-a",
    )
    kinds = list(incident.timeline.values_list("kind", flat=True))
    assert kinds[-4:] == ["state", "assign", "label", "title"]


def test_admin_edits_correlation_rules_operator_cannot(operator_client, admin_client, db):
    form = {
        "name": "per instance",
        "enabled": "on",
        "match_on": "instance",
        "window_minutes": 15,
        "min_signals": 1,
        "reopen_minutes": 30,
        "priority": 5,
    }
    assert operator_client.post(reverse("correlation_rules"), form).status_code == 403
    assert admin_client.post(reverse("correlation_rules"), form).status_code == 302
    assert (
        admin_client.get(reverse("correlation_rules"))
        .context["rules"]
        .filter(name="per instance")
        .exists()
    )


def test_postmortem_exports(viewer_client, operator_client, db):
    incident = _incident()
    operator_client.post(
        reverse("incident_act", args=[incident.pk]),
        {"action": "comment", "text": "root cause: a noisy neighbour"},
    )
    md = viewer_client.get(reverse("incident_export", args=[incident.pk, "md"]))
    text = md.content.decode()
    assert md["Content-Type"].startswith("text/markdown")
    assert (
        f"# Incident #{incident.pk}: CPU high" in text and "root cause: a noisy neighbour" in text
    )
    data = viewer_client.get(reverse("incident_export", args=[incident.pk, "json"])).json()
    assert data["signals"][0]["kind"] == "alert" and any(
        e["kind"] == "comment" for e in data["timeline"]
    )
    assert "charts" in data


def test_lists_and_detail_render(viewer_client, db):
    incident = _incident()
    assert incident.title in viewer_client.get(reverse("incident_list")).content.decode()
    assert viewer_client.get(reverse("incident_detail", args=[incident.pk])).status_code == 200


def test_each_signal_links_to_what_fired(viewer_client, db):
    """From an incident, one click reaches the anomaly's explanation, the slowed instance's
    neighbours, the alert or the unhealthy event."""
    from webapp.telemetry.models import Instance

    node = Node.objects.create(name="node-l")
    vm = Instance.objects.create(name="vm-l", node=node)
    start = datetime.now(tz=UTC) - timedelta(minutes=5)
    for kind, source in (("alert", "17:1764500000000"), ("anomaly", "42"), ("interference", "9:1")):
        services.record_signal(kind, source, title=f"{kind} fired", start=start, instance=vm)
    incident = Incident.objects.filter(signals__kind="anomaly").get()
    page = viewer_client.get(reverse("incident_detail", args=[incident.pk])).content.decode()
    for url in (
        reverse("alert_detail", args=[17]),
        reverse("anomaly_detail", args=[42]),
        reverse("interference_instance", args=["vm-l"]),
    ):
        assert f'href="{url}"' in page
    from webapp.incidents.models import Signal

    assert Signal(kind="unhealthy", source_id="5").source_url() == reverse(
        "mitigation_event", args=[5]
    )
    assert Signal(kind="unhealthy", source_id="bogus").source_url() == ""
    assert Signal(kind="interference", source_id="9:1").source_url() == ""  # no instance
