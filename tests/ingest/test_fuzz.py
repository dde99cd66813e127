"""Property fuzzing of every ingest decoder (hypothesis).

The property everywhere: a decoder returns its batch or raises ``DecodeError`` with a 4xx
status, never another exception, and what it returns respects the limits it was given.
Where the input is structured enough to count, nothing is silently lost: every sample or
line sent is either in the batch or counted in a rejection.

Budgets are fixed (``max_examples``, no example database) so the module takes well under
20 s; the number of cases run is printed at the end of the session (conftest.py).
"""

from __future__ import annotations

import gzip
import json
import math
import time
import zlib

from cramjam import snappy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from ingest.exposition import parse_exposition
from ingest.jsonlines import decode_json_lines
from ingest.limits import Limits
from ingest.otlp import decode_otlp_logs, decode_otlp_metrics
from ingest.protos import prometheus as pb
from ingest.receivers import Refused, _inflate
from ingest.remote_write import decode_remote_write
from ingest.syslog import SyslogStreamFramer, parse_syslog
from ingest.truth import decode_truth
from ingest.types import DecodeError, LogBatch, MetricBatch
from tests.ingest import fuzzcount

NOW_MS = 1_760_000_000_000
NOW_NS = NOW_MS * 1_000_000
TIGHT = Limits(
    max_body_bytes=64 * 1024,
    max_decoded_bytes=256 * 1024,
    max_series=6,
    max_samples=40,
    max_labels=5,
    max_label_name_length=12,
    max_label_value_length=24,
    max_log_lines=7,
    max_log_line_bytes=64,
    max_attributes=6,
    max_json_depth=8,
)
FUZZ = settings(
    max_examples=150,
    deadline=None,  # time is bounded below per example instead, without flaky deadlines
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SECONDS_PER_EXAMPLE = 5.0  # CPU seconds
# Building protobuf messages from many small draws is the slow part: fewer, richer cases.
FUZZ_STRUCTURED = settings(FUZZ, max_examples=50)
FUZZ_REMOTE_WRITE = settings(FUZZ, max_examples=100)


def decodes(kind: str, call, *args, **kwargs):
    """Run one decoder call under the property; return its result or None on DecodeError."""
    fuzzcount.add(f"fuzz cases: {kind}")
    started = time.process_time()
    try:
        result = call(*args, **kwargs)
    except DecodeError as exc:
        assert 400 <= exc.status < 500 and str(exc) and exc.field
        result = None
    assert time.process_time() - started < SECONDS_PER_EXAMPLE
    if isinstance(result, MetricBatch):
        assert_metric_limits(result, kwargs.get("limits", TIGHT))
    elif isinstance(result, LogBatch):
        assert_log_limits(result, kwargs.get("limits", TIGHT))
    return result


def assert_metric_limits(batch: MetricBatch, limits: Limits) -> None:
    assert len(batch.series) <= limits.max_series
    assert batch.sample_count <= limits.max_samples
    for s in batch.series:
        assert len(s.labels) <= limits.max_labels
        assert list(s.labels) == sorted(s.labels)
        assert len(s.timestamps_ms) == len(s.values)
        for name, value in s.labels:
            assert len(name) <= limits.max_label_name_length
            assert len(value) <= limits.max_label_value_length
            assert value, "an empty label value means no label"
    assert all(r.count >= 0 for r in batch.rejected)


def assert_log_limits(batch: LogBatch, limits: Limits) -> None:
    assert len(batch.entries) <= limits.max_log_lines
    for entry in batch.entries:
        assert len(entry.message.encode("utf-8", "surrogatepass")) <= limits.max_log_line_bytes
        # + the truncation flag and, for OTLP, trace and span ids added after the cut
        assert len(entry.attributes) <= limits.max_attributes + 3
        assert 0 <= entry.severity <= 24


# --- remote_write -------------------------------------------------------------------------
label_text = st.text(max_size=30) | st.sampled_from(["", "__name__", "le", "a" * 25, "1x"])
wire_series = st.lists(
    st.tuples(
        st.lists(st.tuples(label_text, label_text), max_size=7),
        st.lists(
            st.tuples(
                st.integers(NOW_MS - 10**9, NOW_MS + 10**9) | st.integers(-(2**63), 2**63 - 1),
                st.floats(allow_nan=True, allow_infinity=True),
            ),
            max_size=6,
        ),
    ),
    max_size=9,
)


def write_request(series) -> bytes:
    request = pb.WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name, value in labels:
            ts.labels.add(name=name, value=value)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return request.SerializeToString()


@FUZZ_REMOTE_WRITE
@given(wire_series)
def test_remote_write_accounts_for_every_sample(series):
    sent = sum(len(samples) for _, samples in series)
    body = bytes(snappy.compress_raw(write_request(series)))
    batch = decodes(
        "remote_write structured", decode_remote_write, body, now_ms=NOW_MS, limits=TIGHT
    )
    if batch is not None:
        # Every sample is stored or counted as refused: nothing vanishes without a word.
        assert batch.sample_count + batch.rejected_count == sent


@FUZZ_REMOTE_WRITE
@given(wire_series, st.data())
def test_remote_write_damaged_frames(series, data):
    raw = write_request(series) or b"\x0a\x00"
    at = data.draw(st.integers(0, len(raw)))
    how = data.draw(st.sampled_from(["truncate", "insert", "overwrite", "huge varint"]))
    junk = data.draw(st.binary(min_size=1, max_size=8))
    if how == "truncate":
        raw = raw[:at]
    elif how == "insert":
        raw = raw[:at] + junk + raw[at:]
    elif how == "overwrite":
        raw = raw[:at] + junk + raw[at + len(junk) :]
    else:
        raw = raw[:at] + b"\xff" * 10 + b"\x01" + raw[at:]
    body = bytes(snappy.compress_raw(raw))
    if data.draw(st.booleans()):
        body = body[: data.draw(st.integers(0, len(body)))]  # the snappy frame cut short
    decodes("remote_write damaged", decode_remote_write, body, now_ms=NOW_MS, limits=TIGHT)


@FUZZ
@given(st.binary(max_size=512), st.integers(0, 2**35))
def test_remote_write_arbitrary_bytes_and_preambles(data, claimed):
    preamble = bytearray()
    n = claimed
    while True:
        preamble.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    for body in (data, bytes(snappy.compress_raw(data)), bytes(preamble) + data):
        decodes("remote_write bytes", decode_remote_write, body, now_ms=NOW_MS, limits=TIGHT)


# --- OTLP ---------------------------------------------------------------------------------
any_text = st.text(max_size=40)


def _array(values):
    out = AnyValue()
    out.array_value.values.extend(values)
    return out


def _kvlist(pairs):
    out = AnyValue()
    for key, value in pairs:
        out.kvlist_value.values.add(key=key, value=value)
    return out


attr_values = st.recursive(
    st.one_of(
        st.builds(lambda s: AnyValue(string_value=s), any_text),
        st.builds(lambda i: AnyValue(int_value=i), st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda f: AnyValue(double_value=f), st.floats()),
        st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
        st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=16)),
        st.just(AnyValue()),
    ),
    lambda children: st.one_of(
        st.builds(_array, st.lists(children, max_size=3)),
        st.builds(_kvlist, st.lists(st.tuples(any_text, children), max_size=3)),
    ),
    max_leaves=5,
)


attributes = st.lists(st.tuples(any_text, attr_values), max_size=3)
times_ns = st.integers(0, 2**64 - 1) | st.integers(NOW_NS - 10**15, NOW_NS + 10**12)


@st.composite
def metrics_requests(draw) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        rm = request.resource_metrics.add()
        for key, value in draw(attributes):
            rm.resource.attributes.add(key=key, value=value)
        metrics = rm.scope_metrics.add().metrics
        for _ in range(draw(st.integers(0, 3))):
            metric = metrics.add(name=draw(any_text))
            kind = draw(st.sampled_from(["gauge", "sum", "histogram", "summary", "exp", "none"]))
            for _ in range(draw(st.integers(0, 3))):
                t = draw(times_ns)
                if kind in ("gauge", "sum"):
                    data = getattr(metric, kind)
                    if kind == "sum":
                        data.aggregation_temporality = draw(st.integers(0, 3))
                        data.is_monotonic = draw(st.booleans())
                    point = data.data_points.add(time_unix_nano=t, as_double=draw(st.floats()))
                elif kind == "histogram":
                    metric.histogram.aggregation_temporality = draw(st.integers(0, 3))
                    point = metric.histogram.data_points.add(time_unix_nano=t, count=7)
                    point.explicit_bounds.extend(draw(st.lists(st.floats(), max_size=4)))
                    point.bucket_counts.extend(
                        draw(st.lists(st.integers(0, 2**64 - 1), max_size=5))
                    )
                elif kind == "summary":
                    point = metric.summary.data_points.add(time_unix_nano=t, sum=draw(st.floats()))
                    point.quantile_values.add(quantile=draw(st.floats()), value=1.0)
                elif kind == "exp":
                    metric.exponential_histogram.aggregation_temporality = 2
                    point = metric.exponential_histogram.data_points.add(time_unix_nano=t)
                else:
                    break
                point.flags = draw(st.integers(0, 3))
                for key, value in draw(attributes):
                    point.attributes.add(key=key, value=value)
    return request


@FUZZ_STRUCTURED
@given(metrics_requests(), st.sampled_from(["pb", "json"]), st.data())
def test_otlp_metrics(request, encoding, data):
    if encoding == "pb":
        body = request.SerializeToString()
        if data.draw(st.booleans()):
            body = body[: data.draw(st.integers(0, len(body)))]
        content_type = "application/x-protobuf"
    else:
        from google.protobuf import json_format

        body = json_format.MessageToJson(request).encode()
        content_type = "application/json"
    decodes(
        f"otlp metrics {encoding}",
        decode_otlp_metrics,
        body,
        content_type=content_type,
        now_ms=NOW_MS,
        limits=TIGHT,
    )


@st.composite
def logs_requests(draw) -> tuple[ExportLogsServiceRequest, int]:
    request, n = ExportLogsServiceRequest(), 0
    for _ in range(draw(st.integers(0, 3))):
        rl = request.resource_logs.add()
        for key, value in draw(attributes):
            rl.resource.attributes.add(key=key, value=value)
        records = rl.scope_logs.add().log_records
        for _ in range(draw(st.integers(0, 4))):
            record = records.add(
                time_unix_nano=draw(times_ns),
                observed_time_unix_nano=draw(times_ns),
                severity_number=draw(st.integers(0, 30)),
                severity_text=draw(any_text),
                trace_id=draw(st.binary(max_size=20)),
                span_id=draw(st.binary(max_size=10)),
                event_name=draw(any_text),
            )
            record.body.CopyFrom(draw(attr_values))
            for key, value in draw(attributes):
                record.attributes.add(key=key, value=value)
            n += 1
    return request, n


@FUZZ_STRUCTURED
@given(logs_requests(), st.sampled_from(["pb", "json"]))
def test_otlp_logs_account_for_every_record(request_and_count, encoding):
    request, sent = request_and_count
    if encoding == "pb":
        body, content_type = request.SerializeToString(), "application/x-protobuf"
    else:
        from google.protobuf import json_format

        body, content_type = json_format.MessageToJson(request).encode(), "application/json"
    batch = decodes(
        f"otlp logs {encoding}",
        decode_otlp_logs,
        body,
        content_type=content_type,
        now_ns=NOW_NS,
        limits=TIGHT,
    )
    if batch is not None:
        assert len(batch.entries) + batch.rejected_count == sent


# fmt: off
JSON_KEYS = [
    "message", "msg", "ts", "level", "node", "instance", "attributes", "resourceLogs",
    "resourceMetrics", "scopeLogs", "logRecords", "body", "stringValue", "kvlistValue",
    "values", "key", "value", "gauge", "dataPoints", "asDouble", "timeUnixNano", "traceId",
    "metrics", "name", "run", "nodes", "cases", "kind", "start", "end",
]
# fmt: on
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\x00b", "2024-01-01T00:00:00Z", "INFO", "1e400", "-1"]),
)
json_docs = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(JSON_KEYS) | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=12,
)


@FUZZ
@given(json_docs, st.sampled_from(["otlp metrics", "otlp logs", "truth"]))
def test_json_shaped_documents(document, target):
    body = json.dumps(document).encode()
    if target == "otlp metrics":
        decodes(
            "otlp metrics json docs",
            decode_otlp_metrics,
            body,
            content_type="application/json",
            now_ms=NOW_MS,
            limits=TIGHT,
        )
    elif target == "otlp logs":
        decodes(
            "otlp logs json docs",
            decode_otlp_logs,
            body,
            content_type="application/json",
            now_ns=NOW_NS,
            limits=TIGHT,
        )
    else:
        decodes("truth json docs", decode_truth, body)


# --- JSON lines ---------------------------------------------------------------------------
@FUZZ
@given(
    st.lists(json_docs | st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=10)
)
def test_json_lines_account_for_every_line(lines):
    raw_lines = [line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines]
    body = b"\n".join(raw_lines)
    sent = sum(1 for line in raw_lines if line.strip())
    batch = decodes("json lines", decode_json_lines, body, now_ns=NOW_NS, limits=TIGHT)
    assert batch is not None  # per-line problems never fail the request
    assert len(batch.entries) + batch.rejected_count == sent
    for entry in batch.entries:
        entry.message.encode("utf-8")  # no lone surrogates reach the store
        for key, value in entry.attributes.items():
            (key + value).encode("utf-8")


# --- exposition text ----------------------------------------------------------------------
exposition_text = st.lists(
    st.text(alphabet='abc_:{}=",# \t\\n\r019.+-eEInfaN', max_size=40)
    | st.sampled_from(["# TYPE a counter", "# EOF", 'a{b="c"} 1 2', "a_created 1", "a NaN"]),
    max_size=12,
).map("\n".join)


@FUZZ
@given(
    exposition_text,
    st.sampled_from(["text/plain", "application/openmetrics-text", "", "x/protobuf"]),
    st.booleans(),
)
def test_exposition(text, content_type, honor):
    decodes(
        "exposition",
        parse_exposition,
        text.encode("utf-8", "surrogatepass"),
        content_type=content_type,
        scrape_ts_ms=NOW_MS,
        target_labels={"job": "j", "instance": "i:1"},
        honor_labels=honor,
        limits=TIGHT,
    )


# --- syslog -------------------------------------------------------------------------------
syslog_messages = st.tuples(
    st.sampled_from([b"", b"<13>", b"<0>", b"<191>", b"<192>", b"<999>", b"<13>1 ", b"<34>1 "]),
    st.sampled_from([b"", b"2024-01-01T00:00:00Z ", b"- ", b"Jan  1 00:00:00 ", b"Feb 29 1:2:3 "]),
    st.binary(max_size=60)
    | st.text(alphabet=' []="\\-ahost:', max_size=60).map(lambda t: t.encode()),
).map(b"".join)


@FUZZ
@given(st.lists(syslog_messages, max_size=6), st.integers(1, 64), st.integers(8, 128))
def test_syslog_parse_and_framing(messages, chunk, max_frame):
    for message in messages:
        entry = decodes("syslog message", parse_syslog, message, received_ns=NOW_NS, peer="p")
        if entry is not None:
            assert entry.message is not None and entry.severity > 0
    stream = b"".join(
        b"%d %s" % (len(m), m) if i % 2 else m + b"\n" for i, m in enumerate(messages)
    )
    framer = SyslogStreamFramer(max_frame=max_frame)
    frames = []
    for start in range(0, len(stream), chunk):
        frames += framer.feed(stream[start : start + chunk])
    frames += framer.flush()
    fuzzcount.add("fuzz cases: syslog stream")
    assert all(len(f) <= max_frame for f in frames)
    whole = SyslogStreamFramer(max_frame=max_frame)
    assert whole.feed(stream) + whole.flush() == frames  # chunking never changes framing


# --- Content-Encoding ---------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(["gzip", "deflate"]), st.data())
def test_inflate_is_bounded(data, encoding, draw):
    limit = 1000
    packed = gzip.compress(data) if encoding == "gzip" else zlib.compress(data)
    how = draw.draw(st.sampled_from(["as is", "cut", "junk", "raw", "two members"]))
    if how == "cut":
        packed = packed[: draw.draw(st.integers(0, len(packed) - 1))]
    elif how == "junk":
        packed += draw.draw(st.binary(min_size=1, max_size=8))
    elif how == "raw":
        packed = data
    elif how == "two members":
        packed += packed
    fuzzcount.add("fuzz cases: inflate")
    try:
        out = _inflate(packed, encoding, limit)
    except Refused as exc:
        assert 400 <= exc.status < 500
        if how == "as is" and len(data) <= limit:
            raise AssertionError("a valid body within the limit was refused") from None
        return
    assert len(out) <= limit
    if how == "as is":
        assert out == data
    elif how == "two members" and encoding == "gzip":
        assert out == data + data  # both members are read, none silently dropped
    assert not math.isnan(len(out))
