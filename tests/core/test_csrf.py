"""Every URL refuses a logged-in admin's POST without a CSRF token.

A browser sends the session cookie with any cross-site form post; only the CSRF token
proves the request came from one of Telltale's own pages. The few exceptions are listed
here by name, each with the reason it is safe, and checked to stay that way.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from tests.core.test_access import ALL, _concrete
from webapp.core.models import AuditEvent, IngestToken

# Bearer-token ingest: no session is accepted, so a forged cross-site post carries no
# credentials at all (the browser cannot add an Authorization header cross-site).
BEARER_ONLY = {"remote_write", "otlp_metrics", "otlp_logs", "jsonl_logs", "simulator_truth"}
# Prometheus' query API accepts POST for long queries (Grafana sends them); it reads and
# never writes, and a cross-site page cannot read the answer.
READ_ONLY_POST = {
    "prom_query_range",
    "prom_query",
    "prom_series",
    "prom_labels",
    "prom_label_values",
    "prom_buildinfo",
    "prom_metadata",
    "what_if_api",  # a prediction, computed and returned; nothing is stored
}


def _csrf_refused(response) -> bool:
    return response.status_code == 403 and b"CSRF" in response.content


@pytest.fixture
def strict_admin(users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users.admin)
    return client


FORM = {"action": "comment", "text": "x", "name": "x", "role": "viewer"}
JSON = json.dumps({"text": "x", "node": "x", "fault_category": "x"})


@pytest.mark.django_db
@pytest.mark.parametrize("name, pattern", ALL)
def test_unsafe_requests_without_csrf_token_are_refused(strict_admin, name, pattern):
    url = _concrete(pattern)
    before = AuditEvent.objects.count()
    answers = {
        "POST form": strict_admin.post(url, FORM),
        "POST json": strict_admin.post(url, JSON, content_type="application/json"),
        **{
            method: getattr(strict_admin, method.lower())(
                url, JSON, content_type="application/json"
            )
            for method in ("PUT", "PATCH", "DELETE")
        },
    }
    codes = {m: r.status_code for m, r in answers.items()}
    if name in BEARER_ONLY:
        assert codes["POST form"] == codes["POST json"] == 401, f"{name} took a session: {codes}"
    elif name in READ_ONLY_POST:
        assert not any(_csrf_refused(r) for r in answers.values())
    else:
        # csrf_exempt views that serve tokens must check sessions themselves; a method the
        # view does not serve (read-only JSON APIs serve none) may answer 405 instead.
        assert all(_csrf_refused(r) or r.status_code == 405 for r in answers.values()), (
            f"{name} ({url}) answered {codes}"
        )
    assert AuditEvent.objects.count() == before


def test_the_exceptions_are_real_url_names():
    names = {name for name, _ in ALL}
    assert names >= BEARER_ONLY and names >= READ_ONLY_POST
    # Form views that must be covered by the walk above.
    for expected in (
        "login",
        "logout",
        "user_set_role",
        "token_list",
        "token_revoke",
        "incident_act",
        "annotations",
        "mitigation_import",
        "mitigation_events_api",
        "rule_create",
        "receiver_create",
        "admin:login",
    ):
        assert expected in names


def test_the_same_post_with_the_token_goes_through(strict_admin):
    page = strict_admin.get(reverse("token_list"))
    token = page.cookies["csrftoken"].value
    response = strict_admin.post(
        reverse("token_list"),
        {"name": "with-csrf", "scopes": ["read"], "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 200
    assert IngestToken.objects.filter(name="with-csrf").exists()


def test_session_writes_to_token_apis_need_the_csrf_token_too(strict_admin, make_token, db):
    # The annotation and mitigation APIs serve tokens (no CSRF) and sessions (CSRF).
    from webapp.telemetry.models import Node

    Node.objects.create(name="node-csrf")
    body = {"node": "node-csrf", "fault_category": "disk", "signals": {}}
    url = reverse("mitigation_events_api")
    refused = strict_admin.post(url, json.dumps(body), content_type="application/json")
    assert refused.status_code == 403
    strict_admin.get(reverse("token_list"))
    csrf = strict_admin.cookies["csrftoken"].value
    accepted = strict_admin.post(
        url, json.dumps(body), content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    assert accepted.status_code in (200, 201), accepted.content
    # A token client needs no CSRF token.
    raw = make_token("metrics:write")
    with_token = Client(enforce_csrf_checks=True).post(
        url,
        json.dumps({**body, "external_id": "t-1"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert with_token.status_code in (200, 201), with_token.content
