"""Hostile text sent the ways an outsider (ingest) or a colleague (the UI) can send it,
and the pages that show it. Shared by the HTML test here and the browser test."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.urls import reverse

from ingest.remote_write import REMOTE_WRITE_HEADERS, encode_remote_write
from tests.conftest import series_samples

IMG = "<img src=x onerror=window.__xss=1>"
SCRIPT = "<script>window.__xss=1</script>"
# Closes an attribute value and opens a tag: for names that land in data-*/aria-* attributes.
ATTR = '"><svg onload=window.__xss=1>'
NODE = f"{ATTR}{IMG}"  # a node name, from a remote_write `node` label
LOG_LINE = f"login failed for {SCRIPT} from {IMG}"
ANNOTATION_API = f"deploy {IMG} {SCRIPT}"
ANNOTATION_UI = f"ui note {IMG}"
COMMENT = f"**note** {SCRIPT} {IMG} [click](javascript:window.__xss=1)"
PAYLOADS = (IMG, SCRIPT, ATTR)


@dataclass
class Seeded:
    node_name: str
    incident_id: int
    anomaly_id: int


def _escaped(text: str) -> str:
    from django.utils.html import escape

    return escape(text)


def ingest(client, token: str) -> None:
    """remote_write (node name and label values), JSON lines logs, the annotations API."""
    now = int(time.time() * 1000) // 15_000 * 15_000
    points = [(now - 3_600_000 + i * 15_000, 0.3 + (i % 20) / 100) for i in range(240)]
    labels = {"node": NODE, "cluster": SCRIPT, "rack": IMG, "job": ATTR}
    body = encode_remote_write([series_samples("host_cpu_utilization_ratio", labels, points)])
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in REMOTE_WRITE_HEADERS.items()}
    response = client.post(
        reverse("remote_write"),
        body,
        content_type=REMOTE_WRITE_HEADERS["Content-Type"],
        HTTP_AUTHORIZATION=f"Bearer {token}",
        **{k: v for k, v in headers.items() if k != "HTTP_CONTENT_TYPE"},
    )
    assert response.status_code in (200, 204), response.content
    line = {
        "ts": (time.time() - 600),
        "message": LOG_LINE,
        "severity": "error",
        "node": NODE,
        "attributes": {"user": IMG},
    }
    response = client.post(
        reverse("jsonl_logs"),
        json.dumps(line) + "\n",
        content_type="application/x-ndjson",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code in (200, 204), response.content
    response = client.post(
        reverse("annotations"),
        json.dumps(
            {
                "time": now - 20 * 60_000,
                "timeEnd": now - 15 * 60_000,
                "text": ANNOTATION_API,
                "tags": [SCRIPT, IMG],
                "node": NODE,
            }
        ),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200, response.content


def incident_and_anomaly() -> tuple[int, int]:
    """What the correlator and the detector would make of it (their inputs are the node and
    its log template, both hostile here)."""
    from webapp.detection.models import Anomaly, ModelVersion
    from webapp.incidents import services
    from webapp.incidents.models import Incident
    from webapp.telemetry.models import Node

    node = Node.objects.get(name=NODE)
    start = datetime.now(tz=UTC) - timedelta(minutes=10)
    signal = services.record_signal(
        "alert", "hostile-1", title=f"CPU high {IMG}", start=start, node=node, severity="critical"
    )
    if not Incident.objects.filter(node=node).exists():
        # The default correlation rules come from a data migration, which transactional
        # tests run before this one may have flushed away.
        services.open_incident(None, f"node:{node.pk}", [signal])
    version = ModelVersion.objects.create(
        kind="anomaly", version=1, status="promoted", training_state="succeeded"
    )
    anomaly = Anomaly.objects.create(
        level="host",
        node=node,
        start=start,
        end=start + timedelta(minutes=5),
        score=91.0,
        scenario="brute_force",
        attribution={
            "metrics": [["host_cpu_utilization_ratio", 0.6]],
            "templates": [[f"login failed for {SCRIPT} from <*>", 0.4]],
        },
        model_version=version,
    )
    return Incident.objects.get(node=node).pk, anomaly.pk


def pages(seeded: Seeded) -> dict[str, str]:
    """Every page that shows the hostile text (path → what it should show as text)."""
    return {
        reverse("overview"): "",
        reverse("node_list"): NODE,
        reverse("node_detail", args=[NODE]) + "?range=1h": LOG_LINE,
        reverse("explore") + "?logs=1&logq=login&range=1h": LOG_LINE,
        reverse("explore") + "?q=host_cpu_utilization_ratio&range=1h": "",
        reverse("incident_list"): NODE,
        reverse("incident_detail", args=[seeded.incident_id]): NODE,
        reverse("anomaly_list"): NODE,
        reverse("anomaly_detail", args=[seeded.anomaly_id]): LOG_LINE,
        reverse("audit_log"): IMG,
    }


escaped = _escaped
