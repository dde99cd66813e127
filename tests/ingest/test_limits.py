"""Per-request ingest limits, set from the TELLTALE_INGEST_* settings, through the receivers.

Each test sets one limit low and shows the answer: a 4xx naming the field and the limit,
never a 5xx; a refused request stores nothing, and in a partially refused one every
accepted item is stored.
"""

from __future__ import annotations

import gzip
import json
import time

import cramjam
import pytest
from django.urls import reverse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2

from ingest.receivers import current_limits
from ingest.remote_write import encode_remote_write
from ingest.types import SeriesSamples
from tests.conftest import bearer
from webapp.core.models import IngestToken
from webapp.telemetry.models import LogRecord, Series

NOW = int(time.time() * 1000)


def series(name="up", n_samples=2, **labels) -> SeriesSamples:
    return SeriesSamples(
        labels=tuple(sorted({"__name__": name, **labels}.items())),
        timestamps_ms=[NOW - 1000 * (n_samples - k) for k in range(n_samples)],
        values=[float(k) for k in range(n_samples)],
    )


def post_rw(client, token, body, **extra):
    return client.post(
        reverse("remote_write"),
        body,
        content_type="application/x-protobuf",
        HTTP_CONTENT_ENCODING="snappy",
        **bearer(token),
        **extra,
    )


def post_jsonl(client, token, body: bytes, **extra):
    return client.post(
        reverse("jsonl_logs"), body, content_type="application/x-ndjson", **bearer(token), **extra
    )


def stored_samples(store) -> int:
    return store.count()


def test_every_limit_comes_from_settings(settings):
    settings.TELLTALE_INGEST_MAX_DECODED_BYTES = 5000
    settings.TELLTALE_INGEST_MAX_SERIES_PER_REQUEST = 11
    settings.TELLTALE_INGEST_MAX_SAMPLES_PER_REQUEST = 12
    settings.TELLTALE_INGEST_MAX_LABELS_PER_SERIES = 13
    settings.TELLTALE_INGEST_MAX_LABEL_NAME_LENGTH = 14
    settings.TELLTALE_INGEST_MAX_LABEL_VALUE_LENGTH = 15
    settings.TELLTALE_INGEST_MAX_LOG_LINE_BYTES = 16
    settings.TELLTALE_INGEST_MAX_LOG_LINES_PER_REQUEST = 17
    limits = current_limits()
    assert (
        limits.max_decoded_bytes,
        limits.max_series,
        limits.max_samples,
        limits.max_labels,
        limits.max_label_name_length,
        limits.max_label_value_length,
        limits.max_log_line_bytes,
        limits.max_log_lines,
    ) == (5000, 11, 12, 13, 14, 15, 16, 17)


def test_too_many_series_refuses_the_whole_request(client, store, ingest_token, settings):
    settings.TELLTALE_INGEST_MAX_SERIES_PER_REQUEST = 10
    body = encode_remote_write(series(node=f"n{i}") for i in range(11))
    response = post_rw(client, ingest_token, body)
    assert response.status_code == 413, response.content
    answer = response.json()
    assert answer["field"] == "timeseries" and "limit of 10" in answer["error"]
    assert stored_samples(store) == 0 and not Series.objects.exists()
    # At the limit, everything is taken.
    body = encode_remote_write(series(node=f"n{i}") for i in range(10))
    assert post_rw(client, ingest_token, body).status_code == 204
    assert Series.objects.count() == 10


def test_too_many_samples_refuses_the_whole_request(client, store, ingest_token, settings):
    settings.TELLTALE_INGEST_MAX_SAMPLES_PER_REQUEST = 5
    body = encode_remote_write([series(n_samples=3, node="a"), series(n_samples=3, node="b")])
    response = post_rw(client, ingest_token, body)
    assert response.status_code == 413 and "limit of 5 samples" in response.json()["error"]
    assert stored_samples(store) == 0


@pytest.mark.parametrize(
    ("setting", "value", "labels", "field", "words"),
    [
        (
            "TELLTALE_INGEST_MAX_LABELS_PER_SERIES",
            4,
            {f"l{i}": "v" for i in range(4)},
            "timeseries[0].labels",
            "5 labels, more than the limit of 4",
        ),
        (
            "TELLTALE_INGEST_MAX_LABEL_NAME_LENGTH",
            16,
            {"n" * 17: "v"},
            "timeseries[0].labels[1].name",
            "17 characters long, more than the limit of 16",
        ),
        (
            "TELLTALE_INGEST_MAX_LABEL_VALUE_LENGTH",
            32,
            {"job": "v" * 33},
            "timeseries[0].labels[1].value",
            "33 characters long, more than the limit of 32",
        ),
    ],
)
def test_label_limits_refuse_the_series_and_keep_the_rest(
    client, store, ingest_token, settings, setting, value, labels, field, words
):
    setattr(settings, setting, value)
    body = encode_remote_write([series(**labels), series(node="fine")])
    response = post_rw(client, ingest_token, body)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["accepted"] == 2
    assert answer["rejected"][0]["field"] == field
    assert words in answer["rejected"][0]["reason"]
    assert stored_samples(store) == 2
    assert list(Series.objects.values_list("labels", flat=True)) == [{"node": "fine"}]


def test_a_megabyte_label_value_is_refused_by_default(client, store, ingest_token):
    body = encode_remote_write([series(job="x" * (1 << 20)), series(node="fine")])
    response = post_rw(client, ingest_token, body)
    assert response.status_code == 400
    assert "more than the limit of 4096" in response.json()["rejected"][0]["reason"]
    assert stored_samples(store) == 2


def test_snappy_bomb_is_refused_from_its_preamble(client, store, ingest_token, settings):
    settings.TELLTALE_INGEST_MAX_DECODED_BYTES = 64 * 1024
    # Valid snappy that inflates to 1 MiB from about 50 KiB... and one that only claims to.
    real = bytes(cramjam.snappy.compress_raw(b"\0" * (1 << 20)))
    claimed = b"\xff\xff\xff\xff\x0f" + b"\0" * 16  # preamble: 4 GiB
    for body in (real, claimed):
        response = post_rw(client, ingest_token, body)
        assert response.status_code == 413, response.content
        assert "more than the limit of 65536" in response.json()["error"]
    assert stored_samples(store) == 0


@pytest.mark.parametrize("endpoint", ["jsonl_logs", "otlp_logs", "otlp_metrics"])
def test_gzip_bomb_is_refused_without_inflating_it(client, db, ingest_token, settings, endpoint):
    settings.TELLTALE_INGEST_MAX_DECODED_BYTES = 64 * 1024
    bomb = gzip.compress(b"\n" * (8 << 20), compresslevel=9)  # 8 MiB in about 8 KiB
    response = client.post(
        reverse(endpoint),
        bomb,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        **bearer(ingest_token),
    )
    assert response.status_code == 413
    assert "decompressed body exceeds the limit of 65536 bytes" in response.json()["error"]
    assert not LogRecord.objects.exists()


def test_body_size_limit_without_content_length(client, store, ingest_token, settings):
    settings.TELLTALE_INGEST_MAX_BODY_BYTES = 2048
    body = b'{"message": "' + b"x" * 4096 + b'"}\n'
    response = post_jsonl(client, ingest_token, body)
    assert response.status_code == 413 and "2048 bytes" in response.json()["error"]


def test_log_line_over_the_hard_size_is_refused_by_line(client, db, ingest_token, settings):
    settings.TELLTALE_INGEST_MAX_LOG_LINE_BYTES = 256
    lines = [
        {"message": "first"},
        {"message": "x" * 200, "pad": "y" * 4000},  # the JSON line is over 8 x 256 bytes
        {"message": "third"},
    ]
    body = b"\n".join(json.dumps(line).encode() for line in lines)
    response = post_jsonl(client, ingest_token, body)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["accepted"] == 2
    assert answer["rejected"][0]["field"] == "line 2"
    assert "over the limit of 2048" in answer["rejected"][0]["reason"]
    assert sorted(LogRecord.objects.values_list("message", flat=True)) == ["first", "third"]


def test_long_log_message_is_cut_flagged_and_reported(client, db, ingest_token, settings):
    settings.TELLTALE_INGEST_MAX_LOG_LINE_BYTES = 256
    body = json.dumps({"message": "é" * 200}).encode()  # 400 bytes of UTF-8
    response = post_jsonl(client, ingest_token, body)
    assert response.status_code == 200, response.content
    assert "longer than 256 bytes" in response.json()["truncated"]
    record = LogRecord.objects.get()
    assert record.message == "é" * 128 and record.attributes["telltale.truncated"] == "true"


def test_otlp_log_truncation_is_reported_in_partial_success(client, db, ingest_token, settings):
    settings.TELLTALE_INGEST_MAX_LOG_LINE_BYTES = 256
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add(body=AnyValue(string_value="z" * 1000), time_unix_nano=time.time_ns())
    records.add(
        body=AnyValue(string_value="short"),
        attributes=[KeyValue(key="k", value=AnyValue(string_value="v"))],
        time_unix_nano=time.time_ns(),
        severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
    )
    response = client.post(
        reverse("otlp_logs"),
        request.SerializeToString(),
        content_type="application/x-protobuf",
        **bearer(ingest_token),
    )
    assert response.status_code == 200
    answer = ExportLogsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_log_records == 0
    assert "longer than 256 bytes" in answer.partial_success.error_message
    assert LogRecord.objects.count() == 2


def test_too_many_log_lines_keeps_the_first_and_names_the_rest(client, db, ingest_token, settings):
    settings.TELLTALE_INGEST_MAX_LOG_LINES_PER_REQUEST = 3
    body = b"\n".join(json.dumps({"message": f"m{i}"}).encode() for i in range(5))
    response = post_jsonl(client, ingest_token, body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["accepted"] == 3 and answer["rejected"][0]["field"] == "line 4"
    assert "more than 3 lines" in answer["rejected"][0]["reason"]
    assert LogRecord.objects.count() == 3


def test_otlp_metrics_label_value_limit(client, store, ingest_token, settings):
    settings.TELLTALE_INGEST_MAX_LABEL_VALUE_LENGTH = 32
    request = ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    for value in ("ok", "v" * 33):
        metric = metrics.add(name=f"m_{len(value)}")
        point = metric.gauge.data_points.add(as_double=1.0, time_unix_nano=time.time_ns())
        point.attributes.add(key="k", value=AnyValue(string_value=value))
    response = client.post(
        reverse("otlp_metrics"),
        request.SerializeToString(),
        content_type="application/x-protobuf",
        **bearer(ingest_token),
    )
    assert response.status_code == 200
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceResponse,
    )

    answer = ExportMetricsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_data_points == 1
    assert "label value longer than 32" in answer.partial_success.error_message
    assert list(Series.objects.values_list("metric", flat=True)) == ["m_2"]


def test_limits_never_answer_5xx_for_a_read_only_token(client, db, make_token):
    token = make_token(IngestToken.SCOPE_READ)
    response = post_jsonl(client, token, b'{"message": "x"}')
    assert response.status_code == 403
