"""Security-relevant actions leave an AuditEvent, and admins (only) can page through them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.conftest import PASSWORD
from webapp.core import services
from webapp.core.models import AuditEvent, IngestToken


def _actions(**filters) -> list[str]:
    return list(AuditEvent.objects.filter(**filters).values_list("action", flat=True))


def test_token_created_and_revoked_through_the_pages(admin_client, users):
    admin_client.post(reverse("token_list"), {"name": "edge-1", "scopes": ["metrics:write"]})
    token = IngestToken.objects.get(name="edge-1")
    admin_client.post(reverse("token_revoke", args=[token.pk]))
    created = AuditEvent.objects.get(action="token.created", target="edge-1")
    assert created.actor == users.admin and created.detail == {"scopes": ["metrics:write"]}
    assert AuditEvent.objects.get(action="token.revoked", target="edge-1").actor == users.admin


def test_role_change_and_user_creation(admin_client, users):
    admin_client.post(
        reverse("user_list"),
        {"username": "newbie", "password": "a-long-unusual-pass-77", "role": "viewer"},
    )
    admin_client.post(
        reverse("user_set_role", args=[type(users.admin).objects.get(username="newbie").pk]),
        {"role": "operator"},
    )
    assert _actions(target="newbie") == ["user.role_changed", "user.role_changed", "user.created"]
    latest = AuditEvent.objects.filter(target="newbie").first()
    assert latest.detail == {"before": "viewer", "after": "operator"}
    assert latest.actor == users.admin


def test_alert_rule_and_receiver_changes(users):
    from webapp.alerting import services as alerting
    from webapp.alerting.models import AlertRule, Receiver

    rule = alerting.save_config(
        AlertRule(name="cpu_high", selector="host_cpu", threshold=0.9, summary="CPU high"),
        users.admin,
    )
    rule.threshold = 0.95
    alerting.save_config(rule, users.admin)
    alerting.delete_config(rule, users.admin)
    hook = alerting.save_config(
        Receiver(name="ops", kind="webhook", config={"url": "http://127.0.0.1:9/"}), users.admin
    )
    alerting.delete_config(hook, users.admin)
    assert _actions(actor=users.admin) == [
        "receiver.deleted",
        "receiver.created",
        "alert_rule.deleted",
        "alert_rule.changed",
        "alert_rule.created",
    ]


def test_login_outcomes_are_audited(client, users):
    client.post(reverse("login"), {"username": "viewer", "password": "nope"})
    client.post(reverse("login"), {"username": "viewer", "password": PASSWORD})
    assert _actions(target="viewer", action__startswith="login.") == [
        "login.succeeded",
        "login.failed",
    ]


@pytest.mark.parametrize("who", ["viewer_client", "operator_client"])
def test_only_admins_read_the_audit_log(request, who):
    assert request.getfixturevalue(who).get(reverse("audit_log")).status_code == 403


def test_audit_log_pages_and_filters(admin_client, users):
    AuditEvent.objects.all().delete()
    for n in range(120):
        services.audit(users.admin, "token.created", f"t-{n:03}")
    services.audit(None, "login.failed", "mallory", ip="192.0.2.1")
    first = admin_client.get(reverse("audit_log"))
    assert first.status_code == 200
    page = first.context["page"]
    assert page.paginator.count == 121 and len(page.object_list) == 50
    assert page.object_list[0].target == "mallory"  # newest first
    third = admin_client.get(reverse("audit_log"), {"page": 3})
    assert [e.target for e in third.context["page"].object_list][-1] == "t-000"
    assert "page 3 of 3" in third.content.decode()
    only = admin_client.get(reverse("audit_log"), {"action": "login"})
    assert [e.action for e in only.context["page"].object_list] == ["login.failed"]
    assert admin_client.get(reverse("audit_log"), {"page": "junk"}).status_code == 200


def test_audit_page_lists_each_query_once(admin_client, users, django_assert_max_num_queries):
    for n in range(60):
        services.audit(users.admin, "token.revoked", f"t-{n}")
    with django_assert_max_num_queries(12):
        assert admin_client.get(reverse("audit_log")).status_code == 200
