"""Viewer reads, operator acts, admin configures; a user without a role sees nothing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.conftest import PASSWORD
from webapp.core import roles
from webapp.core.models import AuditEvent, IngestToken
from webapp.core.services import hash_token

ADMIN_PAGES = ("user_list", "token_list", "audit_log", "scrape_target_list")


def test_role_hierarchy(users):
    assert roles.role_of(users.viewer) == "viewer"
    assert roles.has_role(users.admin, "operator") and roles.has_role(users.admin, "viewer")
    assert not roles.has_role(users.operator, "admin")
    assert roles.role_of(users.outsider) is None


def test_user_without_role_is_refused_everywhere(client, users):
    client.force_login(users.outsider)
    assert client.get(reverse("overview")).status_code == 403
    assert client.get(reverse("api_series"), {"match": "up"}).status_code == 401


def test_login_page_logs_in_and_respects_safe_next(client, users):
    response = client.post(
        reverse("login") + "?next=/nodes/",
        {"username": "viewer", "password": PASSWORD, "next": "/nodes/"},
    )
    assert response.status_code == 302 and response["Location"] == "/nodes/"
    client.logout()
    response = client.post(
        reverse("login"),
        {"username": "viewer", "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert response.status_code == 302 and "evil.example" not in response["Location"]


def test_wrong_password_is_refused(client, users):
    response = client.post(reverse("login"), {"username": "viewer", "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_viewer_and_operator_cannot_open_admin_pages(viewer_client, operator_client, page):
    assert viewer_client.get(reverse(page)).status_code == 403
    assert operator_client.get(reverse(page)).status_code == 403


@pytest.mark.parametrize("page", (*ADMIN_PAGES, "overview", "node_list", "explore", "settings"))
def test_admin_opens_every_page(admin_client, page):
    assert admin_client.get(reverse(page)).status_code == 200


def test_viewer_reads_pages(viewer_client):
    for page in ("overview", "node_list", "explore", "settings"):
        assert viewer_client.get(reverse(page)).status_code == 200


def test_admin_creates_token_shown_once_and_stored_hashed(admin_client, users):
    response = admin_client.post(
        reverse("token_list"), {"name": "prom-eu1", "scopes": ["metrics:write", "read"]}
    )
    assert response.status_code == 200
    raw = response.context["new_token"]
    assert raw.startswith("tt_") and raw.encode() in response.content
    token = IngestToken.objects.get(name="prom-eu1")
    assert token.token_hash == hash_token(raw) and raw not in (token.token_hash, token.prefix)
    assert sorted(token.scopes) == ["metrics:write", "read"]
    assert raw.encode() not in admin_client.get(reverse("token_list")).content
    assert AuditEvent.objects.filter(
        action="token.created", target="prom-eu1", actor=users.admin
    ).exists()


def test_viewer_cannot_create_or_revoke_tokens(viewer_client, make_token):
    make_token(name="existing")
    token = IngestToken.objects.get(name="existing")
    assert (
        viewer_client.post(reverse("token_list"), {"name": "x", "scopes": ["read"]}).status_code
        == 403
    )
    assert viewer_client.post(reverse("token_revoke", args=[token.pk])).status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None and not IngestToken.objects.filter(name="x").exists()


def test_admin_revokes_token(admin_client, make_token):
    make_token(name="old")
    token = IngestToken.objects.get(name="old")
    admin_client.post(reverse("token_revoke", args=[token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoked", target="old").exists()


def test_admin_changes_roles_and_it_is_audited(admin_client, users):
    admin_client.post(reverse("user_set_role", args=[users.viewer.pk]), {"role": "operator"})
    users.viewer.refresh_from_db()
    assert roles.role_of(type(users.viewer).objects.get(pk=users.viewer.pk)) == "operator"
    event = AuditEvent.objects.filter(action="user.role_changed", target="viewer").latest("id")
    assert event.detail == {"before": "viewer", "after": "operator"}
    assert event.actor == users.admin


def test_admin_cannot_demote_self(admin_client, users):
    admin_client.post(reverse("user_set_role", args=[users.admin.pk]), {"role": "viewer"})
    fresh = type(users.admin).objects.get(pk=users.admin.pk)
    assert roles.role_of(fresh) == "admin"


def test_admin_creates_user_with_role(admin_client):
    response = admin_client.post(
        reverse("user_list"),
        {
            "username": "newbie",
            "password": "a-long-enough-pass-91",
            "role": "operator",
            "email": "",
        },
    )
    assert response.status_code == 302
    from django.contrib.auth import get_user_model

    assert roles.role_of(get_user_model().objects.get(username="newbie")) == "operator"
