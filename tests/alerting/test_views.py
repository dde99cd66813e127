"""Pages and the JSON API: who may do what, escaping, CSRF, the silence-from-alert flow
and the backtest in the rule editor."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.alerting.conftest import MIN, at, every, make_rule, write
from tests.alerting.test_dispatch import fire
from webapp.alerting.models import AlertInstance, AlertRule, Receiver, Route, Silence
from webapp.core.models import AuditEvent

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script>'


@pytest.fixture
def firing(users):
    rule = make_rule(name="HostCpuHigh", summary="{{ $labels.node }} is hot")
    fire(rule, 0, {"node": XSS, "cluster": "eu1"})
    return AlertInstance.objects.get()


PAGES = [
    ("alert_list", []),
    ("alert_history", []),
    ("silence_list", []),
    ("notification_list", []),
    ("rule_list", []),
    ("route_list", []),
]


@pytest.mark.parametrize("name, args", PAGES)
def test_viewers_read_every_alerting_page(viewer_client, firing, name, args):
    response = viewer_client.get(reverse(name, args=args))
    assert response.status_code == 200
    assert XSS.encode() not in response.content


def test_alert_pages_escape_user_text(viewer_client, firing):
    for url in (
        reverse("alert_list"),
        reverse("alert_detail", args=[firing.pk]),
        reverse("rule_detail", args=[firing.rule_id]),
        reverse("alert_history"),
    ):
        body = viewer_client.get(url).content
        assert XSS.encode() not in body, url
    detail = viewer_client.get(reverse("alert_detail", args=[firing.pk])).content.decode()
    assert "&lt;script&gt;" in detail
    assert "HostCpuHigh" in detail and "cluster=eu1" in detail


def test_viewer_cannot_acknowledge_or_silence(viewer_client, firing):
    assert viewer_client.post(reverse("alert_ack", args=[firing.pk])).status_code == 403
    assert viewer_client.get(reverse("silence_create")).status_code == 403
    response = viewer_client.post(
        reverse("silence_create"),
        {
            "matchers": 'node="n1"',
            "starts_at": "2030-01-01T00:00",
            "duration": "1h",
            "comment": "x",
        },
    )
    assert response.status_code == 403
    assert viewer_client.post(reverse("api_alert_ack", args=[firing.pk])).status_code == 403
    assert not Silence.objects.exists()
    page = viewer_client.get(reverse("alert_list")).content.decode()
    assert "Acknowledge</button>" not in page


def test_operator_acknowledges_and_silences_from_the_alert(operator_client, firing):
    response = operator_client.post(
        reverse("alert_ack", args=[firing.pk]), {"comment": "on it"}, follow=True
    )
    assert response.status_code == 200
    firing.refresh_from_db()
    assert firing.acknowledged_by.username == "operator" and firing.ack_comment == "on it"
    form = operator_client.get(reverse("silence_create") + f"?alert={firing.pk}")
    assert form.status_code == 200
    prefilled = form.context["form"].initial["matchers"]
    assert 'alertname="HostCpuHigh"' in prefilled and 'cluster="eu1"' in prefilled
    assert form.context["preview"] == [firing]
    response = operator_client.post(
        reverse("silence_create"),
        {
            "matchers": prefilled,
            "starts_at": timezone.now().strftime("%Y-%m-%dT%H:%M"),
            "duration": "2h",
            "comment": "disk swap",
        },
    )
    assert response.status_code == 302
    silence = Silence.objects.get()
    assert silence.created_by.username == "operator"
    assert AuditEvent.objects.filter(action="silence.created").exists()
    operator_client.post(reverse("silence_expire", args=[silence.pk]))
    silence.refresh_from_db()
    assert AuditEvent.objects.filter(action="silence.expired").exists()


def test_silence_form_validates(operator_client):
    response = operator_client.post(
        reverse("silence_create"),
        {"matchers": 'node=""', "starts_at": "2030-01-01T00:00", "duration": "1h", "comment": ""},
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "matchers" in errors and "comment" in errors


def test_operator_cannot_change_configuration(operator_client):
    for name in ("rule_create", "receiver_list", "receiver_create", "route_create"):
        assert operator_client.get(reverse(name)).status_code == 403, name
    response = operator_client.post(
        reverse("receiver_create"), {"name": "x", "kind": "webhook", "url": "http://h/"}
    )
    assert response.status_code == 403 and not Receiver.objects.exists()


def test_admin_edits_receivers_and_routes_audited(admin_client):
    response = admin_client.post(
        reverse("receiver_create"),
        {
            "name": "ops-hook",
            "kind": "webhook",
            "url": "http://127.0.0.1:9/x",
            "send_resolved": "on",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content
    receiver = Receiver.objects.get()
    assert receiver.config == {"url": "http://127.0.0.1:9/x", "max_alerts": 0}
    bad = admin_client.post(
        reverse("receiver_create"), {"name": "m", "kind": "email", "to": "nope"}
    )
    assert "not an email address" in bad.content.decode()
    response = admin_client.post(
        reverse("route_create"),
        {
            "name": "root",
            "receiver": receiver.pk,
            "group_by_text": "alertname, node",
            "group_wait_s": "30s",
            "group_interval_s": "5m",
            "repeat_interval_s": "4h",
            "position": 0,
        },
    )
    assert response.status_code == 302, response.content
    root = Route.objects.get()
    assert root.group_by == ["alertname", "node"] and root.repeat_interval_s == 14400
    second = admin_client.post(
        reverse("route_create"), {"name": "root2", "receiver": receiver.pk, "position": 0}
    )
    assert "there is a root route already" in second.content.decode()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"receiver.created", "route.created"} <= actions
    assert admin_client.get(reverse("route_list")).status_code == 200
    assert admin_client.get(reverse("receiver_list")).status_code == 200


RULE_FORM = {
    "name": "HostCpuHigh",
    "kind": "metric",
    "enabled": "on",
    "selector": 'host_cpu{cluster="eu1"}',
    "agg": "avg",
    "window_s": "1m",
    "op": ">",
    "threshold": "0.8",
    "for_s": "2m",
    "keep_firing_for_s": "",
    "interval_s": "1m",
    "severity": "critical",
    "labels_text": '{"team": "infra"}',
    "summary": "{{ $labels.node }} CPU {{ $value | humanizePercentage }}",
    "description": "",
    "log_min_severity": "0",
    "backtest_range": "6h",
}


def test_rule_editor_validates(admin_client):
    bad = dict(RULE_FORM, name="bad name", selector="rate(x[5m])", summary="{{ .Value }}")
    response = admin_client.post(reverse("rule_create"), dict(bad, action="save"))
    errors = response.context["form"].errors
    assert set(errors) >= {"name", "selector", "summary"}
    unhealthy = dict(RULE_FORM, kind="unhealthy")
    response = admin_client.post(reverse("rule_create"), dict(unhealthy, action="save"))
    assert "fault_category" in response.context["form"].errors
    assert not AlertRule.objects.exists()


def test_backtest_in_the_editor_before_saving(admin_client, store):
    import time

    now = int(time.time() * 1000) // MIN * MIN
    start = now - 5 * 3600_000
    write(
        "host_cpu",
        {"node": "n1", "cluster": "eu1"},
        every(start, now, lambda t: 0.95 if (t - start) // 3600_000 in (1, 3) else 0.2, 60_000),
    )
    write("host_cpu", {"node": "n2", "cluster": "eu1"}, every(start, now, 0.3, 60_000))
    response = admin_client.post(reverse("rule_create"), dict(RULE_FORM, action="backtest"))
    assert response.status_code == 200
    assert not AlertRule.objects.exists()  # a backtest never saves
    result = response.context["backtest"]
    assert len(result.alerts) == 1 and len(result.periods) == 2
    assert result.alerts[0].labels["node"] == "n1"
    assert result.notifications >= 2  # no routes yet: default timers, one per episode + repeat
    page = response.content.decode()
    assert 'data-testid="backtest"' in page and "backtest-figure" in page
    response = admin_client.post(reverse("rule_create"), dict(RULE_FORM, action="save"))
    assert response.status_code == 302
    rule = AlertRule.objects.get()
    assert (rule.window_s, rule.for_s, rule.labels) == (60, 120, {"team": "infra"})
    assert AuditEvent.objects.filter(action="alert_rule.created").exists()
    detail = admin_client.get(reverse("rule_detail", args=[rule.pk]) + "?backtest=6h")
    assert len(detail.context["backtest"].periods) == 2


def test_forms_carry_csrf_tokens(users, firing):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users.operator)
    assert client.post(reverse("alert_ack", args=[firing.pk])).status_code == 403
    page = client.get(reverse("alert_detail", args=[firing.pk])).content.decode()
    assert 'name="csrfmiddlewaretoken"' in page


def test_anonymous_is_refused_everywhere(client, firing):
    from tests.core.test_access import ALL, _concrete

    ours = [(n, p) for n, p in ALL if p.startswith(("alerts/", "api/alerting/"))]
    assert len(ours) >= 30
    for name, pattern in ours:
        url = _concrete(pattern)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code in (302, 401, 403), (name, method, response.status_code)
            if response.status_code == 302:
                assert "/login/" in response["Location"]


def test_json_api(viewer_client, operator_client, firing):
    data = viewer_client.get(reverse("api_alerts")).json()["data"]
    assert data[0]["labels"]["cluster"] == "eu1" and data[0]["status"] == "firing"
    response = operator_client.post(
        reverse("api_silences"),
        {"matchers": 'cluster="eu1"', "endsAt": at(10**13).isoformat(), "comment": "api"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert viewer_client.get(reverse("api_silences")).json()["data"][0]["status"]["state"] == (
        "active"
    )
    assert (
        viewer_client.post(
            reverse("api_silences"), {"matchers": "x"}, content_type="application/json"
        ).status_code
        == 403
    )
    ack = operator_client.post(reverse("api_alert_ack", args=[firing.pk]), {}, "application/json")
    assert ack.json()["data"]["acknowledgedBy"] == "operator"
    assert viewer_client.get(reverse("api_rules")).json()["data"][0]["name"] == "HostCpuHigh"


def test_seed_command_is_idempotent_and_its_rules_validate():
    from django.core.management import call_command

    from webapp.alerting.forms import AlertRuleForm

    call_command("alerting_seed", webhook="http://127.0.0.1:9/hook")
    call_command("alerting_seed", webhook="http://127.0.0.1:9/hook")
    rules = list(AlertRule.objects.all())
    assert len(rules) >= 8 and Route.objects.get().receiver.name == "webhook"
    for rule in rules:
        data = {
            f: getattr(rule, f)
            for f in AlertRuleForm.Meta.fields
            if hasattr(rule, f) and f not in ("enabled",)
        }
        data.update(
            enabled="on",
            labels_text="{}",
            log_templates="",
            log_group_by=rule.log_group_by,
            for_s=str(rule.for_s),
            keep_firing_for_s=str(rule.keep_firing_for_s),
            window_s=str(rule.window_s),
            interval_s=str(rule.interval_s),
        )
        form = AlertRuleForm(data)
        assert form.is_valid(), (rule.name, form.errors)


def test_send_test_notification_button(
    admin_client, django_capture_on_commit_callbacks, monkeypatch
):
    from tests.alerting.loopback import HookServer, assert_alertmanager_v4
    from webapp.alerting import delivery
    from workers import tasks

    # Delivered in this thread whatever the broker (the worker path is tested end to end).
    monkeypatch.setattr(tasks.deliver_notification, "delay", delivery.deliver)

    with HookServer() as hook:
        receiver = Receiver.objects.create(name="t", kind="webhook", config={"url": hook.url})
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(reverse("receiver_test", args=[receiver.pk]), follow=True)
    assert "Test notification" in response.content.decode()
    [message] = hook.payloads()
    from webapp.alerting.models import Notification

    assert Notification.objects.get(is_test=True).status == "sent"
    assert_alertmanager_v4(message)
    assert message["alerts"][0]["labels"]["alertname"] == "TelltaleTestNotification"
    log = admin_client.get(reverse("notification_list")).content.decode()
    assert "test</span>" in log and "ok</strong>" in log


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "log", "selector": "", "log_text": "oops", "log_group_by": ["node"]},
        {"kind": "absence", "absence_mode": "heartbeat", "selector": ""},
        {"kind": "absence", "absence_mode": "absent", "selector": 'job_ok{job="x"}'},
        {"kind": "anomaly", "selector": 'level="vm"', "op": ">="},
        {"kind": "unhealthy", "selector": "host_agent_up", "absence_mode": "up"},
    ],
)
def test_alert_and_rule_pages_render_for_every_kind(viewer_client, fields):
    rule = make_rule(name="K", **fields)
    fire(rule, 0, {"node": "n1"})
    alert = AlertInstance.objects.get()
    for url in (
        reverse("alert_detail", args=[alert.pk]),
        reverse("rule_detail", args=[rule.pk]) + "?backtest=6h",
        reverse("alert_list") + "?state=firing&q=node%3D%22n1%22",
    ):
        assert viewer_client.get(url).status_code == 200, url


def test_the_fleet_overview_lists_firing_alerts(firing):
    from webapp.alerting.overview import firing_now

    [row] = firing_now()
    assert row.name == "HostCpuHigh" and row.url == reverse("alert_detail", args=[firing.pk])
    assert "cluster=eu1" in row.labels_text and row.severity == "warning"
