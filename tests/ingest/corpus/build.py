"""Write the hostile-input corpus: ``python -m tests.ingest.corpus.build``.

Deterministic, so a rebuild changes nothing unless a case is added. Every file is listed in
``manifest.json`` with the receiver it was made for (``kind``), the Content-Type and
Content-Encoding to send it with, and ``valid`` when the payload is well formed (a 2xx is
expected on its own receiver; anything else must be a 4xx). Large payloads are stored
compressed the way a client would send them (snappy for remote_write, gzip elsewhere), so
the repository holds kilobytes while the server sees megabytes.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

from cramjam import snappy
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from ingest.protos import prometheus as pb

HERE = Path(__file__).parent
# Timestamps inside the accepted window whenever the corpus is replayed: the HTTP test
# shifts them (see RELATIVE_TS below), so "valid" cases stay valid years from now.
T0_MS = 1_700_000_000_000
PB, JSON, NDJSON, TEXT = (
    "application/x-protobuf",
    "application/json",
    "application/x-ndjson",
    "text/plain",
)
MANIFEST: list[dict] = []
STORE_COMPRESSED_OVER = 8 * 1024


def load(entry: dict) -> bytes:
    """A case's bytes as a client sends them (transport encoding applied, storage undone)."""
    data = (HERE / entry["file"]).read_bytes()
    return gzip.decompress(data) if entry["stored"] == "gzip" else data


def manifest() -> list[dict]:
    return json.loads((HERE / "manifest.json").read_text())


def case(name: str, kind: str, data: bytes, *, encoding: str = "", valid: bool = False, note=""):
    if encoding == "gzip":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    elif encoding == "raw-gzip":  # already gzip, or meant to look like it
        encoding = "gzip"
    stored = ""
    if len(data) > STORE_COMPRESSED_OVER:
        # Kept small in git; the tests undo this layer before sending (see load()).
        name, data, stored = name + ".z", gzip.compress(data, 9, mtime=0), "gzip"
    (HERE / name).write_bytes(data)
    content_type = {
        "remote_write": PB,
        "otlp_metrics_pb": PB,
        "otlp_logs_pb": PB,
        "otlp_metrics_json": JSON,
        "otlp_logs_json": JSON,
        "jsonl": NDJSON,
        "truth": JSON,
        "syslog": TEXT,
        "exposition": TEXT,
    }[kind]
    MANIFEST.append(
        {
            "file": name,
            "kind": kind,
            "content_type": content_type,
            "encoding": encoding or ("snappy" if kind == "remote_write" else ""),
            "stored": stored,
            "valid": valid,
            "note": note,
        }
    )


# --- remote_write --------------------------------------------------------------------------
def write_request(series: list[tuple[list[tuple[str, str]], list[tuple[int, float]]]]) -> bytes:
    request = pb.WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name, value in labels:
            ts.labels.add(name=name, value=value)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return request.SerializeToString()


def sz(raw: bytes) -> bytes:
    return bytes(snappy.compress_raw(raw))


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def remote_write_cases() -> None:
    good = write_request([([("__name__", "up"), ("node", "n1")], [(T0_MS, 1.0)])])
    case("rw_valid.bin", "remote_write", sz(good), valid=True)
    case("rw_truncated_message.bin", "remote_write", sz(good[:-3]), note="protobuf cut short")
    case("rw_truncated_snappy.bin", "remote_write", sz(good)[:-4], note="snappy cut short")
    case("rw_empty.bin", "remote_write", b"")
    case("rw_not_snappy.bin", "remote_write", good, note="protobuf sent without snappy")
    huge_len = b"\x0a" + b"\xff" * 9 + b"\x01"  # field 1, length varint of 2**64-1
    case("rw_huge_varint_length.bin", "remote_write", sz(huge_len))
    case("rw_overlong_varint.bin", "remote_write", sz(b"\x08" + b"\x80" * 20 + b"\x01"))
    case(
        "rw_preamble_claims_4gib.bin",
        "remote_write",
        b"\xff\xff\xff\xff\x0f" + b"\x00" * 32,
        note="snappy length preamble far over the decoded-size limit",
    )
    case(
        "rw_snappy_bomb.bin",
        "remote_write",
        sz(b"\x00" * (9 << 20)),
        note="9 MiB of zeros: over the 8 MiB decoded-size limit the corpus tests run with",
    )
    # Groups nested 50 000 deep inside an unknown field: recursion, not memory.
    nested = b"\x7b" * 50_000 + b"\x7c" * 50_000  # field 15 start/end group
    case("rw_deep_groups.bin", "remote_write", sz(nested))
    label = pb.RawLabel(name=b"job", value=b"\xff\xfe bad utf-8").SerializeToString()
    raw = pb.RawWriteRequest()
    ts = raw.timeseries.add()
    ts.labels.extend([pb.RawLabel(name=b"__name__", value=b"up").SerializeToString(), label])
    ts.samples.append(pb.Sample(timestamp=T0_MS, value=1).SerializeToString())
    case("rw_invalid_utf8_label.bin", "remote_write", sz(raw.SerializeToString()))
    case(
        "rw_1mb_label_value.bin",
        "remote_write",
        sz(write_request([([("__name__", "up"), ("job", "x" * (1 << 20))], [(T0_MS, 1.0)])])),
    )
    case(
        "rw_1mb_label_name.bin",
        "remote_write",
        sz(write_request([([("__name__", "up"), ("n" * (1 << 20), "v")], [(T0_MS, 1.0)])])),
    )
    long_node = [
        ([("__name__", "up"), ("node", "n" * 1000)], [(T0_MS, 1.0)]),
        ([("__name__", "up"), ("instance", "i" * 300 + ":9100")], [(T0_MS, 1.0)]),
        ([("__name__", "up"), ("node", "fine")], [(T0_MS, 1.0)]),
    ]
    case("rw_long_node_names.bin", "remote_write", sz(write_request(long_node)))
    many_labels = [("__name__", "up")] + [(f"l{i}", "v") for i in range(5000)]
    case("rw_5000_labels.bin", "remote_write", sz(write_request([(many_labels, [(T0_MS, 1)])])))
    one = write_request([([("__name__", "a"), ("i", "1")], [(T0_MS, 1.0)])])
    case(
        "rw_150k_tiny_series.bin",
        "remote_write",
        sz(one * 150_000),  # repeated fields concatenate: 150 000 series in one request
        note="over the series-per-request limit",
    )
    rng = random.Random(5)
    tiny = [([("__name__", "tiny"), ("i", str(i))], [(T0_MS, float(i))]) for i in range(3000)]
    case("rw_3000_distinct_series.bin", "remote_write", sz(write_request(tiny)), valid=True)
    samples = [(T0_MS + k, 0.0) for k in range(50_000)]
    case(
        "rw_one_series_50k_samples.bin",
        "remote_write",
        sz(write_request([([("__name__", "dense")], samples)])),
        valid=True,
    )
    bad_ts = [(-(2**63), 1.0), (2**63 - 1, 2.0), (0, float("nan"))]
    case(
        "rw_extreme_timestamps.bin",
        "remote_write",
        sz(write_request([([("__name__", "t")], bad_ts)])),
    )
    case("rw_random_bytes.bin", "remote_write", sz(rng.randbytes(4096)))
    case("rw_random_not_snappy.bin", "remote_write", rng.randbytes(4096))
    case("rw_sample_wrong_wire_type.bin", "remote_write", sz(b"\x0a\x05\x12\x03\x0d\x01\x02"))


# --- OTLP ----------------------------------------------------------------------------------
def otlp_metrics(
    n_points: int = 1, attr_value: str = "v", name: str = "m"
) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    metric = metrics.add(name=name)
    for i in range(n_points):
        point = metric.gauge.data_points.add(as_double=float(i), time_unix_nano=T0_MS * 10**6)
        point.attributes.add(key="i", value=AnyValue(string_value=f"{attr_value}{i}"))
    return request


def nested_any_bytes(depth: int) -> bytes:
    """An AnyValue holding a kvlist holding a kvlist... encoded by hand: the protobuf
    runtime refuses to build (or copy) anything deeper than its own recursion limit."""
    value = AnyValue(string_value="leaf").SerializeToString()
    for _ in range(depth):
        kv = b"\x0a\x01k\x12" + varint(len(value)) + value  # KeyValue{key, value}
        kvlist = b"\x0a" + varint(len(kv)) + kv  # KeyValueList{values}
        value = b"\x32" + varint(len(kvlist)) + kvlist  # AnyValue{kvlist_value}
    return value


def logs_request_with_body(body: bytes) -> bytes:
    record = b"\x2a" + varint(len(body)) + body  # LogRecord{body}
    scope = b"\x12" + varint(len(record)) + record  # ScopeLogs{log_records}
    resource = b"\x12" + varint(len(scope)) + scope  # ResourceLogs{scope_logs}
    return b"\x0a" + varint(len(resource)) + resource  # ExportLogsServiceRequest


def otlp_logs(body: AnyValue | None = None, n: int = 1) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for i in range(n):
        records.add(body=body or AnyValue(string_value=f"line {i}"), time_unix_nano=T0_MS * 10**6)
    return request


def otlp_cases() -> None:
    good = otlp_metrics().SerializeToString()
    case("otlp_metrics_valid.pb", "otlp_metrics_pb", good, valid=True)
    case("otlp_metrics_truncated.pb", "otlp_metrics_pb", good[:-5])
    case("otlp_metrics_huge_varint.pb", "otlp_metrics_pb", b"\x0a" + b"\xff" * 9 + b"\x01")
    case("otlp_metrics_random.pb", "otlp_metrics_pb", random.Random(6).randbytes(2048))
    case(
        "otlp_metrics_1mb_attribute.pb.gz",
        "otlp_metrics_pb",
        otlp_metrics(attr_value="x" * (1 << 20)).SerializeToString(),
        encoding="gzip",
    )
    case(
        "otlp_metrics_150k_points.pb.gz",
        "otlp_metrics_pb",
        otlp_metrics(n_points=150_000).SerializeToString(),
        encoding="gzip",
        note="more series than the per-request limit",
    )
    bad_utf8 = good.replace(b"\x01m", b"\x01\xff")  # the metric name "m" becomes 0xff
    case("otlp_metrics_invalid_utf8.pb", "otlp_metrics_pb", bad_utf8)
    logs_good = otlp_logs().SerializeToString()
    case("otlp_logs_valid.pb", "otlp_logs_pb", logs_good, valid=True)
    case(
        "otlp_logs_deep_any_30.pb",
        "otlp_logs_pb",
        logs_request_with_body(nested_any_bytes(30)),
        valid=True,
        note="deep but within the parser's limit: stored as compact JSON text",
    )
    case(
        "otlp_logs_deep_any_5000.pb",
        "otlp_logs_pb",
        logs_request_with_body(nested_any_bytes(5000)),
        note="deeper than the protobuf parser's recursion limit",
    )
    case(
        "otlp_logs_1mb_body.pb.gz",
        "otlp_logs_pb",
        otlp_logs(AnyValue(string_value="b" * (1 << 20))).SerializeToString(),
        encoding="gzip",
        valid=True,
        note="stored cut to the log line limit and flagged",
    )
    case("otlp_logs_truncated.pb", "otlp_logs_pb", logs_good[:-2])
    # JSON
    doc = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "j",
                                "gauge": {
                                    "dataPoints": [
                                        {"asDouble": 1.5, "timeUnixNano": str(T0_MS * 10**6)}
                                    ]
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    case("otlp_metrics_valid.json", "otlp_metrics_json", json.dumps(doc).encode(), valid=True)
    case("otlp_metrics_deep_arrays.json", "otlp_metrics_json", b"[" * 200_000 + b"]" * 200_000)
    case(
        "otlp_metrics_deep_objects.json",
        "otlp_metrics_json",
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    )
    case(
        "otlp_metrics_bigint.json", "otlp_metrics_json", b'{"resourceMetrics":' + b"9" * 5000 + b"}"
    )
    case(
        "otlp_metrics_wrong_types.json",
        "otlp_metrics_json",
        b'{"resourceMetrics": {"a": [1, null, true]}}',
    )
    case("otlp_metrics_invalid_utf8.json", "otlp_metrics_json", b'{"resourceMetrics": "\xff\xfe"}')
    case("otlp_metrics_nan.json", "otlp_metrics_json", b'{"resourceMetrics": NaN}')
    deep_any = b'{"stringValue": "x"}'
    for _ in range(500):  # built as text: json.dumps itself stops at this depth
        deep_any = b'{"kvlistValue": {"values": [{"key": "k", "value": ' + deep_any + b"}]}}"
    logs_doc = b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": ' + deep_any
    logs_doc += b"}]}]}]}"
    case("otlp_logs_deep_any.json", "otlp_logs_json", logs_doc)
    ids = {
        "resourceLogs": [
            {"scopeLogs": [{"logRecords": [{"traceId": "zz" * 16, "body": {"stringValue": "x"}}]}]}
        ]
    }
    host = {"key": "host.name", "value": {"stringValue": "h" * 1000}}
    long_host = {
        "resourceLogs": [
            {
                "resource": {"attributes": [host]},
                "scopeLogs": [{"logRecords": [{"body": {"stringValue": "x"}}]}],
            }
        ]
    }
    case("otlp_logs_long_host.json", "otlp_logs_json", json.dumps(long_host).encode())
    case("otlp_logs_bad_trace_id.json", "otlp_logs_json", json.dumps(ids).encode(), valid=True)


# --- JSON lines ----------------------------------------------------------------------------
def jsonl_cases() -> None:
    lines = [{"message": "ok", "level": "info", "node": "n1"}, {"msg": "second", "ts": T0_MS}]
    body = "\n".join(json.dumps(x) for x in lines).encode()
    case("jsonl_valid.jsonl", "jsonl", body, valid=True)
    case("jsonl_deep_arrays.jsonl", "jsonl", b"[" * 100_000)
    case(
        "jsonl_deep_in_message.jsonl",
        "jsonl",
        b'{"message":"x","a":' + b"[" * 5000 + b"]" * 5000 + b"}",
    )
    case(
        "jsonl_invalid_utf8.jsonl",
        "jsonl",
        b'{"message": "\xff\xfe\xc0\x80"}\n{"message": "ok"}',
        valid=True,
        note="kept: invalid bytes stored as U+FFFD",
    )
    case(
        "jsonl_lone_surrogates.jsonl",
        "jsonl",
        b'{"message": "\\ud800 x \\udfff", "\\udc00": "\\ud83d"}',
        valid=True,
        note="kept: lone surrogate escapes stored as U+FFFD",
    )
    case(
        "jsonl_nul.jsonl",
        "jsonl",
        b'{"message": "a\\u0000b", "node": "n\\u0000x", "k\\u0000": "v"}',
        valid=True,
        note="kept: NUL (which PostgreSQL text cannot hold) stored as U+FFFD",
    )
    case(
        "jsonl_huge_numbers.jsonl",
        "jsonl",
        b'{"message": "x", "ts": 1e999, "level": -1e999}\n{"message":"y","ts":'
        + b"9" * 5000
        + b"}",
    )
    case(
        "jsonl_1mb_line.jsonl.gz",
        "jsonl",
        b'{"message": "' + b"m" * (1 << 20) + b'"}',
        encoding="gzip",
    )
    case(
        "jsonl_200k_lines.jsonl.gz",
        "jsonl",
        b'{"message": "tiny"}\n' * 200_000,
        encoding="gzip",
        note="more lines than the per-request limit: the first ones are kept",
    )
    case(
        "jsonl_long_node.jsonl",
        "jsonl",
        json.dumps({"message": "x", "node": "n" * 5000, "instance": "i" * 5000}).encode(),
    )
    case(
        "jsonl_not_objects.jsonl",
        "jsonl",
        b'1\n"s"\nnull\n[]\ntrue\n{"message": 5}\n{"message": null}',
    )
    case(
        "jsonl_many_attributes.jsonl",
        "jsonl",
        json.dumps({"message": "x", **{f"k{i}": i for i in range(20_000)}}).encode(),
    )
    case("jsonl_nul_bytes.jsonl", "jsonl", b"\x00" * 10_000)
    case("jsonl_crlf_and_blank.jsonl", "jsonl", b'\r\n\r\n{"message":"a"}\r\n\n\n', valid=True)


# --- gzip trouble (any receiver that takes Content-Encoding: gzip) -------------------------
def gzip_cases() -> None:
    zeros = b"\x00" * (64 << 20)
    case("gzip_bomb_64mib.gz", "jsonl", gzip.compress(zeros, 9, mtime=0), encoding="raw-gzip")
    inner = gzip.compress(b"\n" * (8 << 20), 9, mtime=0)
    case("gzip_double.gz", "jsonl", gzip.compress(inner, 9, mtime=0), encoding="raw-gzip")
    good = gzip.compress(b'{"message": "x"}', 9, mtime=0)
    case("gzip_truncated.gz", "jsonl", good[:-6], encoding="raw-gzip")
    case("gzip_bad_crc.gz", "jsonl", good[:-8] + b"\0\0\0\0" + good[-4:], encoding="raw-gzip")
    case("gzip_trailing_garbage.gz", "jsonl", good + b"garbage", encoding="raw-gzip")
    case("gzip_not_gzip.gz", "jsonl", b"plain text, not gzip", encoding="raw-gzip")


# --- syslog --------------------------------------------------------------------------------
def syslog_cases() -> None:
    rng = random.Random(7)
    items = {
        "syslog_random.txt": rng.randbytes(4096),
        "syslog_pri_overflow.txt": b"<99999999999>1 - - - - - - x\n<192>x\n<-1>y\n<>z",
        "syslog_unterminated_sd.txt": b'<13>1 2024-01-01T00:00:00Z h a p m [id k="'
        + b"\\" * 60_000,
        "syslog_repeated_sd.txt": b"<13>1 2024-01-01T00:00:00Z h a p m " + b'[x a="b"]' * 100_000,
        "syslog_bad_dates.txt": (
            b"<13>1 2024-02-30T25:61:61+99:99 h a p m - x\n<13>Feb 30 99:99:99 h x"
        ),
        "syslog_octet_count_lies.txt": b"9999999999 <13>short\n00 <13>x\n5 <13>1 too long",
        "syslog_nul_and_bom.txt": b"<13>1 - h a p m - \xef\xbb\xbf\x00\x00\x00msg\x00",
        "syslog_1mb_line.txt": b"<13>" + b"A" * (1 << 20),
        "syslog_invalid_utf8.txt": b"<13>Jan  1 00:00:00 host app[1]: \xff\xfe\xc0\xaf",
        "syslog_only_whitespace.txt": b"\r\n\x00 \t\n",
        "syslog_long_hostname.txt": b"<13>1 2024-01-01T00:00:00Z " + b"h" * 250 + b" app - - - m",
    }
    for name, data in items.items():
        case(name, "syslog", data)


# --- exposition (scraped) ------------------------------------------------------------------
def exposition_cases() -> None:
    items = {
        "expo_1mb_label_value.txt": b'm{l="' + b"v" * (1 << 20) + b'"} 1\n',
        "expo_unclosed_quote.txt": b'm{l="' + b"\\" * 200_000,
        "expo_many_pairs.txt": b"m{" + b'a="b",' * 50_000 + b"} 1",
        "expo_invalid_utf8.txt": b"m 1\n\xff\xfe 2\n",
        "expo_many_series.txt.gz": b"".join(b's{i="%d"} 1\n' % i for i in range(120_000)),
        "expo_huge_numbers.txt": b"m 1e999999\nm2 " + b"9" * 10_000 + b"\nm3 1 " + b"9" * 400,
    }
    for name, data in items.items():
        case(name, "exposition", data, encoding="gzip" if name.endswith(".gz") else "")


# --- simulator ground truth ----------------------------------------------------------------
def truth_cases() -> None:
    valid = {"run": "r1", "nodes": [{"name": "n1", "cpu_cores": 8}], "instances": [], "cases": []}
    case("truth_valid.json", "truth", json.dumps(valid).encode(), valid=True)
    case("truth_deep.json", "truth", b"[" * 200_000)
    big = {"run": "r", "nodes": [{"name": "n", "cpu_cores": 10**30, "memory_bytes": 10**30}]}
    case("truth_big_ints.json", "truth", json.dumps(big).encode())
    far = {
        "run": "r",
        "cases": [
            {"case_id": 1, "kind": "anomaly", "scenario": "s", "node": "n", "start": 0,
             "end": 10**15, "intensity": 1e308 * 10}
        ],
    }  # fmt: skip
    case("truth_far_future.json", "truth", json.dumps(far).encode())
    nul = {"run": "r\u0000", "nodes": [{"name": "n\u0000"}]}
    case("truth_nul.json", "truth", json.dumps(nul).encode())


def main() -> None:
    for path in HERE.iterdir():
        if (
            path.suffix in {".bin", ".pb", ".json", ".jsonl", ".gz", ".txt", ".z"}
            and path.name != "manifest.json"
        ):
            path.unlink()
    started = time.perf_counter()
    for build in (
        remote_write_cases,
        otlp_cases,
        jsonl_cases,
        gzip_cases,
        syslog_cases,
        exposition_cases,
        truth_cases,
    ):
        build()
    (HERE / "manifest.json").write_text(json.dumps(MANIFEST, indent=1) + "\n")
    total = sum((HERE / c["file"]).stat().st_size for c in MANIFEST)
    sent = sum(len(load(c)) for c in MANIFEST)
    took = time.perf_counter() - started
    print(f"{len(MANIFEST)} cases, {total} bytes stored, {sent} bytes as sent, {took:.1f} s")


if __name__ == "__main__":
    main()
