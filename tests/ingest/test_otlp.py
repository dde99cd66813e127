"""OTLP decoders, fed by the real OpenTelemetry SDK and encoders where possible."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import time
from unittest.mock import ANY

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from ingest.limits import Limits
from ingest.otlp import (
    decode_otlp_logs,
    decode_otlp_metrics,
    format_float,
    otlp_partial_success_response,
)
from ingest.types import DecodeError, is_stale_marker

PB = "application/x-protobuf"
JSON = "application/json"
NOW_NS = time.time_ns()
NOW_MS = NOW_NS // 1_000_000
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
RESOURCE = {
    "service.name": "checkout",
    "service.namespace": "shop",
    "service.instance.id": "vm-17",
    "host.name": "node-3",
}


def otlp_json(message) -> bytes:
    """OTLP JSON as the spec writes it: hex ids, integer enums, camelCase keys."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in ("traceId", "spanId"):
                if key in item:
                    item[key] = base64.b64decode(item[key]).hex()
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return json.dumps(document).encode()


def series_map(batch) -> dict:
    return {s.labels: list(zip(s.timestamps_ms, s.values, strict=True)) for s in batch.series}


def by_name(batch, name: str) -> list:
    return [s for s in batch.series if s.metric == name]


def decode(kind: str, body: bytes, content_type: str = PB, **limits):
    """Either decoder at the current time (the SDK stamps points with it; NOW, taken at
    import, is minutes old by the end of a slow run), ``limits`` overriding the defaults."""
    now_ns = time.time_ns()
    if kind == "metrics":
        return decode_otlp_metrics(
            body, content_type=content_type, now_ms=now_ns // 1_000_000, limits=Limits(**limits)
        )
    return decode_otlp_logs(body, content_type=content_type, now_ns=now_ns, limits=Limits(**limits))


@pytest.fixture(scope="module")
def sdk_metrics() -> ExportMetricsServiceRequest:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create(RESOURCE))
    meter = provider.get_meter("test")
    counter = meter.create_counter("http.server.requests")
    counter.add(5, {"route": "/cart", "http.method": "GET"})
    counter.add(2, {"route": "/pay", "http.method": "POST"})
    already = meter.create_counter("jobs_total")
    already.add(1)
    latency = meter.create_histogram("rpc.latency", explicit_bucket_boundaries_advisory=[0.1, 0.5])
    for value in (0.05, 0.2, 0.3, 7.0):
        latency.record(value, {"rpc": "Get"})
    meter.create_observable_gauge(
        "cpu.temperature", callbacks=[lambda _: [Observation(61.5, {"core": "0"})]]
    )
    meter.create_up_down_counter("queue.depth").add(4)
    request = encode_metrics(reader.get_metrics_data())
    provider.shutdown()
    return request


@pytest.fixture(scope="module")
def sdk_logs():
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create(RESOURCE))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("test")
    span = trace.NonRecordingSpan(
        trace.SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=trace.TraceFlags(1))
    )
    context = trace.set_span_in_context(span)
    logger.emit(
        timestamp=NOW_NS - 5_000,
        context=context,
        severity_text="ERROR",
        severity_number=17,
        body="payment failed",
        attributes={"order.id": 42, "retry": True, "tags": ["a", "b"]},
    )
    logger.emit(observed_timestamp=NOW_NS - 7_000, body={"event": "login", "ok": 1})
    logger.emit(severity_text="warn", body="no number, only text")
    request = encode_logs(exporter.get_finished_logs())
    provider.shutdown()
    return request


# --- metrics -----------------------------------------------------------------------


def test_sdk_metrics_protobuf(sdk_metrics):
    batch = decode("metrics", sdk_metrics.SerializeToString())
    assert batch.rejected == []
    # queue_depth is a non-monotonic sum: a gauge, no _total.
    assert {s.metric for s in batch.series} == {
        "http_server_requests_total", "jobs_total", "cpu_temperature", "queue_depth",
        "rpc_latency_bucket", "rpc_latency_sum", "rpc_latency_count",
    }  # fmt: skip
    (cart,) = [
        s for s in by_name(batch, "http_server_requests_total") if ("route", "/cart") in s.labels
    ]
    labels = dict(cart.labels)
    # job/instance as Prometheus derives them; the original resource attributes stay too.
    keys = ("http_method", "job", "instance", "service_name", "host_name")
    assert {k: labels[k] for k in keys} == {
        "http_method": "GET", "job": "shop/checkout", "instance": "vm-17",
        "service_name": "checkout", "host_name": "node-3",
    }  # fmt: skip
    assert cart.values == [5.0]
    assert abs(cart.timestamps_ms[0] - time.time_ns() // 1_000_000) < 60_000
    assert list(cart.labels) == sorted(cart.labels)
    assert ("__name__", "http_server_requests_total") in cart.labels


def test_histogram_buckets_are_cumulative_with_inf(sdk_metrics):
    batch = decode("metrics", sdk_metrics.SerializeToString())
    buckets = {dict(s.labels)["le"]: s.values[0] for s in by_name(batch, "rpc_latency_bucket")}
    assert buckets == {"0.1": 1.0, "0.5": 3.0, "+Inf": 4.0}
    assert by_name(batch, "rpc_latency_count")[0].values == [4.0]
    assert by_name(batch, "rpc_latency_sum")[0].values == [pytest.approx(7.55)]
    assert dict(by_name(batch, "rpc_latency_sum")[0].labels)["rpc"] == "Get"


def test_json_decodes_identically(sdk_metrics):
    from_pb = decode("metrics", sdk_metrics.SerializeToString())
    body = otlp_json(sdk_metrics)
    assert b'"aggregationTemporality": 2' in body  # integer enums, as the spec writes them
    from_json = decode("metrics", body, "application/json; charset=utf-8")
    assert series_map(from_json) == series_map(from_pb)


def json_request(signal: str, items: list, resource: list | None = None, **extra) -> bytes:
    """A hand-written OTLP JSON request: one resource, one scope."""
    scope = {"metrics" if signal == "Metrics" else "logRecords": items}
    resource_part = {"resource": {"attributes": resource or []}, f"scope{signal}": [scope]}
    return json.dumps({f"resource{signal}": [resource_part | extra]}).encode()


def test_json_unknown_fields_and_int64_numbers_accepted():
    data_point = {"timeUnixNano": NOW_NS, "asInt": 1, "newThing": 3}
    metric = {"name": "up", "gauge": {"dataPoints": [data_point]}, "futureField": {"x": 1}}
    body = json_request("Metrics", [metric], futureResourceField=[1])
    assert series_map(decode("metrics", body, JSON)) == {(("__name__", "up"),): [(NOW_MS, 1.0)]}


def point(value: float | None = 1.0, ts_ns: int = NOW_NS, flags: int = 0, **attrs):
    p = metrics_pb2.NumberDataPoint(time_unix_nano=ts_ns, flags=flags)
    if value is not None:
        p.as_double = value
    for key, val in attrs.items():
        p.attributes.append(KeyValue(key=key, value=AnyValue(string_value=val)))
    return p


def gauge(name: str, *points) -> metrics_pb2.Metric:
    return metrics_pb2.Metric(name=name, gauge=metrics_pb2.Gauge(data_points=points))


def histogram(name: str, temporality: int = 2, **fields) -> metrics_pb2.Metric:
    data_point = metrics_pb2.HistogramDataPoint(time_unix_nano=NOW_NS, **fields)
    data = metrics_pb2.Histogram(data_points=[data_point], aggregation_temporality=temporality)
    return metrics_pb2.Metric(name=name, histogram=data)


def decode_pb(*metrics, resource: dict | None = None, **limits):
    """Decode hand-built metrics sent as protobuf, with ``limits`` overriding defaults."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    for key, val in (resource or {}).items():
        rm.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=val)))
    rm.scope_metrics.add().metrics.extend(metrics)
    return decode("metrics", request.SerializeToString(), **limits)


def test_delta_sum_and_histogram_are_rejected_by_name():
    delta = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    total = metrics_pb2.Sum(data_points=[point(), point()], aggregation_temporality=delta)
    reqs = metrics_pb2.Metric(name="reqs", sum=total)
    batch = decode_pb(reqs, histogram("lat", delta, count=1), gauge("ok", point(3.0)))
    assert [s.metric for s in batch.series] == ["ok"]
    assert batch.rejected_count == 3
    reasons = " ".join(r.reason for r in batch.rejected)
    assert "'reqs'" in reasons and "'lat'" in reasons and "delta" in reasons
    assert batch.rejected[0].field == "resource_metrics[0].scope_metrics[0].metrics[0]"


def test_summary_quantiles_sum_count():
    quantile = metrics_pb2.SummaryDataPoint.ValueAtQuantile
    data_point = metrics_pb2.SummaryDataPoint(
        time_unix_nano=NOW_NS,
        count=10,
        sum=12.5,
        quantile_values=[quantile(quantile=0.5, value=1.0), quantile(quantile=0.99, value=4.0)],
    )
    summary = metrics_pb2.Summary(data_points=[data_point])
    batch = decode_pb(metrics_pb2.Metric(name="gc.pause", summary=summary))
    got = {(s.metric, dict(s.labels).get("quantile")): s.values[0] for s in batch.series}
    assert got == {
        ("gc_pause", "0.5"): 1.0,
        ("gc_pause", "0.99"): 4.0,
        ("gc_pause_sum", None): 12.5,
        ("gc_pause_count", None): 10.0,
    }


def test_exponential_histogram_keeps_sum_and_count_only():
    reader = InMemoryMetricReader()
    view = View(instrument_name="size", aggregation=ExponentialBucketHistogramAggregation())
    provider = MeterProvider(metric_readers=[reader], views=[view])
    hist = provider.get_meter("t").create_histogram("size")
    for value in (1, 2, 300):
        hist.record(value)
    body = encode_metrics(reader.get_metrics_data()).SerializeToString()
    batch = decode("metrics", body)
    assert {s.metric: s.values for s in batch.series} == {"size_count": [3.0], "size_sum": [303.0]}


def test_sdk_delta_temporality_counter_rejected():
    reader = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA})
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("t").create_counter("sent").add(3)
    body = encode_metrics(reader.get_metrics_data()).SerializeToString()
    batch = decode("metrics", body)
    assert batch.series == [] and batch.rejected_count == 1
    assert "delta" in batch.rejected[0].reason


def test_names_labels_sanitised_and_point_attributes_win():
    attrs = {"zone": "b", "9lives": "y", "_x": "z", "a.b": "1", "a_b": "2"}
    resource = {"zone": "a", "service.name": "svc"}
    (series,) = decode_pb(gauge("1st.metric-name/x", point(2.0, **attrs)), resource=resource).series
    labels = dict(series.labels)
    assert labels["__name__"] == "_1st_metric_name_x"
    assert labels["zone"] == "b"
    assert labels["key_9lives"] == "y"
    assert labels["key_x"] == "z"
    assert labels["a_b"] == "1;2"
    assert labels["job"] == "svc" and "instance" not in labels


def test_stale_nan_window_and_missing_value():
    batch = decode_pb(
        gauge(
            "g",
            point(None, ts_ns=NOW_NS - 3_000_000, flags=1, k="stale"),
            point(float("nan"), ts_ns=NOW_NS - 2_000_000, k="nan"),
            point(1.0, ts_ns=NOW_NS - 8 * 24 * 3600 * 10**9, k="old"),
            point(1.0, ts_ns=NOW_NS + 3600 * 10**9, k="future"),
            point(None, k="empty"),
            point(1.0, ts_ns=0, k="zero"),
        )
    )
    values = {dict(s.labels)["k"]: s.values[0] for s in batch.series}
    assert set(values) == {"stale", "nan"}
    assert is_stale_marker(values["stale"])
    assert math.isnan(values["nan"]) and not is_stale_marker(values["nan"])
    assert batch.rejected_count == 4
    reasons = sorted(r.reason for r in batch.rejected)
    assert any("older" in r for r in reasons) and any("future" in r for r in reasons)
    assert any("no value" in r for r in reasons)


def test_stale_histogram_marks_every_series():
    batch = decode_pb(histogram("h", flags=1, bucket_counts=[1, 1], explicit_bounds=[1.0], sum=2))
    assert len(batch.series) == 4
    assert all(is_stale_marker(s.values[0]) for s in batch.series)


def test_malformed_histogram_rejected_and_limits():
    bad = histogram("h", bucket_counts=[1, 2, 3], explicit_bounds=[1.0])
    batch = decode_pb(bad, gauge("g", *(point(1.0, k=str(i)) for i in range(5))), max_series=3)
    assert len(batch.series) == 3
    assert batch.rejected_count == 3
    assert any("bucket_counts" in r.reason for r in batch.rejected)
    assert any("series" in r.reason and r.count == 2 for r in batch.rejected)
    labels = decode_pb(gauge("g", point(a="1", b="2")), max_labels=2)
    assert labels.series == [] and "labels" in labels.rejected[0].reason
    assert len(decode_pb(gauge("g", point(a="1", b="2")), max_labels=3).series) == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (0.005, "0.005"), (1e6, "1000000"), (2.5e-7, "0.00000025"), (-3.0, "-3")],
)
def test_format_float_matches_go(value, text):
    assert format_float(value) == text


# --- logs --------------------------------------------------------------------------


def test_sdk_logs_protobuf(sdk_logs):
    batch = decode("logs", sdk_logs.SerializeToString())
    assert batch.rejected == []
    first, second, third = batch.entries
    assert (first.message, first.severity, first.severity_text, first.ts_ns, first.source) == (
        "payment failed", 17, "ERROR", NOW_NS - 5_000, "otlp"
    )  # fmt: skip
    assert first.node == "node-3" and first.instance == "vm-17"
    assert first.attributes == {
        "order.id": "42", "retry": "true", "tags": '["a","b"]', "trace_id": f"{TRACE_ID:032x}",
        "span_id": f"{SPAN_ID:016x}", **RESOURCE, "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.version": ANY,
    }  # fmt: skip
    assert json.loads(second.message) == {"event": "login", "ok": 1}
    assert second.ts_ns == NOW_NS - 7_000
    assert "trace_id" not in second.attributes
    assert third.severity == 13 and third.severity_text == "warn"


def test_logs_json_decodes_identically(sdk_logs):
    from_pb = decode("logs", sdk_logs.SerializeToString())
    body = otlp_json(sdk_logs)
    assert f'"traceId": "{TRACE_ID:032x}"'.encode() in body
    from_json = decode("logs", body, JSON)
    assert from_json.entries == from_pb.entries


def test_logs_fallbacks_truncation_and_attribute_bound():
    many_attributes = [{"key": f"a{i}", "value": {"intValue": str(i)}} for i in range(5)]
    records = [
        {"body": {"stringValue": "x" * 50}, "traceId": "not-hex!"},
        {"severityText": "ERROR", "attributes": many_attributes},
    ]
    pod = [{"key": "k8s.pod.name", "value": {"stringValue": "pod-1"}}]
    body = json_request("Logs", records, resource=pod)
    limits = Limits(max_log_line_bytes=10, max_attributes=3)
    batch = decode_otlp_logs(body, content_type=JSON, now_ns=123, limits=limits)
    long, many = batch.entries
    assert long.message == "x" * 10 and long.attributes["telltale.truncated"] == "true"
    assert long.ts_ns == 123 and long.instance == "pod-1" and long.node is None
    assert "trace_id" not in long.attributes
    assert many.severity == 17 and many.message == ""
    assert many.attributes["telltale.dropped_attributes"] == "3"
    assert len(many.attributes) == 4


def test_log_line_limit():
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for i in range(5):
        records.add(body=AnyValue(string_value=str(i)))
    batch = decode("logs", request.SerializeToString(), max_log_lines=3)
    assert [e.message for e in batch.entries] == ["0", "1", "2"]
    assert batch.rejected_count == 2


# --- errors and responses ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["metrics", "logs"])
def test_content_type_garbage_and_size_errors(kind):
    with pytest.raises(DecodeError) as info:
        decode(kind, b"{}", "text/plain")
    assert info.value.status == 415 and "text/plain" in str(info.value)
    for body in (b"\xff\xfe\x00garbage\x12\x99", b"[1, 2]"):
        for content_type in (PB, JSON):
            with pytest.raises(DecodeError) as info:
                decode(kind, body, content_type)
            assert info.value.status == 400
    with pytest.raises(DecodeError) as info:
        decode(kind, b"{}" * 20, JSON, max_decoded_bytes=10)
    assert info.value.status == 413


def test_partial_success_responses():
    raw = otlp_partial_success_response("metrics", 3, "delta sums refused", PB)
    response = ExportMetricsServiceResponse.FromString(raw)
    assert response.partial_success.rejected_data_points == 3
    assert response.partial_success.error_message == "delta sums refused"
    assert otlp_partial_success_response("logs", 0, "", PB) == b""
    document = json.loads(otlp_partial_success_response("logs", 2, "too long", JSON))
    assert document == {"partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "too long"}}
    parsed = json_format.Parse(
        otlp_partial_success_response("logs", 2, "x", JSON), ExportLogsServiceResponse()
    )
    assert parsed.partial_success.rejected_log_records == 2
    assert json.loads(otlp_partial_success_response("metrics", 0, "", JSON)) == {}
    with pytest.raises(ValueError):
        otlp_partial_success_response("traces", 1, "", PB)


FAST = settings(max_examples=200, deadline=None)


@FAST
@given(body=st.binary(max_size=512), content_type=st.sampled_from([PB, JSON]))
def test_arbitrary_bytes_only_raise_decode_error(body, content_type):
    for kind in ("metrics", "logs"):
        with contextlib.suppress(DecodeError):
            decode(kind, body, content_type)


@FAST
@given(data=st.data())
def test_mutated_real_payloads_only_raise_decode_error(sdk_metrics, sdk_logs, data):
    # Flipping bytes of a valid payload reaches deep into the decoder, unlike random bytes.
    kind, content_type = (
        data.draw(st.sampled_from(["metrics", "logs"])),
        data.draw(st.sampled_from([PB, JSON])),
    )
    message = sdk_metrics if kind == "metrics" else sdk_logs
    body = bytearray(otlp_json(message) if content_type == JSON else message.SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        decode(kind, bytes(body), content_type)


any_values = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=10)),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats()),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=8)),
    st.just(AnyValue()),
)
key_values = st.lists(
    st.builds(lambda k, v: KeyValue(key=k, value=v), st.text(max_size=8), any_values), max_size=4
)
timestamps = st.one_of(
    st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]),
    st.integers(0, 2**64 - 1),
    st.integers(NOW_NS - 10**12, NOW_NS + 10**12),
)


@st.composite
def random_metric(draw) -> metrics_pb2.Metric:
    kind = draw(st.sampled_from(["gauge", "sum", "histogram", "summary", "exponential_histogram"]))
    metric = metrics_pb2.Metric(name=draw(st.text(max_size=12)))
    data = getattr(metric, kind)
    if kind in ("sum", "histogram", "exponential_histogram"):
        data.aggregation_temporality = draw(st.integers(0, 3))
    if kind == "sum":
        data.is_monotonic = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        p = data.data_points.add(time_unix_nano=draw(timestamps), flags=draw(st.integers(0, 3)))
        p.attributes.extend(draw(key_values))
        if kind in ("gauge", "sum"):
            choice = draw(st.sampled_from(["double", "int", "none"]))
            if choice == "double":
                p.as_double = draw(st.floats())
            elif choice == "int":
                p.as_int = draw(st.integers(-(2**63), 2**63 - 1))
        elif kind == "histogram":
            p.explicit_bounds.extend(draw(st.lists(st.floats(), max_size=3)))
            p.bucket_counts.extend(draw(st.lists(st.integers(0, 2**64 - 1), max_size=4)))
            p.count = draw(st.integers(0, 2**64 - 1))
            if draw(st.booleans()):
                p.sum = draw(st.floats())
        elif kind == "summary":
            p.count, p.sum = draw(st.integers(0, 2**64 - 1)), draw(st.floats())
            for q, v in draw(st.lists(st.tuples(st.floats(), st.floats()), max_size=3)):
                p.quantile_values.add(quantile=q, value=v)
        else:
            p.count, p.scale = draw(st.integers(0, 2**64 - 1)), draw(st.integers(-10, 20))
    return metric


@FAST
@given(metrics=st.lists(random_metric(), max_size=4), resource=key_values)
def test_random_valid_metrics_decode_consistently(metrics, resource):
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(resource)
    rm.scope_metrics.add().metrics.extend(metrics)
    for body, content_type in ((request.SerializeToString(), PB), (otlp_json(request), JSON)):
        batch = decode("metrics", body, content_type)
        for series in batch.series:
            assert list(series.labels) == sorted(series.labels)
            assert series.metric and len(series.timestamps_ms) == len(series.values)
            assert all(value for _, value in series.labels)


@FAST
@given(
    records=st.lists(
        st.tuples(timestamps, timestamps, st.integers(0, 30), any_values, key_values), max_size=4
    )
)
def test_random_valid_logs_decode(records):
    request = ExportLogsServiceRequest()
    log_records = request.resource_logs.add().scope_logs.add().log_records
    for ts, observed, severity, body, attributes in records:
        record = log_records.add(
            time_unix_nano=ts, observed_time_unix_nano=observed, severity_number=severity
        )
        record.body.CopyFrom(body)
        record.attributes.extend(attributes)
    for raw, content_type in ((request.SerializeToString(), PB), (otlp_json(request), JSON)):
        batch = decode("logs", raw, content_type)
        assert len(batch.entries) == len(records)
        for entry in batch.entries:
            assert 0 <= entry.ts_ns < 2**63 and 0 <= entry.severity <= 24
