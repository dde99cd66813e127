"""Ingest tokens on every receiver: scopes enforced, revocation effective, both audited."""

from __future__ import annotations

import base64
import json
import time

import pytest
from django.urls import reverse

from ingest.remote_write import encode_remote_write
from ingest.types import SeriesSamples
from webapp.core.models import AuditEvent, IngestToken
from webapp.core.services import create_ingest_token, hash_token, revoke_ingest_token
from webapp.telemetry.models import LogRecord, Series

NOW_MS = int(time.time() * 1000)
RW_BODY = encode_remote_write(
    [SeriesSamples((("__name__", "up"), ("node", "a")), [NOW_MS - 1000], [1.0])]
)
JSONL_BODY = json.dumps({"message": "hello"}).encode()
OTLP_JSON = json.dumps({"resourceLogs": []}).encode()

# endpoint -> (scope it needs, body, content type, extra headers)
ENDPOINTS = {
    "remote_write": ("metrics:write", RW_BODY, "application/x-protobuf", "snappy"),
    "otlp_metrics": ("metrics:write", b'{"resourceMetrics": []}', "application/json", ""),
    "otlp_logs": ("logs:write", OTLP_JSON, "application/json", ""),
    "jsonl_logs": ("logs:write", JSONL_BODY, "application/x-ndjson", ""),
}


def post(client, endpoint: str, authorization: str | None):
    _, body, content_type, encoding = ENDPOINTS[endpoint]
    headers = {}
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    if encoding:
        headers["HTTP_CONTENT_ENCODING"] = encoding
    return client.post(reverse(endpoint), body, content_type=content_type, **headers)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_scopes_are_enforced_on_every_receiver(client, store, endpoint):
    needed = ENDPOINTS[endpoint][0]
    others = [s for s in IngestToken.SCOPES if s != needed]
    for i, scopes in enumerate((["read"], ["annotations:write"], others)):
        _, raw = create_ingest_token(f"without-{i}-{endpoint}", scopes)
        response = post(client, endpoint, f"Bearer {raw}")
        assert response.status_code == 403, (scopes, response.content)
        assert needed in response.json()["error"] and response.json()["field"] == "Authorization"
    _, raw = create_ingest_token(f"with-{endpoint}", [needed])
    assert post(client, endpoint, f"Bearer {raw}").status_code in (200, 204)
    assert not LogRecord.objects.exclude(message="hello").exists()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_revoked_token_gets_401_everywhere(client, store, endpoint):
    token, raw = create_ingest_token(f"soon-revoked-{endpoint}", list(IngestToken.SCOPES))
    assert post(client, endpoint, f"Bearer {raw}").status_code in (200, 204)
    revoke_ingest_token(token)
    for authorization in (
        f"Bearer {raw}",
        "Basic " + base64.b64encode(f"u:{raw}".encode()).decode(),
    ):
        response = post(client, endpoint, authorization)
        assert response.status_code == 401, response.content
        assert response.json()["error"] == "unknown or revoked ingest token"


def test_revoked_in_the_settings_page_is_refused_at_once(client, admin_client, store):
    token, raw = create_ingest_token("via-page", ["metrics:write"])
    assert post(client, "remote_write", f"Bearer {raw}").status_code == 204
    admin_client.post(reverse("token_revoke", args=[token.pk]))
    assert post(client, "remote_write", f"Bearer {raw}").status_code == 401
    assert Series.objects.count() == 1


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Token abc",
        "Basic !!!",
        "Bearer tt_" + "A" * 43,
        "Bearer \x00",
    ],
)
def test_missing_or_malformed_credentials_get_401(client, db, authorization):
    response = post(client, "jsonl_logs", authorization)
    assert response.status_code == 401
    assert response.json()["field"] == "Authorization"
    assert not LogRecord.objects.exists()


def test_only_the_hash_is_stored_and_events_are_audited(db, users):
    token, raw = create_ingest_token("audited", ["logs:write"], actor=users.admin)
    assert raw not in str(IngestToken.objects.filter(pk=token.pk).values().get())
    assert token.token_hash == hash_token(raw)
    created = AuditEvent.objects.get(action="token.created", target="audited")
    assert created.actor == users.admin and created.detail == {"scopes": ["logs:write"]}
    revoke_ingest_token(token, actor=users.admin)
    revoke_ingest_token(token, actor=users.admin)  # twice: one event
    revoked = AuditEvent.objects.filter(action="token.revoked", target="audited")
    assert revoked.count() == 1 and revoked.get().actor == users.admin
