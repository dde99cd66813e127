"""Prometheus text and OpenMetrics exposition parsing, as the scraper uses it."""

from __future__ import annotations

import contextlib
import math
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from ingest.exposition import parse_exposition
from ingest.limits import Limits
from ingest.types import NORMAL_NAN, DecodeError, MetricBatch

SCRAPE = 1_760_000_000_000
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

NODE_EXPORTER = b"""\
# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.3e-05
go_gc_duration_seconds{quantile="0.25"} 3.1e-05
go_gc_duration_seconds{quantile="0.5"} 4.4e-05
go_gc_duration_seconds{quantile="1"} 0.000212
go_gc_duration_seconds_sum 0.0123
go_gc_duration_seconds_count 231
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 123456.78
node_cpu_seconds_total{cpu="0",mode="iowait"} 12.5
node_cpu_seconds_total{cpu="0",mode="user"} 2345.01
node_cpu_seconds_total{cpu="1",mode="idle"} 123001.9
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 4.2123264e+10
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 8.25e+08
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.42
# HELP node_network_receive_errs_total Network device statistic receive_errs.
# TYPE node_network_receive_errs_total counter
node_network_receive_errs_total{device="eth0"} 0
node_network_receive_errs_total{device="lo"} 0
# HELP node_disk_io_time_weighted_seconds_total This is the weighted # of seconds spent doing I/Os.
# TYPE node_disk_io_time_weighted_seconds_total counter
node_disk_io_time_weighted_seconds_total{device="nvme0n1"} 1234.5
# HELP node_scrape_collector_duration_seconds node_exporter: Duration of a collector scrape.
# TYPE node_scrape_collector_duration_seconds histogram
node_scrape_collector_duration_seconds_bucket{le="0.005"} 10
node_scrape_collector_duration_seconds_bucket{le="0.01"} 17
node_scrape_collector_duration_seconds_bucket{le="+Inf"} 20
node_scrape_collector_duration_seconds_sum 0.1337
node_scrape_collector_duration_seconds_count 20
# HELP node_textfile_scrape_error 1 if there was an error opening or reading a file, 0 otherwise
# TYPE node_textfile_scrape_error gauge
node_textfile_scrape_error 0
# HELP node_uname_info Labeled system information as provided by the uname system call.
# TYPE node_uname_info gauge
node_uname_info{domainname="(none)",machine="x86_64",nodename="web-1",release="6.8.0",\
sysname="Linux",version="#1 SMP PREEMPT_DYNAMIC"} 1
"""


def parse(data: bytes | str, content_type: str = TEXT, **kwargs) -> MetricBatch:
    if isinstance(data, str):
        data = data.encode()
    return parse_exposition(data, content_type=content_type, scrape_ts_ms=SCRAPE, **kwargs)


def by_name(batch: MetricBatch) -> dict[tuple, float]:
    return {s.labels: s.values[0] for s in batch.series}


def bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


# --- real-looking payloads ------------------------------------------------------------------


def test_node_exporter_scrape() -> None:
    batch = parse(NODE_EXPORTER, target_labels={"job": "node", "instance": "web-1:9100"})
    assert batch.rejected == []
    assert len(batch.series) == 23
    assert all(s.timestamps_ms == [SCRAPE] for s in batch.series)
    values = by_name(batch)
    target = (("instance", "web-1:9100"), ("job", "node"))
    cpu = (("__name__", "node_cpu_seconds_total"), ("cpu", "0"), *target, ("mode", "idle"))
    assert values[cpu] == 123456.78
    assert values[(("__name__", "go_gc_duration_seconds"), *target, ("quantile", "0.5"))] == 4.4e-5
    bucket = (
        ("__name__", "node_scrape_collector_duration_seconds_bucket"),
        *target,
        ("le", "+Inf"),
    )
    assert values[bucket] == 20
    assert values[(("__name__", "node_load1"), *target)] == 0.42
    uname = next(s for s in batch.series if s.metric == "node_uname_info")
    assert dict(uname.labels)["version"] == "#1 SMP PREEMPT_DYNAMIC"


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    requests = Counter("http_requests", "Requests.", ["path"], registry=reg)
    requests.labels(path='/a "quoted" \\ path\nwith newline').inc(3)
    Histogram("latency_seconds", "Latency.", registry=reg, buckets=(0.1, 1.0)).observe(0.3)
    Summary("payload_bytes", "Sizes.", registry=reg).observe(512)
    Gauge("temperature", "Temp.", registry=reg).set(float("-inf"))
    return reg


def test_prometheus_client_text_output() -> None:
    batch = parse(text_latest(registry()))
    assert batch.rejected == []
    values = {
        (s.metric, dict(s.labels).get("path") or dict(s.labels).get("le")): s.values[0]
        for s in batch.series
    }
    assert values[("http_requests_total", '/a "quoted" \\ path\nwith newline')] == 3
    assert values[("latency_seconds_bucket", "1.0")] == 1
    assert values[("payload_bytes_sum", None)] == 512
    assert values[("temperature", None)] == -math.inf
    # In the text format, _created series are ordinary gauges and are kept.
    assert ("http_requests_created", '/a "quoted" \\ path\nwith newline') in values


def test_prometheus_client_openmetrics_output_drops_created() -> None:
    batch = parse(openmetrics_latest(registry()), OPENMETRICS)
    assert batch.rejected == []
    names = {s.metric for s in batch.series}
    assert "http_requests_total" in names and "latency_seconds_count" in names
    assert not any(name.endswith("_created") for name in names)


def test_openmetrics_exemplars_timestamps_and_eof() -> None:
    data = """\
# TYPE rpc_seconds histogram
# UNIT rpc_seconds seconds
# HELP rpc_seconds RPC latency.
rpc_seconds_bucket{le="0.5"} 3 # {trace_id="abc"} 0.2 1759999999.5
rpc_seconds_bucket{le="+Inf"} 5 1759999990.125 # {trace_id="def # not a comment"} 0.9
rpc_seconds_count 5
rpc_seconds_sum 2.5
rpc_seconds_created 1759990000.0
# TYPE jobs gauge
jobs{state="a # b"} 1.5e3 1759999995
# EOF
"""
    batch = parse(data, OPENMETRICS)
    assert batch.rejected == []
    got = {
        (s.metric, dict(s.labels).get("le")): (s.timestamps_ms[0], s.values[0])
        for s in batch.series
    }
    assert got == {
        ("rpc_seconds_bucket", "0.5"): (SCRAPE, 3.0),
        ("rpc_seconds_bucket", "+Inf"): (1_759_999_990_125, 5.0),
        ("rpc_seconds_count", None): (SCRAPE, 5.0),
        ("rpc_seconds_sum", None): (SCRAPE, 2.5),
        ("jobs", None): (1_759_999_995_000, 1500.0),
    }
    assert dict(batch.series[-1].labels)["state"] == "a # b"


def test_openmetrics_without_eof_or_with_text_after_it() -> None:
    batch = parse("a 1\nb 2\n", OPENMETRICS)
    assert [s.metric for s in batch.series] == ["a", "b"]
    assert [(r.field, r.count) for r in batch.rejected] == [("body", 0)]
    assert "# EOF" in batch.rejected[0].reason
    batch = parse("a 1\n# EOF\nb 2\nc 3\n", OPENMETRICS)
    assert [s.metric for s in batch.series] == ["a"]
    assert [(r.field, r.count) for r in batch.rejected] == [("line 2", 2)]


def test_text_format_timestamps_are_milliseconds() -> None:
    batch = parse("a 1 1759999999123\nb 2 -1\n", limits=Limits(max_age_ms=10**15))
    assert [s.timestamps_ms for s in batch.series] == [[1_759_999_999_123], [-1]]


# --- values, escaping and labels ----------------------------------------------------------


def test_special_values() -> None:
    batch = parse("a NaN\nb +Inf\nc -Inf\nd Inf\ne nan\nf 1e-3\ng -0.0\n")
    values = [s.values[0] for s in batch.series]
    assert bits(values[0]) == bits(NORMAL_NAN) and bits(values[4]) == bits(NORMAL_NAN)
    assert values[1:4] == [math.inf, -math.inf, math.inf]
    assert values[5] == 0.001 and bits(values[6]) == bits(-0.0)


def test_label_value_escapes() -> None:
    batch = parse('a{v="back\\\\slash \\"quote\\" new\\nline \\t kept"} 1\n')
    (s,) = batch.series
    assert dict(s.labels)["v"] == 'back\\slash "quote" new\nline \\t kept'


def test_label_syntax_variants() -> None:
    batch = parse('a{x="1",} 1\nb{ x = "1" , y="}" } 2\nc{} 3\nd {x="1"} 4\n')
    assert batch.rejected == []
    assert [s.labels for s in batch.series] == [
        (("__name__", "a"), ("x", "1")),
        (("__name__", "b"), ("x", "1"), ("y", "}")),
        (("__name__", "c"),),
        (("__name__", "d"), ("x", "1")),
    ]


def test_empty_label_values_are_dropped() -> None:
    (s,) = parse('a{x="",y="1"} 1\n').series
    assert s.labels == (("__name__", "a"), ("y", "1"))


def test_target_labels_rename_conflicts_to_exported() -> None:
    data = 'up{job="app",instance="pod-7",exported_job="old"} 1\nother 2\n'
    targets = {"job": "kube", "instance": "10.0.0.7:8080", "zone": "eu-1"}
    first, second = parse(data, target_labels=targets).series
    assert dict(first.labels) == {
        "__name__": "up",
        "job": "kube",
        "instance": "10.0.0.7:8080",
        "zone": "eu-1",
        "exported_instance": "pod-7",
        "exported_job": "old",
        "exported_exported_job": "app",
    }
    assert dict(second.labels) == {"__name__": "other", **targets}


def test_honor_labels_keeps_exposed_values() -> None:
    data = 'up{job="app",instance="pod-7"} 1\n'
    targets = {"job": "kube", "instance": "10.0.0.7:8080", "zone": "eu-1"}
    (s,) = parse(data, target_labels=targets, honor_labels=True).series
    assert dict(s.labels) == {"__name__": "up", "job": "app", "instance": "pod-7", "zone": "eu-1"}


def test_invalid_target_labels_raise() -> None:
    with pytest.raises(DecodeError) as info:
        parse("a 1\n", target_labels={"bad-name": "x"})
    assert info.value.field == "target_labels"


# --- bad lines are rejections; the good lines are kept ------------------------------------


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("1bad 1", "metric name"),
        ("bad-name 1", "expected"),
        ('a{x="1" 1', "label set"),
        ("a{x=1} 1", "label set"),
        ('a{1x="1"} 1', "label set"),
        ('a{x="1",x="2"} 1', "duplicate label name 'x'"),
        ('a{__name__="b"} 1', "duplicate label name"),
        ("a", "has no value"),
        ("a one", "invalid sample value"),
        ("a 1_000", "invalid sample value"),
        ("a 1 12.5", "invalid timestamp"),
        ("a 1 1_000", "invalid timestamp"),
        ("a 1 2 3", "expected"),
        ('a 1 # {trace_id="x"} 1', "exemplars exist only in OpenMetrics"),
        ("a 1 1", "outside the accepted window"),
    ],
)
def test_bad_lines_are_rejected_and_the_rest_kept(line: str, words: str) -> None:
    batch = parse(f"good 1\n{line}\nalso_good 2\n")
    assert [s.metric for s in batch.series] == ["good", "also_good"]
    (rejection,) = batch.rejected
    assert rejection.field == "line 2"
    assert words in rejection.reason
    assert rejection.count == 1


def test_bad_type_lines_are_reported_without_losing_samples() -> None:
    batch = parse("# TYPE a countr\na 1\n# TYPE\nb 2\n")
    assert [s.metric for s in batch.series] == ["a", "b"]
    assert [(r.field, r.count) for r in batch.rejected] == [("line 1", 0), ("line 3", 0)]


def test_duplicate_series_keep_the_first() -> None:
    batch = parse('a{x="1"} 1\na{x="1"} 2\na{x="2"} 3\n')
    assert [s.values for s in batch.series] == [[1.0], [3.0]]
    assert [(r.field, r.reason) for r in batch.rejected] == [
        ("line 2", "duplicate series: same labels as line 1")
    ]


def test_blank_lines_comments_and_crlf() -> None:
    batch = parse("# just a comment\n\n  a 1\r\n\t\nb 2")
    assert [(s.metric, s.values) for s in batch.series] == [("a", [1.0]), ("b", [2.0])]


def test_label_limits() -> None:
    limits = Limits(max_labels=3, max_label_name_length=5, max_label_value_length=4)
    batch = parse(
        'a{x="1",y="2",z="3"} 1\nb{longname="1"} 1\nc{x="12345"} 1\nd{x="1234"} 1\n',
        limits=limits,
    )
    assert [s.metric for s in batch.series] == ["d"]
    assert [r.field for r in batch.rejected] == ["line 1", "line 2", "line 3"]


# --- whole-payload failures ---------------------------------------------------------------


def test_non_utf8_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="UTF-8"):
        parse(b'a{x="\xff"} 1\n')


def test_protobuf_exposition_is_refused() -> None:
    content_type = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily"
    with pytest.raises(DecodeError) as info:
        parse("a 1\n", content_type)
    assert info.value.status == 415


def test_sample_and_size_limits() -> None:
    data = "".join(f"m{k} {k}\n" for k in range(10))
    assert len(parse(data, limits=Limits(max_samples=10)).series) == 10
    with pytest.raises(DecodeError) as info:
        parse(data, limits=Limits(max_samples=9))
    assert info.value.status == 413
    with pytest.raises(DecodeError):
        parse(data, limits=Limits(max_decoded_bytes=len(data) - 1))


def test_pathological_lines_stay_linear() -> None:
    nasty = [
        "a{" + 'x="' * 20_000,
        "a{" + 'x="\\"' * 20_000 + "} 1",
        "a" * 100_000,
        "a " + " " * 100_000 + "1 x",
        'a{x="' + "\\\\" * 50_000 + "} 1",
    ]
    started = time.perf_counter()
    batch = parse("\n".join(nasty) + "\n")
    assert time.perf_counter() - started < 2.0
    assert len(batch.rejected) == len(nasty)


def test_many_bad_lines_are_summed_up() -> None:
    batch = parse("!\n" * 500)
    assert len(batch.rejected) == 101
    assert batch.rejected_count == 500


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048), st.sampled_from([TEXT, OPENMETRICS]))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes, content_type: str) -> None:
    with contextlib.suppress(DecodeError):
        parse(data, content_type)


exposition_text = st.lists(
    st.one_of(
        st.text(max_size=60),
        st.sampled_from(["# TYPE a counter", "# EOF", 'a{x="1"} 1', "a_created 1", "# HELP"]),
        st.from_regex(
            r'[a-z_]{1,5}(\{([a-z]{1,3}="[^"\\\n]{0,5}",?){0,3}\})? -?[0-9.e+NaInf]{1,6}'
            r"( -?[0-9.]{1,12})?( # .*)?",
            fullmatch=True,
        ),
    ),
    max_size=30,
).map("\n".join)


@settings(max_examples=200, deadline=None)
@given(exposition_text, st.sampled_from([TEXT, OPENMETRICS]), st.booleans())
def test_arbitrary_text_only_raises_decode_error(text: str, content_type: str, honor: bool) -> None:
    try:
        batch = parse(text, content_type, target_labels={"job": "j"}, honor_labels=honor)
    except DecodeError:
        return
    assert all(len(s.values) == 1 for s in batch.series)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=40),
    st.floats(allow_nan=False),
)
def test_escaped_label_values_round_trip(value: str, number: float) -> None:
    (s,) = parse(f'metric{{v="{escape(value)}"}} {number!r}\n').series
    assert dict(s.labels)["v"] == value
    assert s.values == [number]
