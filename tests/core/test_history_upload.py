"""The mitigation history upload refuses oversize and malformed files with a clear 4xx."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from webapp.mitigation.forms import MAX_IMPORT_BYTES
from webapp.mitigation.models import UnhealthyEvent

GOOD_CSV = (
    "node,fault,severity,error_count,node_age_days,hw_generation,instances_hosted,"
    "cpu_utilization,memory_utilization,recent_repairs,action,downtime_minutes\n"
    "node-up,disk,0.5,3,100,3,10,0.5,0.5,0,reboot_host,12\n"
)


def _post(client, name: str, data: bytes):
    return client.post(reverse("mitigation_import"), {"file": SimpleUploadedFile(name, data)})


def _error_text(response) -> str:
    return " ".join(response.context["form"].errors.get("file", []))


def test_oversize_file_is_refused_with_413(admin_client):
    big = GOOD_CSV.encode() + b"x" * MAX_IMPORT_BYTES
    response = _post(admin_client, "history.csv", big)
    assert response.status_code == 413
    assert "limit is 5 MB" in _error_text(response) or "larger than 5 MB" in _error_text(response)
    assert "5 MB" in response.content.decode()
    assert not UnhealthyEvent.objects.exists()


def test_oversize_body_is_refused_before_it_is_read(admin_client):
    response = admin_client.post(
        reverse("mitigation_import"),
        {"file": SimpleUploadedFile("h.csv", b"x" * (MAX_IMPORT_BYTES + 100 * 1024))},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    "name, data, expected",
    [
        ("history.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("history.csv", "node,fault\n\u00e9t\u00e9,disk\n".encode("latin-1"), "not UTF-8"),
        ("history.json", b'{"node": "a"', "unreadable file"),
        ("history.json", b'{"node": "a"}', "list of objects"),
        ("history.json", json.dumps([{"node": {"nested": 1}}]).encode(), "every JSON value"),
        ("history.csv", b"", "empty"),
        ("history.csv", b"colour,size\nred,3\n", "node is missing"),
        ("history.csv", b"node,size\nn1,3\n", "required columns are missing"),
        ("history.exe", GOOD_CSV.encode(), "neither .csv nor .json"),
    ],
)
def test_malformed_files_are_refused_with_400(admin_client, name, data, expected):
    response = _post(admin_client, name, data)
    assert response.status_code == 400, response.content[:500]
    assert expected.lower() in _error_text(response).lower()
    assert 'role="alert"' in response.content.decode()
    assert not UnhealthyEvent.objects.exists()


def test_missing_file_is_a_form_error(admin_client):
    response = admin_client.post(reverse("mitigation_import"), {})
    assert response.status_code == 400
    assert "Choose a CSV or JSON file" in _error_text(response)


def test_a_good_file_still_imports(admin_client):
    response = _post(admin_client, "history.csv", GOOD_CSV.encode())
    assert response.status_code == 200
    assert response.context["report"].imported == 1
    assert UnhealthyEvent.objects.filter(node__name="node-up", source="import").exists()


def test_only_admins_upload(operator_client):
    assert _post(operator_client, "history.csv", GOOD_CSV.encode()).status_code == 403
