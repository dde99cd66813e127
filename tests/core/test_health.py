from __future__ import annotations

import time

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


def test_metrics_count_ingested_samples(client, store, make_token):
    from ingest.remote_write import encode_remote_write
    from tests.conftest import series_samples

    reader = make_token("read", "metrics:write")

    def ingested() -> float:
        text = client.get(reverse("metrics"), **bearer(reader)).content.decode()
        for line in text.splitlines():
            if line.startswith('telltale_ingest_samples_total{source="remote_write"}'):
                return float(line.split()[-1])
        return 0.0

    before = ingested()
    now = int(time.time() * 1000)
    body = encode_remote_write(
        [series_samples("m", {"node": "a"}, [(now - 1000, 1.0), (now, 2.0)])]
    )
    response = client.post(
        reverse("remote_write"),
        body,
        content_type="application/x-protobuf",
        HTTP_AUTHORIZATION=f"Bearer {reader}",
        HTTP_CONTENT_ENCODING="snappy",
    )
    assert response.status_code == 204
    assert ingested() == before + 2
