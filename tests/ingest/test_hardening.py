"""Regressions for what the fuzz tests and the hostile corpus found, one test each."""

from __future__ import annotations

import gzip
import json
import time

import pytest
from django.urls import reverse

from ingest.jsonlines import decode_json_lines
from ingest.otlp import decode_otlp_logs, decode_otlp_metrics
from ingest.receivers import Refused, _inflate
from ingest.remote_write import encode_remote_write
from ingest.syslog import parse_syslog
from ingest.truth import decode_truth
from ingest.types import DecodeError, SeriesSamples
from tests.conftest import bearer
from webapp.telemetry.models import LogRecord, Node, Series

NOW_MS = int(time.time() * 1000)


# --- Content-Encoding ----------------------------------------------------------------------
def test_truncated_gzip_is_refused_not_half_stored():
    packed = gzip.compress(b'{"message": "a"}\n{"message": "b"}\n' * 100)
    with pytest.raises(Refused, match="truncated gzip") as refused:
        _inflate(packed[: len(packed) // 2], "gzip", 1 << 20)
    assert refused.value.status == 400


def test_every_gzip_member_is_read():
    body = gzip.compress(b'{"message": "a"}\n') + gzip.compress(b'{"message": "b"}\n')
    assert _inflate(body, "gzip", 1 << 20) == b'{"message": "a"}\n{"message": "b"}\n'
    assert _inflate(gzip.compress(b"x") + b"\0" * 8, "gzip", 10) == b"x"  # zero padding


def test_bytes_after_the_gzip_data_are_refused():
    with pytest.raises(Refused, match="not valid gzip"):
        _inflate(gzip.compress(b"x") + b"junk", "gzip", 10)


def test_multi_member_bomb_is_still_bounded():
    member = gzip.compress(b"\0" * 1000)
    with pytest.raises(Refused, match="exceeds the limit of 5000") as refused:
        _inflate(member * 10, "gzip", 5000)
    assert refused.value.status == 413


def test_gzip_members_through_the_receiver(client, db, ingest_token):
    body = gzip.compress(b'{"message": "one"}\n') + gzip.compress(b'{"message": "two"}\n')
    response = client.post(
        reverse("jsonl_logs"),
        body,
        content_type="application/x-ndjson",
        HTTP_CONTENT_ENCODING="gzip",
        **bearer(ingest_token),
    )
    assert response.status_code == 200 and response.json()["accepted"] == 2
    assert sorted(LogRecord.objects.values_list("message", flat=True)) == ["one", "two"]


# --- names the store cannot hold -----------------------------------------------------------
def test_series_naming_an_unstorable_node_is_refused_by_name(client, store, ingest_token):
    body = encode_remote_write(
        [
            SeriesSamples((("__name__", "up"), ("node", "n" * 300)), [NOW_MS - 1000], [1.0]),
            SeriesSamples((("__name__", "up"), ("node", "fine")), [NOW_MS - 1000], [1.0]),
        ]
    )
    response = client.post(
        reverse("remote_write"),
        body,
        content_type="application/x-protobuf",
        HTTP_CONTENT_ENCODING="snappy",
        **bearer(ingest_token),
    )
    assert response.status_code == 400, response.content
    problem = response.json()["rejected"][0]
    assert "at most 200 characters" in problem["reason"] and problem["count"] == 1
    assert list(Node.objects.values_list("name", flat=True)) == ["fine"]
    assert Series.objects.count() == 1


def test_log_lines_with_unstorable_node_names(client, db, ingest_token):
    lines = [
        {"message": "long", "node": "n" * 300},
        {"message": "nul", "node": "a\u0000b", "instance": "i\u0000"},
        {"message": "fine", "node": "ok"},
    ]
    response = client.post(
        reverse("jsonl_logs"),
        b"\n".join(json.dumps(line).encode() for line in lines),
        content_type="application/x-ndjson",
        **bearer(ingest_token),
    )
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["accepted"] == 2
    assert "node and instance names hold at most 200" in answer["rejected"][0]["reason"]
    assert sorted(Node.objects.values_list("name", flat=True)) == ["a\ufffdb", "ok"]


def test_syslog_hostname_longer_than_a_node_name_stays_as_text():
    entry = parse_syslog(
        b"<13>1 2024-01-01T00:00:00Z " + b"h" * 250 + b" app - - - msg",
        received_ns=0,
        peer="10.1.1.1",
    )
    assert entry.node == "10.1.1.1" and entry.attributes["syslog.hostname"] == "h" * 250
    assert entry.message == "msg"


# --- decoders ------------------------------------------------------------------------------
def _best_of_two(data: bytes) -> float:
    times = []
    for _ in range(2):
        started = time.process_time()
        parse_syslog(data, received_ns=0)
        times.append(time.process_time() - started)
    return min(times)


def test_repeated_structured_data_parses_in_linear_time():
    head = b"<13>1 2024-01-01T00:00:00Z h a p m "
    small = _best_of_two(head + b'[x a="b"]' * 25_000)
    large = _best_of_two(head + b'[x a="b"]' * 200_000)
    # 8 times the input: about 8 times the time when linear, 64 when quadratic.
    assert large / small < 24, (small, large)
    entry = parse_syslog(head + b'[x a="b"][x a="c"]', received_ns=0)
    assert entry.attributes["sd.x.a"] == "b, c"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (json.dumps({"run": "r", "nodes": [{"name": "n", "cpu_cores": 2**40}]}), "at most"),
        (json.dumps({"run": "r\u0000"}), "NUL"),
        (json.dumps({"run": "\ud800"}), "not valid Unicode"),
        (
            json.dumps(
                {
                    "run": "r",
                    "cases": [
                        {
                            "case_id": 1,
                            "kind": "anomaly",
                            "scenario": "s",
                            "node": "n",
                            "start": 0,
                            "end": 10**15,
                        }
                    ],
                }
            ),
            "end must be at most",
        ),
        (
            b'{"run": "r", "cases": [{"case_id": 1, "kind": "anomaly", "scenario": "s", '
            b'"node": "n", "start": 0, "end": 5, "intensity": 1e999}]}',
            "finite",
        ),
    ],
)
def test_truth_refuses_what_the_database_cannot_hold(body, words):
    with pytest.raises(DecodeError, match=words):
        decode_truth(body if isinstance(body, bytes) else body.encode())


def test_lone_surrogates_in_json_become_replacement_characters():
    body = b'{"message": "a\\ud800b", "\\udfffkey": "v\\udc00"}'
    entry = decode_json_lines(body, now_ns=0).entries[0]
    assert entry.message == "a\ufffdb" and entry.attributes == {"\ufffdkey": "v\ufffd"}
    otlp = (
        b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": '
        b'"x\\ud800"}, "attributes": [{"key": "k\\udfff", "value": {"stringValue": "v"}}]}]}]}]}'
    )
    record = decode_otlp_logs(otlp, content_type="application/json", now_ns=1).entries[0]
    assert record.message == "x\ufffd" and "k\ufffd" in record.attributes
    # A key the protobuf runtime looks up: it used to fail with SystemError, a 500; now an
    # unknown (replaced) key, which OTLP/JSON ignores.
    batch = decode_otlp_metrics(b'{"\\ud800": 1}', content_type="application/json", now_ms=1)
    assert batch.series == [] and batch.rejected == []


def test_otlp_quantile_label_longer_than_the_limit_is_refused():
    from ingest.limits import Limits

    body = json.dumps(
        {
            "resourceMetrics": [
                {
                    "scopeMetrics": [
                        {
                            "metrics": [
                                {
                                    "name": "q",
                                    "summary": {
                                        "dataPoints": [
                                            {
                                                "timeUnixNano": str(NOW_MS * 10**6),
                                                "quantileValues": [{"quantile": 1e300, "value": 1}],
                                            }
                                        ]
                                    },
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    ).encode()
    batch = decode_otlp_metrics(
        body,
        content_type="application/json",
        now_ms=NOW_MS,
        limits=Limits(max_label_value_length=64),
    )
    assert batch.series == [] and "quantile label value longer" in batch.rejected[0].reason


def test_scrape_of_an_exporter_naming_an_unstorable_node_keeps_the_rest(store):
    from ingest import scraper
    from tests.support.servers import ExpositionServer
    from webapp.telemetry.models import ScrapeTarget

    exposition = f'ok_metric 1\nbad_metric{{node="{"n" * 300}"}} 2\n'
    with ExpositionServer(exposition) as server:
        target = ScrapeTarget.objects.create(name="hostile", url=server.url)
        assert scraper.scrape_target(target) is True
    target.refresh_from_db()
    assert "at most 200 characters" in target.last_error
    assert Series.objects.filter(metric="ok_metric").exists()
    assert not Series.objects.filter(metric="bad_metric").exists()
