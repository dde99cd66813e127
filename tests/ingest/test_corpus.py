"""The saved hostile-input corpus (tests/ingest/corpus/, rebuilt by its build.py) against
every decoder and every HTTP receiver.

Decoders must return data or raise DecodeError, within seconds and bounded memory, for
every file. Receivers, fed every file with a valid token, answer 2xx for the valid ones on
their own endpoint, 4xx for the rest, never 5xx, and keep serving afterwards.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time

import pytest
from django.urls import reverse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from ingest.exposition import parse_exposition
from ingest.jsonlines import decode_json_lines
from ingest.limits import Limits
from ingest.otlp import decode_otlp_logs, decode_otlp_metrics
from ingest.receivers import Refused, _inflate
from ingest.remote_write import decode_remote_write
from ingest.syslog import SyslogStreamFramer, parse_syslog
from ingest.truth import decode_truth
from ingest.types import DecodeError, LogBatch, MetricBatch
from tests.conftest import bearer
from tests.ingest import fuzzcount
from tests.ingest.corpus.build import T0_MS, load, manifest

CASES = manifest()
DECODED_LIMIT = 8 << 20  # the corpus' bombs are built to exceed this
LIMITS = Limits(max_decoded_bytes=DECODED_LIMIT, max_age_ms=10 * 365 * 86400 * 1000)
NOW_MS = T0_MS + 60_000
# CPU seconds, not wall time, so that a busy machine does not fail the test: the largest
# cases (150 000 OTLP points, a megabyte of syslog frames) take about 3 s.
SECONDS_PER_CASE = 10.0
RSS_GROWTH_LIMIT = 1 << 30

_DECODERS = {
    "remote_write": lambda b: decode_remote_write(b, now_ms=NOW_MS, limits=LIMITS),
    "otlp_metrics_pb": lambda b: decode_otlp_metrics(
        b, content_type="application/x-protobuf", now_ms=NOW_MS, limits=LIMITS
    ),
    "otlp_metrics_json": lambda b: decode_otlp_metrics(
        b, content_type="application/json", now_ms=NOW_MS, limits=LIMITS
    ),
    "otlp_logs_pb": lambda b: decode_otlp_logs(
        b, content_type="application/x-protobuf", now_ns=NOW_MS * 10**6, limits=LIMITS
    ),
    "otlp_logs_json": lambda b: decode_otlp_logs(
        b, content_type="application/json", now_ns=NOW_MS * 10**6, limits=LIMITS
    ),
    "jsonl": lambda b: decode_json_lines(b, now_ns=NOW_MS * 10**6, limits=LIMITS),
    "exposition": lambda b: parse_exposition(
        b, content_type="text/plain", scrape_ts_ms=NOW_MS, limits=LIMITS
    ),
    "openmetrics": lambda b: parse_exposition(
        b, content_type="application/openmetrics-text", scrape_ts_ms=NOW_MS, limits=LIMITS
    ),
    "syslog": lambda b: _syslog(b),
    "truth": decode_truth,
}


def _syslog(data: bytes) -> list:
    """As the listener does: frame the stream, parse each frame; and the start as a datagram.

    Only the first MiB of a stream: binary files split into hundreds of thousands of tiny
    "messages", which costs time in proportion (as it would on the wire), not more."""
    data = data[: 1 << 20]
    framer = SyslogStreamFramer(max_frame=64 * 1024)
    frames = []
    for start in range(0, len(data), 4096):
        frames += framer.feed(data[start : start + 4096])
    frames += framer.flush()
    assert all(len(f) <= 64 * 1024 for f in frames)
    out = []
    for frame in [*frames, data[:65_535]]:
        with contextlib.suppress(DecodeError):
            out.append(parse_syslog(frame, received_ns=NOW_MS * 10**6, peer="10.0.0.1"))
    return out


def _rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def _payload(entry: dict) -> bytes | None:
    """The bytes a decoder sees: the receiver's gzip step applied (bombs stop there)."""
    data = load(entry)
    if entry["encoding"] != "gzip":
        return data
    try:
        return _inflate(data, "gzip", DECODED_LIMIT)
    except Refused as exc:
        assert 400 <= exc.status < 500
        return None


@pytest.mark.parametrize("entry", CASES, ids=[c["file"] for c in CASES])
def test_every_decoder_survives_every_corpus_file(entry):
    payload = _payload(entry)
    if payload is None:
        return
    rss_before = _rss_bytes()
    for kind, decode in _DECODERS.items():
        started = time.process_time()
        try:
            result = decode(payload)
        except DecodeError as exc:
            assert 400 <= exc.status < 500 and str(exc)
            result = None
        took = time.process_time() - started
        fuzzcount.add("corpus decoder runs")
        assert took < SECONDS_PER_CASE, f"{kind} took {took:.1f} s on {entry['file']}"
        if kind == entry["kind"] and entry["valid"]:
            assert result is not None, f"valid case {entry['file']} refused by {kind}"
        _check_bounded(result)
    assert _rss_bytes() - rss_before < RSS_GROWTH_LIMIT


def _check_bounded(result) -> None:
    """What a decoder returns respects the limits it was given."""
    if isinstance(result, MetricBatch):
        assert len(result.series) <= LIMITS.max_series
        for s in result.series[:1000]:
            assert len(s.labels) <= LIMITS.max_labels
            for name, value in s.labels:
                assert len(name) <= LIMITS.max_label_name_length
                assert len(value) <= LIMITS.max_label_value_length
        assert len(result.rejected) <= 200
    elif isinstance(result, LogBatch):
        assert len(result.entries) <= LIMITS.max_log_lines
        for e in result.entries[:1000]:
            assert len(e.message.encode("utf-8", "surrogatepass")) <= LIMITS.max_log_line_bytes


# --- HTTP ----------------------------------------------------------------------------------
ENDPOINTS = {  # name -> (url name, Content-Type)
    "remote_write": ("remote_write", "application/x-protobuf"),
    "otlp_metrics_pb": ("otlp_metrics", "application/x-protobuf"),
    "otlp_metrics_json": ("otlp_metrics", "application/json"),
    "otlp_logs_pb": ("otlp_logs", "application/x-protobuf"),
    "otlp_logs_json": ("otlp_logs", "application/json"),
    "jsonl": ("jsonl_logs", "application/x-ndjson"),
    "truth": ("simulator_truth", "application/json"),
}


def _post(client, token: str, endpoint: str, entry: dict):
    url_name, content_type = ENDPOINTS[endpoint]
    encoding = entry["encoding"]
    if endpoint == "remote_write" and not encoding:
        encoding = "snappy"
    headers = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    return client.post(
        reverse(url_name), load(entry), content_type=content_type, **bearer(token), **headers
    )


@pytest.fixture
def corpus_settings(settings):
    settings.TELLTALE_INGEST_MAX_DECODED_BYTES = DECODED_LIMIT
    settings.TELLTALE_INGEST_MAX_AGE_SECONDS = 10 * 365 * 86400  # the corpus' fixed times
    settings.TELLTALE_INGEST_MAX_LOG_LINES_PER_REQUEST = 2000  # keeps the log writes short
    settings.TELLTALE_INGEST_RATE_LIMIT = 0
    # Registering 100 000 new series takes SQLite most of a minute: the quota keeps it short.
    settings.TELLTALE_INGEST_MAX_NEW_SERIES = 5000
    return settings


def test_http_receivers_answer_the_whole_corpus_without_5xx(
    client, store, make_token, corpus_settings
):
    token = make_token("metrics:write", "logs:write", name="corpus")
    rss_before = _rss_bytes()
    statuses: dict[str, list[int]] = {}
    failures = []
    for entry in CASES:
        for endpoint in ENDPOINTS:
            response = _post(client, token, endpoint, entry)
            fuzzcount.add("corpus HTTP requests")
            code = response.status_code
            statuses.setdefault(entry["file"], []).append(code)
            native = endpoint == entry["kind"]
            if code >= 500:
                failures.append(f"{entry['file']} -> {endpoint}: {code} {response.content[:200]}")
            elif native and entry["valid"] and not 200 <= code < 300:
                failures.append(f"valid {entry['file']} -> {endpoint}: {code} {response.content}")
            elif not 200 <= code < 500:
                failures.append(f"{entry['file']} -> {endpoint}: unexpected {code}")
            elif native and not entry["valid"] and code < 300 and not _flags_a_problem(response):
                failures.append(f"invalid {entry['file']} -> {endpoint}: {code} and no warning")
            if 400 <= code < 500 and code != 429:
                assert response.json()["error"], (entry["file"], endpoint)
    assert not failures, "\n".join(failures)
    # Still serving, and the valid corpus request is stored.
    response = _post(client, token, "remote_write", _entry("rw_valid.bin"))
    assert response.status_code == 204
    assert _rss_bytes() - rss_before < RSS_GROWTH_LIMIT
    refused = sum(1 for codes in statuses.values() for c in codes if 400 <= c < 500)
    fuzzcount.add("corpus HTTP 4xx answers", refused)


def _flags_a_problem(response) -> bool:
    """A 2xx may still refuse parts: OTLP partial success, or lines cut to size."""
    content_type = response.get("Content-Type", "")
    if content_type.startswith("application/x-protobuf"):
        answer = ExportLogsServiceResponse.FromString(response.content)
        return bool(answer.partial_success.error_message)
    body = response.json()
    if "partialSuccess" in body:
        return bool(body["partialSuccess"].get("errorMessage"))
    return bool(body.get("rejected") or body.get("truncated"))


def _entry(name: str) -> dict:
    return next(c for c in CASES if c["file"] == name)


def test_corpus_is_current():
    """build.py and the committed files agree (a case added to one is in the other)."""
    from tests.ingest.corpus import build

    assert len(CASES) >= 80
    for entry in CASES:
        assert (build.HERE / entry["file"]).is_file(), entry["file"]
    kinds = {c["kind"] for c in CASES}
    assert {"remote_write", "jsonl", "syslog", "exposition", "truth"} <= kinds
