"""Prometheus remote_write decoding: round trips, validation rules and hostile input."""

from __future__ import annotations

import contextlib
import math
import struct

import pytest
from cramjam import snappy
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import remote_write
from ingest.limits import Limits
from ingest.protos import prometheus as pb
from ingest.remote_write import (
    REMOTE_WRITE_HEADERS,
    decode_remote_write,
    encode_remote_write,
    snappy_uncompressed_length,
)
from ingest.types import (
    NORMAL_NAN,
    STALE_NAN,
    DecodeError,
    MetricBatch,
    SeriesSamples,
    is_stale_marker,
)

NOW = 1_760_000_000_000


def bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def series(name: str = "up", samples: int = 3, **labels: str) -> SeriesSamples:
    return SeriesSamples(
        labels=tuple(sorted({"__name__": name, **labels}.items())),
        timestamps_ms=[NOW - 15_000 * (samples - k) for k in range(samples)],
        values=[float(k) + 0.5 for k in range(samples)],
    )


Wire = tuple[list[tuple[str, str]], list[tuple[int, float]]]


def request(*timeseries: Wire) -> bytes:
    """A WriteRequest built by hand, for payloads ``encode_remote_write`` would never make.

    Each argument is (labels as (name, value) pairs in wire order, samples as (ts, value)).
    """
    message = pb.WriteRequest()
    for labels, samples in timeseries:
        ts = message.timeseries.add()
        for name, value in labels:
            ts.labels.add(name=name, value=value)
        for timestamp, value in samples:
            ts.samples.add(timestamp=timestamp, value=value)
    return bytes(snappy.compress_raw(message.SerializeToString()))


def decode(body: bytes, **kwargs) -> MetricBatch:
    return decode_remote_write(body, now_ms=NOW, **kwargs)


GOOD = ([("__name__", "up"), ("job", "node")], [(NOW, 1.0)])
OTHER = ([("__name__", "up"), ("job", "other")], [(NOW, 1.0)])


# --- round trip -------------------------------------------------------------------------


def test_round_trip_is_exact() -> None:
    sent = [series("node_load1", 5, instance="a:9100", job="node"), series("up", 1, job="x")]
    batch = decode(encode_remote_write(sent))
    assert batch.series == sent
    assert batch.rejected == []
    assert batch.sample_count == 6


def test_round_trip_of_many_series_mixing_zero_and_other_values() -> None:
    sent = []
    for i in range(300):
        s = series("node_cpu_seconds_total", 10, cpu=str(i), mode="idle")
        s.values = [0.0 if (i + k) % 3 == 0 else float(k * i) for k in range(10)]
        sent.append(s)
    assert decode(encode_remote_write(sent)).series == sent


def test_special_values_keep_their_bits() -> None:
    values = [STALE_NAN, NORMAL_NAN, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308]
    sent = [SeriesSamples((("__name__", "x"),), [NOW - 10 + k for k in range(8)], values)]
    got = decode(encode_remote_write(sent)).series[0].values
    assert [bits(v) for v in got] == [bits(v) for v in values]
    assert is_stale_marker(got[0]) and not is_stale_marker(got[1])


def test_labels_are_sorted_and_include_the_metric_name() -> None:
    body = request(([("zone", "b"), ("__name__", "up"), ("app", "a")], [(NOW, 1.0)]))
    (s,) = decode(body).series
    assert s.labels == (("__name__", "up"), ("app", "a"), ("zone", "b"))
    assert s.metric == "up"


def test_headers_are_the_ones_prometheus_sends() -> None:
    assert REMOTE_WRITE_HEADERS["Content-Encoding"] == "snappy"
    assert REMOTE_WRITE_HEADERS["Content-Type"] == "application/x-protobuf"
    assert REMOTE_WRITE_HEADERS["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert REMOTE_WRITE_HEADERS["User-Agent"]


def test_samples_encoded_unusually_take_the_exact_path() -> None:
    # Field order reversed and an unknown field: valid protobuf a fast reader must not misread.
    sample = pb.Sample(timestamp=NOW).SerializeToString() + struct.pack("<Bd", 0x09, 2.5)
    sample += b"\x18\x07"  # field 3, varint 7: unknown to the schema
    label = pb.Label(name="__name__", value="odd").SerializeToString()
    ts = b"\x0a" + bytes([len(label)]) + label + b"\x12" + bytes([len(sample)]) + sample
    body = bytes(snappy.compress_raw(b"\x0a" + bytes([len(ts)]) + ts))
    (s,) = decode(body).series
    assert s.timestamps_ms == [NOW] and s.values == [2.5]


def test_same_labels_twice_in_one_request_are_one_series() -> None:
    labels = [("__name__", "up")]
    body = request((labels, [(NOW - 2, 1.0)]), (labels, [(NOW - 1, 2.0), (NOW - 2, 9.0)]))
    batch = decode(body)
    assert [(s.timestamps_ms, s.values) for s in batch.series] == [([NOW - 2, NOW - 1], [1, 2])]
    assert [(r.field, r.count) for r in batch.rejected] == [("timeseries[1].samples", 1)]


# --- validation rules: each is one named rejection, the rest is kept ----------------------


@pytest.mark.parametrize(
    ("labels", "field", "words"),
    [
        ([("job", "x")], "timeseries[1].labels", "missing metric name"),
        ([("__name__", ""), ("job", "x")], "timeseries[1].labels", "missing metric name"),
        ([("__name__", "1up")], "timeseries[1].labels[0].value", "invalid metric name"),
        ([("__name__", "up"), ("bad-name", "x")], "timeseries[1].labels[1].name", "invalid label"),
        ([("__name__", "up"), ("a:b", "x")], "timeseries[1].labels[1].name", "invalid label"),
        ([("__name__", "up"), ("", "x")], "timeseries[1].labels[1].name", "invalid label"),
        (
            [("__name__", "up"), ("job", "a"), ("job", "b")],
            "timeseries[1].labels[2].name",
            "duplicate label name 'job'",
        ),
        (
            [("__name__", "up"), ("job", ""), ("job", "b")],
            "timeseries[1].labels[2].name",
            "duplicate label name",
        ),
    ],
)
def test_bad_labels_reject_the_series_and_keep_the_rest(labels, field, words) -> None:
    body = request(GOOD, (labels, [(NOW, 1.0), (NOW - 1, 2.0)]), OTHER)
    batch = decode(body)
    assert [s.labels[1] for s in batch.series] == [("job", "node"), ("job", "other")]
    (rejection,) = batch.rejected
    assert rejection.field == field
    assert words in rejection.reason
    assert rejection.count == 2


def test_metric_names_may_contain_colons() -> None:
    body = request(([("__name__", "job:up:sum")], [(NOW, 1.0)]))
    assert decode(body).series[0].metric == "job:up:sum"


def test_empty_label_values_are_dropped_not_rejected() -> None:
    body = request(([("__name__", "up"), ("empty", ""), ("job", "x")], [(NOW, 1.0)]))
    batch = decode(body)
    assert batch.series[0].labels == (("__name__", "up"), ("job", "x"))
    assert batch.rejected == []


def test_label_limits() -> None:
    limits = Limits(max_labels=3, max_label_name_length=8, max_label_value_length=10)
    body = request(
        ([("__name__", "up"), ("a", "1"), ("b", "2"), ("c", "3")], [(NOW, 1.0)]),
        ([("__name__", "up"), ("very_long_name", "1")], [(NOW, 1.0)]),
        ([("__name__", "up"), ("v", "x" * 11)], [(NOW, 1.0)]),
        ([("__name__", "up"), ("v", "x" * 10), ("a", "")], [(NOW, 1.0)]),
    )
    batch = decode(body, limits=limits)
    assert [(r.field, r.count) for r in batch.rejected] == [
        ("timeseries[0].labels", 1),
        ("timeseries[1].labels[1].name", 1),
        ("timeseries[2].labels[1].value", 1),
    ]
    assert "more than the limit of 3" in batch.rejected[0].reason
    assert [s.labels for s in batch.series] == [(("__name__", "up"), ("v", "x" * 10))]


def test_samples_outside_the_time_window_are_rejected() -> None:
    limits = Limits(max_age_ms=60_000, max_future_ms=1_000)
    samples = [(NOW - 60_001, 1.0), (NOW - 60_000, 2.0), (NOW + 1_000, 3.0), (NOW + 1_001, 4.0)]
    batch = decode(request(([("__name__", "up")], samples), GOOD), limits=limits)
    assert [(s.timestamps_ms, s.values) for s in batch.series[:1]] == [
        ([NOW - 60_000, NOW + 1_000], [2.0, 3.0])
    ]
    assert batch.series[1].labels == (("__name__", "up"), ("job", "node"))
    old, new = batch.rejected
    assert (old.field, old.count) == ("timeseries[0].samples", 1) and "older" in old.reason
    assert (new.field, new.count) == ("timeseries[0].samples", 1) and "future" in new.reason


def test_duplicate_timestamps_keep_the_first() -> None:
    samples = [(NOW - 3, 1.0), (NOW - 2, 2.0), (NOW - 3, 3.0), (NOW - 2, 4.0), (NOW - 4, 5.0)]
    batch = decode(request(([("__name__", "up")], samples)))
    (s,) = batch.series
    assert (s.timestamps_ms, s.values) == ([NOW - 3, NOW - 2, NOW - 4], [1.0, 2.0, 5.0])
    (rejection,) = batch.rejected
    assert rejection.field == "timeseries[0].samples"
    assert rejection.count == 2 and "first was kept" in rejection.reason


def test_native_histograms_are_rejected_by_name() -> None:
    message = pb.WriteRequest()
    ts = message.timeseries.add()
    ts.labels.add(name="__name__", value="latency")
    ts.histograms.add(count_int=3, sum=1.5, schema=3, timestamp=NOW)
    ts.histograms.add(count_int=4, sum=2.5, schema=3, timestamp=NOW + 1)
    mixed = message.timeseries.add()
    mixed.labels.add(name="__name__", value="up")
    mixed.samples.add(value=1.0, timestamp=NOW)
    mixed.histograms.add(count_int=1, timestamp=NOW)
    batch = decode(bytes(snappy.compress_raw(message.SerializeToString())))
    assert [(r.field, r.count) for r in batch.rejected] == [
        ("timeseries[0].histograms", 2),
        ("timeseries[1].histograms", 1),
    ]
    assert "native histograms" in batch.rejected[0].reason
    assert [s.metric for s in batch.series] == ["up"]


def test_label_cache_is_bounded_and_stays_correct(monkeypatch) -> None:
    monkeypatch.setattr(remote_write, "LABEL_CACHE_BYTES", 3_000)  # a few entries at a time
    limits = Limits(max_labels=63)  # a validator of its own, not shared with other tests
    sent = [series("m", 2, k=str(k)) for k in range(40)]
    body = encode_remote_write(sent)
    for _ in range(3):
        assert decode(body, limits=limits).series == sent
    bad = request(([("__name__", "m"), ("k", "1"), ("k", "2")], [(NOW, 1.0)]))
    for _ in range(2):
        assert decode(bad, limits=limits).rejected[0].field == "timeseries[0].labels[2].name"


def test_exemplars_and_metadata_are_ignored_without_complaint() -> None:
    message = pb.WriteRequest()
    ts = message.timeseries.add()
    ts.labels.add(name="__name__", value="rpc_seconds_bucket")
    ts.samples.add(value=3.0, timestamp=NOW)
    ts.exemplars.add(value=0.2, timestamp=NOW).labels.add(name="trace_id", value="abc")
    message.metadata.add(type=1, metric_family_name="rpc_seconds", help="RPC latency.")
    batch = decode(bytes(snappy.compress_raw(message.SerializeToString())))
    assert batch.rejected == []
    assert [(s.metric, s.values) for s in batch.series] == [("rpc_seconds_bucket", [3.0])]


def test_invalid_utf8_in_a_label_rejects_only_that_series() -> None:
    label = b"\x0a\x08__name__\x12\x02\xff\xfe"
    ts = b"\x0a" + bytes([len(label)]) + label + b"\x12\x02\x10\x01"
    good = pb.WriteRequest(
        timeseries=[pb.TimeSeries(labels=[pb.Label(name="__name__", value="up")])]
    )
    good.timeseries[0].samples.add(value=1.0, timestamp=NOW)
    raw = b"\x0a" + bytes([len(ts)]) + ts + good.SerializeToString()
    batch = decode(bytes(snappy.compress_raw(raw)))
    assert [r.field for r in batch.rejected] == ["timeseries[0].labels[0]"]
    assert "UTF-8" in batch.rejected[0].reason
    assert [s.metric for s in batch.series] == ["up"]


def test_many_problems_are_summed_up_after_a_hundred() -> None:
    body = request(*[([("job", "x")], [(NOW, 1.0)])] * 150)
    batch = decode(body)
    assert len(batch.rejected) == 101
    assert batch.rejected_count == 150
    assert "50 further problems" in batch.rejected[-1].reason


# --- whole-payload failures ---------------------------------------------------------------


def test_snappy_length_bomb_is_refused_before_decompressing(monkeypatch) -> None:
    def must_not_run(*args, **kwargs):
        raise AssertionError("decompressed a payload that claims too much")

    monkeypatch.setattr(snappy, "decompress_raw", must_not_run)
    bomb = b"\xff\xff\xff\xff\x0f" + b"\x00" * 10  # claims 4 GiB
    with pytest.raises(DecodeError) as info:
        decode(bomb)
    assert info.value.status == 413
    assert "decompresses to 4294967295 bytes" in str(info.value)
    with pytest.raises(DecodeError) as info:
        decode(encode_remote_write([series()]), limits=Limits(max_decoded_bytes=10))
    assert info.value.status == 413


def test_snappy_preamble() -> None:
    assert snappy_uncompressed_length(bytes(snappy.compress_raw(b"x" * 300))) == 300
    for bad in (b"", b"\x80", b"\xff\xff\xff\xff\xff\x01", b"\xff\xff\xff\xff\x7f"):
        with pytest.raises(DecodeError):
            snappy_uncompressed_length(bad)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "snappy"),
        (b"\x05not snappy at all", "snappy"),
        (bytes(snappy.compress_raw(b"\x0a\x05\x0a")), "protobuf WriteRequest"),
        (bytes(snappy.compress_raw(b"\xff\xff\xff")), "protobuf WriteRequest"),
    ],
)
def test_unusable_bodies_raise_decode_error(body: bytes, words: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(body)
    assert words in str(info.value)


def test_corrupt_nested_sample_names_the_field() -> None:
    label = pb.Label(name="__name__", value="up").SerializeToString()
    ts = b"\x0a" + bytes([len(label)]) + label + b"\x12\x03\x09\x01\x02"  # truncated double
    with pytest.raises(DecodeError) as info:
        decode(bytes(snappy.compress_raw(b"\x0a" + bytes([len(ts)]) + ts)))
    assert info.value.field == "timeseries[0].samples[0]"


def test_series_and_sample_limits() -> None:
    body = encode_remote_write([series(job=str(k)) for k in range(5)])
    with pytest.raises(DecodeError, match="series") as info:
        decode(body, limits=Limits(max_series=4))
    assert info.value.status == 413
    with pytest.raises(DecodeError, match="samples"):
        decode(body, limits=Limits(max_samples=14))
    assert decode(body, limits=Limits(max_series=5, max_samples=15)).sample_count == 15
    with pytest.raises(DecodeError, match="bytes"):
        decode(body, limits=Limits(max_body_bytes=len(body) - 1))


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    for body in (data, bytes(snappy.compress_raw(data))):
        try:
            batch = decode(body)
        except DecodeError:
            continue
        assert batch.sample_count >= 0


_VALID_RAW = pb.WriteRequest.FromString(
    bytes(snappy.decompress_raw(encode_remote_write([series("a", 3, job="x"), series("b", 2)])))
).SerializeToString()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(_VALID_RAW) - 1), st.binary(min_size=1, max_size=4), st.booleans())
def test_damaged_valid_requests_only_raise_decode_error(at: int, junk: bytes, insert: bool) -> None:
    """Damage deep inside a real request reaches the label and sample readers."""
    end = at if insert else at + len(junk)
    raw = _VALID_RAW[:at] + junk + _VALID_RAW[end:]
    with contextlib.suppress(DecodeError):
        decode(bytes(snappy.compress_raw(raw)))


label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,15}", fullmatch=True).filter(
    lambda name: name != "__name__"
)
sample_lists = st.lists(
    st.tuples(
        st.integers(NOW - 7 * 24 * 3600 * 1000, NOW + 600_000),
        st.floats(allow_nan=True, allow_infinity=True)
        | st.sampled_from([STALE_NAN, NORMAL_NAN, 0.0, -0.0]),
    ),
    min_size=1,
    max_size=20,
    unique_by=lambda sample: sample[0],
)


@st.composite
def series_lists(draw) -> list[SeriesSamples]:
    out, seen = [], set()
    for _ in range(draw(st.integers(1, 8))):
        name = draw(st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True))
        labels = draw(st.dictionaries(label_names, st.text(min_size=1, max_size=12), max_size=6))
        key = tuple(sorted({"__name__": name, **labels}.items()))
        if key in seen:
            continue
        seen.add(key)
        samples = draw(sample_lists)
        out.append(SeriesSamples(key, [t for t, _ in samples], [v for _, v in samples]))
    return out


@settings(max_examples=200, deadline=None)
@given(series_lists())
def test_valid_series_round_trip(sent: list[SeriesSamples]) -> None:
    batch = decode(encode_remote_write(sent))
    assert batch.rejected == []
    assert [(s.labels, s.timestamps_ms) for s in batch.series] == [
        (s.labels, s.timestamps_ms) for s in sent
    ]
    assert [[bits(v) for v in s.values] for s in batch.series] == [
        [bits(v) for v in s.values] for s in sent
    ]
