"""Unhealthy-node events in the app: recommendation from the promoted causal model (or the
runbook, saying so), an operator's action, the recorded outcome, history import."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests.conftest import bearer, promote_artefact
from webapp.detection.training import recorded_history
from webapp.mitigation import services
from webapp.mitigation.models import ActionOutcome, UnhealthyEvent
from webapp.telemetry.models import Node

SIGNALS = {
    "severity": 0.7,
    "error_count": 40,
    "node_age_days": 900,
    "hw_generation": 2,
    "instances_hosted": 6,
    "cpu_utilization": 0.5,
    "memory_utilization": 0.6,
    "recent_repairs": 1,
}


@pytest.fixture
def node(db):
    return Node.objects.create(
        name="node-7", cluster="eu1", rack="r1", hardware="gen2", cpu_cores=64
    )


def test_without_a_model_the_runbook_is_recommended_and_says_why(node):
    event, _ = services.open_unhealthy_event(node, "disk", SIGNALS)
    r = event.recommendations.get()  # every new event gets one, whoever opened it
    assert (
        r.action.key == "reboot_host"
        and r.fallback_reason == "no_model"
        and r.model_version is None
    )


def test_promoted_model_recommends_with_estimates(node, mitigation_artefact):
    version = promote_artefact("mitigation", mitigation_artefact)
    event, _ = services.open_unhealthy_event(node, "memory", SIGNALS)
    r = event.recommendations.get()
    assert r.model_version == version
    assert set(r.estimates) == {
        "observe",
        "reboot_host",
        "redeploy_instances",
        "live_migrate_then_repair",
        "mark_out_for_repair",
    }
    for estimate in r.estimates.values():
        assert estimate["low"] <= estimate["downtime"] <= estimate["high"]
    assert r.fallback_reason in ("", "out_of_distribution", "low_overlap", "uncertain")
    assert r.explanation and all(item["sentence"] for item in r.explanation)


def test_operator_applies_and_records_outcome_viewer_cannot(node, operator_client, viewer_client):
    event, _ = services.open_unhealthy_event(node, "nic", SIGNALS)
    apply_url = reverse("mitigation_apply", args=[event.pk])
    assert viewer_client.post(apply_url, {"action": "observe"}).status_code == 403
    operator_client.post(apply_url, {"action": "observe"})  # not the recommendation, no reason
    assert not ActionOutcome.objects.exists()
    operator_client.post(apply_url, {"action": "observe", "reason": "maintenance window tonight"})
    outcome = ActionOutcome.objects.get()
    assert outcome.action.key == "observe" and not outcome.followed_recommendation
    operator_client.post(
        reverse("mitigation_outcome", args=[event.pk]),
        {"downtime_minutes": 30, "interruptions": 1, "capacity_cost": 0},
    )
    event.refresh_from_db()
    assert event.status == "closed" and event.outcome.downtime_minutes == 30
    history = recorded_history()
    assert len(history) == 1 and history.iloc[0]["action"] == "observe"
    page = viewer_client.get(reverse("mitigation_event", args=[event.pk]))
    assert page.status_code == 200


def test_events_api_opens_once_and_validates(node, client, make_token):
    token = bearer(make_token("metrics:write"))
    body = {"node": "node-7", "fault_category": "disk", "signals": SIGNALS, "external_id": "hw-42"}

    def post(b):
        return client.post(
            reverse("mitigation_events_api"),
            json.dumps(b),
            content_type="application/json",
            **token,
        )

    first = post(body)
    assert first.status_code == 201 and first.json()["recommended_action"] == "reboot_host"
    assert post(body).status_code == 200 and UnhealthyEvent.objects.count() == 1
    assert post({**body, "node": "ghost"}).json()["field"] == "node"
    assert (
        post({**body, "fault_category": "gremlins", "external_id": "x"}).json()["field"]
        == "fault_category"
    )


def test_history_import_reports_row_errors(admin_client, operator_client, db):
    from django.core.files.uploadedfile import SimpleUploadedFile

    header = (
        "node,ts,event_id,fault,severity,error_count,node_age_days,hw_generation,instances_hosted,"
        "cpu_utilization,memory_utilization,recent_repairs,action,downtime_minutes,interruptions,"
        "capacity_cost_node_hours"
    )
    good = "node-a,2026-10-01T10:00:00Z,e1,disk,0.5,10,400,2,6,0.5,0.4,0,reboot_host,45,2,1"
    bad_action = "node-b,2026-10-02T10:00:00Z,e2,disk,0.5,10,400,2,6,0.5,0.4,0,pray,45,2,1"
    bad_severity = "node-c,2026-10-03T10:00:00Z,e3,nic,7,10,400,2,6,0.5,0.4,0,observe,5,0,0"
    data = "\n".join([header, good, bad_action, bad_severity]).encode()
    upload = lambda: SimpleUploadedFile("history.csv", data, content_type="text/csv")  # noqa: E731
    assert operator_client.post(reverse("mitigation_import"), {"file": upload()}).status_code == 403
    report = admin_client.post(reverse("mitigation_import"), {"file": upload()}).context["report"]
    assert report.imported == 1
    assert {(e["row"], e["column"]) for e in report.errors} == {(3, "action"), (4, "severity")}
    again = admin_client.post(reverse("mitigation_import"), {"file": upload()}).context["report"]
    assert again.imported == 0 and again.skipped_known == 1
    assert UnhealthyEvent.objects.get(external_id="e1").outcome.downtime_minutes == 45


def test_events_opened_before_a_model_get_its_recommendation_once_it_is_promoted(
    node, mitigation_artefact
):
    event, _ = services.open_unhealthy_event(node, "memory", SIGNALS)
    assert event.recommendations.get().fallback_reason == "no_model"
    version = promote_artefact("mitigation", mitigation_artefact)
    assert services.refresh_recommendations() == 1
    latest = event.recommendations.order_by("-created_at", "-pk").first()
    assert latest.model_version == version and event.recommendations.count() == 2
    assert services.refresh_recommendations() == 0  # up to date: nothing more
