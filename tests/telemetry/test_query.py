from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from ingest.types import STALE_NAN, LogBatch, LogEntry, MetricBatch
from tests.conftest import series_samples
from webapp.telemetry import query, services, writer
from webapp.telemetry.query import QueryError
from webapp.telemetry.selectors import SelectorError, parse_selector

HOUR = 3_600_000
NOW = int(time.time() * 1000) // HOUR * HOUR


def test_selector_parsing():
    matchers = parse_selector(
        'http_requests_total{job="api", code=~"5..", path!="/health",env!~"dev|test"}'
    )
    assert [(m.name, m.op, m.value) for m in matchers] == [
        ("__name__", "=", "http_requests_total"),
        ("job", "=", "api"),
        ("code", "=~", "5.."),
        ("path", "!=", "/health"),
        ("env", "!~", "dev|test"),
    ]
    assert parse_selector(r'{__name__="up", msg="say \"hi\"\n"}')[1].value == 'say "hi"\n'


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty query"),
        ("rate(x[5m])", "only plain series selectors"),
        ('up{job="a"} + 1', "not supported"),
        ('{job=""}', "at least one non-empty matcher"),
        ('up{job="a"', "unclosed"),
        ('up{job=~"("}', "invalid regular expression"),
        ("up{job=a}", "quoted label value"),
    ],
)
def test_selector_errors_say_what_is_wrong(text, message):
    with pytest.raises(SelectorError, match=message):
        parse_selector(text)


@pytest.fixture
def fleet(store):
    series = []
    for node, rack in (("n1", "r1"), ("n2", "r1"), ("n3", "r2")):
        for core in ("0", "1"):
            points = [(NOW - HOUR + i * 15_000, float(i) + int(core)) for i in range(240)]
            series.append(
                series_samples("cpu_seconds", {"node": node, "rack": rack, "core": core}, points)
            )
    series.append(series_samples("up", {"node": "n1", "job": "node"}, [(NOW - 60_000, 1.0)]))
    writer.write_metrics(MetricBatch(series=series), source="test", client="t")
    return series


def test_select_series_with_every_matcher(fleet):
    def names(text):
        return sorted((s.labels.get("node"), s.labels.get("core")) for s in query.select(text))

    assert len(query.select("cpu_seconds")) == 6
    assert names('cpu_seconds{rack="r1", core="0"}') == [("n1", "0"), ("n2", "0")]
    assert names('cpu_seconds{node!="n1", core="1"}') == [("n2", "1"), ("n3", "1")]
    assert names('cpu_seconds{node=~"n[23]", core!~"1"}') == [("n2", "0"), ("n3", "0")]
    assert names('{__name__=~"cpu.*", node="n3"}') == [("n3", "0"), ("n3", "1")]
    assert query.select('cpu_seconds{node="nope"}') == []
    with pytest.raises(QueryError, match="more than 3 series"):
        query.select("cpu_seconds", limit=3)


def test_label_names_and_values(fleet):
    assert {"__name__", "node", "rack", "core", "job"} <= set(query.label_names())
    assert query.label_values("node") == ["n1", "n2", "n3"]
    assert query.label_values("__name__") == ["cpu_seconds", "up"]
    assert query.label_values("core", query.select('cpu_seconds{node="n1"}')) == ["0", "1"]


def test_range_query_buckets_and_aggregations(fleet):
    found = query.select('cpu_seconds{node="n1", core="0"}')
    results, how = query.range_query(found, NOW - HOUR, NOW, 15 * 60_000, "avg")
    assert how["resolution"] == "raw"
    (r,) = results
    values = np.arange(240.0).reshape(4, 60)
    assert r.values.tolist() == pytest.approx(values.mean(axis=1).tolist())
    assert r.ts_ms.tolist() == [NOW - HOUR + k * 15 * 60_000 for k in range(4)]
    maxes, _ = query.range_query(found, NOW - HOUR, NOW, 15 * 60_000, "max")
    assert maxes[0].values.tolist() == values.max(axis=1).tolist()
    with pytest.raises(QueryError, match="agg must be one of"):
        query.range_query(found, NOW - HOUR, NOW, 60_000, "median")
    with pytest.raises(QueryError, match="maximum resolution"):
        query.range_query(found, NOW - 30 * 24 * HOUR, NOW, 1000, "avg")


def test_long_ranges_read_rollups_plus_the_raw_tail_and_agree_with_raw(store):
    start = NOW - 6 * HOUR
    points = [(start + i * 15_000, float(i % 97)) for i in range(6 * 240)]
    writer.write_metrics(
        MetricBatch(series=[series_samples("load", {"node": "x"}, points)]), source="t", client="t"
    )
    found = query.select("load")
    raw_answer, how = query.range_query(found, start, NOW, 10 * 60_000, "avg")
    assert how["resolution"] == "1m"  # no rollup yet: falls back to raw for all buckets
    services.run_rollups(now_ms=NOW - 2 * HOUR)  # rollups complete four hours in
    mixed, _ = query.range_query(found, start, NOW, 10 * 60_000, "avg")
    assert mixed[0].ts_ms.tolist() == raw_answer[0].ts_ms.tolist()
    assert mixed[0].values.tolist() == pytest.approx(raw_answer[0].values.tolist())


def test_instant_vectors_follow_prometheus_lookback_and_staleness(store):
    points = [(NOW, 1.0), (NOW + 15_000, 2.0), (NOW + 30_000, STALE_NAN), (NOW + 600_000, math.nan)]
    writer.write_metrics(
        MetricBatch(series=[series_samples("g", {"node": "a"}, points)]), source="t", client="t"
    )
    found = query.select("g")
    (r,) = query.instant_vectors(found, NOW, NOW + 600_000, 15_000)
    got = dict(zip(r.ts_ms.tolist(), r.values.tolist(), strict=True))
    assert got[NOW] == 1.0 and got[NOW + 15_000] == 2.0
    assert NOW + 45_000 not in got  # after the staleness marker: no value
    assert math.isnan(got[NOW + 600_000])  # an explicit NaN sample is a value
    (far,) = query.instant_vectors(found, NOW + 20 * 60_000, NOW + 21 * 60_000, 60_000)
    assert len(far.ts_ms) == 0  # older than the 5-minute lookback


def test_log_search_filters(db):
    base = time.time_ns()
    entries = [
        LogEntry(ts_ns=base, message="kernel: EXT4 error on sda1", severity=17, node="n1"),
        LogEntry(ts_ns=base + 1, message="GET /health 200", severity=9, node="n1"),
        LogEntry(ts_ns=base + 2, message="GET /health 200", severity=9, node="n2", instance="vm-1"),
    ]
    writer.write_logs(LogBatch(entries=entries), source="t", client="t", batch_digest=b"q")
    start = datetime.fromtimestamp(base / 1e9 - 60, tz=UTC)
    end = datetime.fromtimestamp(base / 1e9 + 60, tz=UTC)
    assert len(query.search_logs(start=start, end=end)) == 3
    errors = query.search_logs(start=start, end=end, min_severity=17)
    assert [r.message for r in errors] == ["kernel: EXT4 error on sda1"]
    assert len(query.search_logs(start=start, end=end, text="health")) == 2
    n2 = query.search_logs(start=start, end=end, node_ids=[errors[0].node_id])
    assert {r.node.name for r in n2} == {"n1"}
    template = query.search_logs(start=start, end=end, text="health")[0].template_id
    assert len(query.search_logs(start=start, end=end, template_ids=[template])) == 2
    assert query.format_value(math.inf) == "+Inf" and query.format_value(2.0) == "2"


def test_range_query_without_data_returns_empty_results(store):
    writer.write_metrics(
        MetricBatch(series=[series_samples("lonely", {"node": "z"}, [(NOW - HOUR, 1.0)])]),
        source="t",
        client="t",
    )
    (r,), _ = query.range_query(query.select("lonely"), NOW, NOW + HOUR, 60_000, "avg")
    assert len(r.ts_ms) == 0 and len(r.values) == 0
    assert query.range_query([], NOW, NOW + HOUR, 60_000, "avg")[0] == []
