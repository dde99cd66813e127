"""HTTP receivers end to end through Django: auth, limits, partial success, retries."""

from __future__ import annotations

import gzip
import json
import math
import time

import cramjam
import pytest
from django.db import OperationalError
from django.urls import reverse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from ingest.remote_write import REMOTE_WRITE_HEADERS, encode_remote_write
from tests.conftest import series_samples
from webapp.core.models import IngestToken
from webapp.core.services import revoke_ingest_token
from webapp.telemetry.models import LogRecord, Series

NOW = int(time.time() * 1000)


def rw_headers(token):
    return {
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_CONTENT_ENCODING": "snappy",
        "HTTP_X_PROMETHEUS_REMOTE_WRITE_VERSION": "0.1.0",
    }


def post_rw(client, token, body, **extra):
    headers = {**rw_headers(token), **extra}
    return client.post(
        reverse("remote_write"), body, content_type="application/x-protobuf", **headers
    )


def _body(n_series=5, n_samples=3, base=NOW, metric="node_cpu"):
    return encode_remote_write(
        series_samples(
            metric,
            {"node": f"n{i}", "cpu": "0"},
            [(base - 1000 * k, float(k)) for k in range(n_samples)],
        )
        for i in range(n_series)
    )


def test_remote_write_stores_and_answers_204(client, store, ingest_token):
    response = post_rw(client, ingest_token, _body())
    assert response.status_code == 204, response.content
    assert store.count() == 15
    assert Series.objects.filter(metric="node_cpu").count() == 5
    assert REMOTE_WRITE_HEADERS["Content-Encoding"] == "snappy"


def test_retried_request_is_stored_once(client, store, ingest_token):
    body = _body()
    assert post_rw(client, ingest_token, body).status_code == 204
    assert post_rw(client, ingest_token, body).status_code == 204
    assert store.count() == 15


def test_nan_and_inf_are_stored(client, store, ingest_token):
    body = encode_remote_write(
        [series_samples("m", {"node": "a"}, [(NOW, math.nan), (NOW + 1, math.inf)])]
    )
    assert post_rw(client, ingest_token, body).status_code == 204
    assert store.count() == 2


def test_partial_success_keeps_valid_series_and_names_the_problem(client, store, ingest_token):
    good = series_samples("good_metric", {"node": "a"}, [(NOW, 1.0)])
    too_old = series_samples("old_metric", {"node": "a"}, [(NOW - 30 * 86_400_000, 1.0)])
    no_name = series_samples("", {"node": "a"}, [(NOW, 1.0)])
    response = post_rw(client, ingest_token, encode_remote_write([good, too_old, no_name]))
    assert response.status_code == 400
    body = response.json()
    assert body["accepted"] == 1
    reasons = " ".join(r["reason"] + r["field"] for r in body["rejected"])
    assert "timeseries[1]" in reasons and "timeseries[2]" in reasons
    assert list(Series.objects.values_list("metric", flat=True)) == ["good_metric"]
    assert store.count() == 1


@pytest.mark.parametrize(
    "body, extra, status, field",
    [
        (b"not snappy at all", {}, 400, "body"),
        (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")), {}, 400, "body"),
        (None, {"HTTP_CONTENT_ENCODING": ""}, 400, "Content-Encoding"),
        (None, {"HTTP_CONTENT_ENCODING": "br"}, 415, "Content-Encoding"),
    ],
)
def test_malformed_remote_write_is_refused_with_the_field(
    client, store, ingest_token, body, extra, status, field
):
    response = post_rw(client, ingest_token, body if body is not None else _body(), **extra)
    assert response.status_code == status, response.content
    assert response.json()["field"] == field
    assert store.count() == 0


def test_wrong_content_type(client, store, ingest_token):
    response = client.post(
        reverse("remote_write"),
        _body(),
        content_type="application/json",
        **rw_headers(ingest_token),
    )
    assert response.status_code == 415 and response.json()["field"] == "Content-Type"


def test_oversized_body_is_refused(client, store, ingest_token, settings):
    settings.TELLTALE_INGEST_MAX_BODY_BYTES = 2048
    response = post_rw(client, ingest_token, _body(n_series=2000))
    assert response.status_code == 413
    assert "exceeds the limit of 2048 bytes" in response.json()["error"]


def test_tokens_are_checked(client, store, make_token):
    body = _body()
    assert post_rw(client, "", body).status_code == 401
    assert post_rw(client, "tt_not_a_token", body).status_code == 401
    logs_only = make_token("logs:write")
    response = post_rw(client, logs_only, body)
    assert response.status_code == 403 and "metrics:write" in response.json()["error"]
    token = make_token("metrics:write", name="to-revoke")
    assert post_rw(client, token, body).status_code == 204
    revoke_ingest_token(IngestToken.objects.get(name="to-revoke"))
    assert post_rw(client, token, body).status_code == 401


def test_database_down_answers_503_so_clients_retry(client, store, ingest_token, monkeypatch):
    from webapp.telemetry.store.base import SampleStore

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(type(store), "write", down)
    assert isinstance(store, SampleStore)
    response = post_rw(client, ingest_token, _body())
    assert response.status_code == 503
    assert response["Retry-After"]
    monkeypatch.undo()
    assert post_rw(client, ingest_token, _body()).status_code == 204
    assert store.count() == 15


def _otlp_metrics() -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.CopyFrom(
        Resource(attributes=[KeyValue(key="host.name", value=AnyValue(string_value="otel-host"))])
    )
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = "app.queue.depth"
    point = metric.gauge.data_points.add()
    point.time_unix_nano = NOW * 1_000_000
    point.as_double = 7.0
    return req


def test_otlp_metrics_protobuf_and_json(client, store, ingest_token):
    req = _otlp_metrics()
    response = client.post(
        reverse("otlp_metrics"),
        req.SerializeToString(),
        content_type="application/x-protobuf",
        HTTP_AUTHORIZATION=f"Bearer {ingest_token}",
    )
    assert response.status_code == 200
    answer = ExportMetricsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_data_points == 0
    series = Series.objects.get(metric="app_queue_depth")
    assert series.node.name == "otel-host"
    from google.protobuf import json_format

    body = json_format.MessageToJson(req).encode()
    response = client.post(
        reverse("otlp_metrics"),
        gzip.compress(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {ingest_token}",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    assert store.count() == 1  # same point twice: stored once


def test_otlp_logs(client, db, ingest_token):
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.CopyFrom(
        Resource(attributes=[KeyValue(key="host.name", value=AnyValue(string_value="h1"))])
    )
    record = rl.scope_logs.add().log_records.add()
    record.time_unix_nano = time.time_ns()
    record.severity_number = logs_pb2.SEVERITY_NUMBER_ERROR
    record.body.string_value = "payment failed for order 123"
    response = client.post(
        reverse("otlp_logs"),
        req.SerializeToString(),
        content_type="application/x-protobuf",
        HTTP_AUTHORIZATION=f"Bearer {ingest_token}",
    )
    assert response.status_code == 200
    row = LogRecord.objects.get()
    assert (row.node.name, row.severity, row.source) == ("h1", 17, "otlp")
    assert (
        client.post(
            reverse("otlp_logs"),
            b"garbage",
            content_type="text/plain",
            HTTP_AUTHORIZATION=f"Bearer {ingest_token}",
        ).status_code
        == 415
    )


def test_json_lines_partial_success(client, db, ingest_token):
    lines = [
        {"message": "backup started", "node": "db1", "severity": "info"},
        {"msg": "no message key here"},
        "not an object",
        {"message": "backup done", "node": "db1", "ts": time.time()},
    ]
    body = "\n".join(json.dumps(x) for x in lines)
    response = client.post(
        reverse("jsonl_logs"),
        body,
        content_type="application/x-ndjson",
        HTTP_AUTHORIZATION=f"Bearer {ingest_token}",
    )
    assert response.status_code == 400
    answer = response.json()
    assert answer["accepted"] == 3 and answer["stored"] == 3
    assert [r["field"] for r in answer["rejected"]] == ["line 3"]
    assert LogRecord.objects.count() == 3


def test_receivers_need_post(client, ingest_token):
    assert (
        client.get(reverse("remote_write"), HTTP_AUTHORIZATION=f"Bearer {ingest_token}").status_code
        == 405
    )
