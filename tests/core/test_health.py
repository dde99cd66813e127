from __future__ import annotations

import pytest
from django.urls import reverse

from tests.conftest import bearer


def test_healthz_is_public(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_ok(client):
    response = client.get(reverse("readyz"))
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok" and body["broker"].startswith("ok")


@pytest.mark.django_db
def test_readyz_names_a_stopped_broker(client, settings):
    # Nothing listens on port 1: the broker is "stopped".
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get(reverse("readyz"))
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"].startswith("down:") and body["status"] == "not ready"


@pytest.mark.django_db
def test_metrics_need_a_login_or_read_token(client, make_token):
    assert client.get(reverse("metrics")).status_code == 401
    write_only = make_token("metrics:write")
    assert client.get(reverse("metrics"), **bearer(write_only)).status_code == 401
    reader = make_token("read")
    response = client.get(reverse("metrics"), **bearer(reader))
    assert response.status_code == 200
    text = response.content.decode()
    assert "telltale_http_requests_total" in text
    assert "telltale_queue_depth" in text


def test_metrics_for_logged_in_viewer(viewer_client):
    viewer_client.get(reverse("overview"))
    response = viewer_client.get(reverse("metrics"))
    assert response.status_code == 200
    assert 'view="overview"' in response.content.decode()


def test_metrics_public_when_configured(client, settings, db):
    settings.TELLTALE_METRICS_PUBLIC = True
    assert client.get(reverse("metrics")).status_code == 200
