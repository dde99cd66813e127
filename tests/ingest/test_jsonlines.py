"""JSON-lines log ingest."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.jsonlines import decode_json_lines
from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.types import DecodeError

NOW = 1_795_921_200 * 1_000_000_000  # 2026-11-29T03:00:00Z


def decode(*lines: object, limits: Limits = DEFAULT_LIMITS) -> object:
    body = b"\n".join(
        line if isinstance(line, bytes) else json.dumps(line, ensure_ascii=False).encode()
        for line in lines
    )
    return decode_json_lines(body, now_ns=NOW, limits=limits)


def one(line: dict, **kwargs):
    batch = decode(line, **kwargs)
    assert batch.rejected == []
    (entry,) = batch.entries
    return entry


def test_full_line():
    entry = one(
        {
            "message": "backup started",
            "ts": "2026-11-29T02:59:00.5Z",
            "severity": "warning",
            "node": "node-3",
            "instance": "vm-17",
            "attributes": {"job": "nightly", "size": 12, "ok": True, "tags": ["a"]},
            "pid": 42,
        }
    )
    assert entry.message == "backup started"
    assert entry.ts_ns == NOW - 60 * 10**9 + 500_000_000
    assert (entry.severity, entry.severity_text) == (13, "warning")
    assert (entry.node, entry.instance) == ("node-3", "vm-17")
    assert entry.attributes == {
        "job": "nightly",
        "size": "12",
        "ok": "true",
        "tags": '["a"]',
        "pid": "42",
    }
    assert entry.source == "jsonl"


def test_defaults_and_alternative_keys():
    entry = one({"msg": "hi", "host": "h1", "level": "ERR"})
    assert entry.ts_ns == NOW
    assert entry.node == "h1"
    assert entry.severity == 17
    assert one({"log": "x"}).message == "x"
    # The first key in priority order is the message; the others are kept as attributes.
    both = one({"message": "m", "msg": "other"})
    assert both.message == "m" and both.attributes == {"msg": "other"}


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1_795_921_200, NOW),
        (1_795_921_200.25, NOW + 250_000_000),
        (1_795_921_200_123, NOW + 123_000_000),
        (1_795_921_200_123_456, NOW + 123_456_000),
        (NOW + 7, NOW + 7),
        ("2026-11-29T04:00:00+01:00", NOW),
        ("2026-11-29T03:00:00.000000001Z", NOW + 1),
        ("1795921200", NOW),
        (None, NOW),
    ],
)
def test_timestamps(ts, expected):
    assert one({"message": "x", "timestamp": ts}).ts_ns == expected


@pytest.mark.parametrize(
    ("severity", "number", "text"),
    [
        ("info", 9, "info"),
        ("WARN", 13, "WARN"),
        ("critical", 18, "critical"),
        ("INFO3", 11, "INFO3"),
        ("chatty", 0, "chatty"),
        (17, 17, ""),
        ("21", 21, ""),
        (99, 0, ""),
        (True, 0, ""),
    ],
)
def test_severity(severity, number, text):
    entry = one({"message": "x", "severity": severity})
    assert (entry.severity, entry.severity_text) == (number, text)


def test_bad_lines_are_rejected_and_good_ones_kept():
    batch = decode(
        {"message": "first"},
        b"not json at all",
        b"",
        b"   ",
        [1, 2],
        {"msg": 5},
        {"level": "info"},
        {"message": "bad time", "ts": "last tuesday"},
        {"message": "bad time", "ts": True},
        {"message": "last"},
    )
    assert [e.message for e in batch.entries] == ["first", "last"]
    rejected = {r.field: r.reason for r in batch.rejected}
    assert set(rejected) == {"line 2", "line 5", "line 6", "line 7", "line 8", "line 9"}
    assert "not valid JSON" in rejected["line 2"]
    assert "object" in rejected["line 5"]
    assert "'msg'" in rejected["line 6"] and "string" in rejected["line 6"]
    assert "'message'" in rejected["line 7"]
    assert "'ts'" in rejected["line 8"] and "last tuesday" in rejected["line 8"]
    assert batch.rejected_count == 6


def test_crlf_and_invalid_utf8_kept():
    batch = decode_json_lines(b'{"message": "caf\xe9"}\r\n{"message": "b"}\r\n', now_ns=NOW)
    assert [e.message for e in batch.entries] == ["caf\ufffd", "b"]


def test_line_count_limit():
    batch = decode(*({"message": str(i)} for i in range(5)), limits=Limits(max_log_lines=3))
    assert [e.message for e in batch.entries] == ["0", "1", "2"]
    (rejection,) = batch.rejected
    assert rejection.field == "line 4" and rejection.count == 2


def test_long_message_truncated_and_long_line_rejected():
    limits = Limits(max_log_line_bytes=40)
    entry = one({"message": "é" * 30}, limits=limits)
    assert entry.message == "é" * 20
    assert entry.attributes["telltale.truncated"] == "true"
    batch = decode({"message": "x" * 400}, limits=limits)
    assert batch.entries == [] and "bytes" in batch.rejected[0].reason


def test_nesting_depth_limit():
    deep: object = "leaf"
    for _ in range(5):
        deep = {"d": deep}
    batch = decode({"message": "x", "attributes": deep}, limits=Limits(max_json_depth=4))
    assert batch.entries == [] and "nested" in batch.rejected[0].reason
    assert one({"message": "x", "attributes": deep}, limits=Limits(max_json_depth=7))
    # Far deeper than Python's recursion limit: still just a rejected line.
    hostile = b'{"message": "x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert decode_json_lines(hostile, now_ns=NOW).rejected_count == 1


def test_attribute_limit_and_non_object_attributes():
    entry = one(
        {"message": "x", "attributes": {f"k{i}": i for i in range(10)}},
        limits=Limits(max_attributes=4),
    )
    assert len(entry.attributes) == 5
    assert entry.attributes["telltale.dropped_attributes"] == "6"
    assert one({"message": "x", "attributes": [1, 2]}).attributes == {"attributes": "[1,2]"}
    assert one({"message": "x", "node": None, "instance": 7}).instance == "7"


def test_body_over_decoded_limit():
    with pytest.raises(DecodeError) as info:
        decode_json_lines(b"{}" * 10, now_ns=NOW, limits=Limits(max_decoded_bytes=5))
    assert info.value.status == 413


FAST = settings(max_examples=200, deadline=None)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=15,
)
keys = st.sampled_from(
    ["message", "msg", "log", "ts", "timestamp", "severity", "level", "node", "host",
     "instance", "attributes", "other"]
)  # fmt: skip


@FAST
@given(body=st.binary(max_size=400))
def test_arbitrary_bytes(body):
    try:
        batch = decode_json_lines(body, now_ns=NOW)
    except DecodeError:
        pytest.fail("only an oversized body is a DecodeError")
    assert len(batch.entries) + batch.rejected_count == sum(
        1 for line in body.split(b"\n") if line.strip()
    )


@FAST
@given(objects=st.lists(st.dictionaries(keys, json_values, max_size=6), max_size=5))
def test_arbitrary_objects(objects):
    body = "\n".join(json.dumps(obj) for obj in objects).encode()
    batch = decode_json_lines(body, now_ns=NOW)
    assert len(batch.entries) + batch.rejected_count == len(objects)
    for entry in batch.entries:
        assert all(isinstance(v, str) for v in entry.attributes.values())
        assert 0 <= entry.ts_ns < 2**63 and 0 <= entry.severity <= 24
