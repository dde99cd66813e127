"""Per-token quotas: the ingest rate limit (429 + Retry-After) and the new-series limit."""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import call_command
from django.urls import reverse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from ingest import quotas
from ingest.remote_write import encode_remote_write
from ingest.types import MetricBatch, SeriesSamples
from tests.conftest import bearer
from webapp.core.models import AuditEvent, IngestToken
from webapp.core.services import set_ingest_token_quotas
from webapp.core.tokens import AuthenticatedToken
from webapp.telemetry.models import LogRecord, Series

NOW = int(time.time() * 1000)


def series(i: int, n_samples: int = 1) -> SeriesSamples:
    return SeriesSamples(
        labels=(("__name__", "quota_test"), ("node", f"n{i}")),
        timestamps_ms=[NOW - 1000 * (n_samples - k) for k in range(n_samples)],
        values=[1.0] * n_samples,
    )


def rw(client, token, series_list, **extra):
    return client.post(
        reverse("remote_write"),
        encode_remote_write(series_list),
        content_type="application/x-protobuf",
        HTTP_CONTENT_ENCODING="snappy",
        **bearer(token),
        **extra,
    )


def jsonl(client, token, n_lines: int, tag: str = "m"):
    body = "\n".join(json.dumps({"message": f"{tag}{i}"}) for i in range(n_lines)).encode()
    return client.post(
        reverse("jsonl_logs"), body, content_type="application/x-ndjson", **bearer(token)
    )


def fake_token(**overrides) -> AuthenticatedToken:
    fields = {"id": 1, "name": "t", "scopes": frozenset(), "quota_key": f"k{time.time_ns()}"}
    return AuthenticatedToken(**(fields | overrides))


# --- rate ----------------------------------------------------------------------------------
def test_over_the_rate_answers_429_with_retry_after_and_stores_nothing(
    client, db, make_token, settings
):
    settings.TELLTALE_INGEST_RATE_LIMIT = 10
    settings.TELLTALE_INGEST_RATE_BURST = 10
    token, other = make_token(name="busy"), make_token(name="quiet")
    # Admitted whole, overdrawing the bucket by 14 s: slow test machines keep the margin.
    first = jsonl(client, token, 150, "a")
    assert first.status_code == 200 and first.json()["accepted"] == 150
    refused = jsonl(client, token, 5, "b")
    assert refused.status_code == 429, refused.content
    assert int(refused["Retry-After"]) >= 1
    answer = refused.json()
    assert answer["field"] == "rate_limit"
    assert "rate limit of 10 samples or log lines per second" in answer["error"]
    assert not LogRecord.objects.filter(message__startswith="b").exists()
    # Buckets are per token.
    assert jsonl(client, other, 5, "c").status_code == 200
    # Metrics share the token's bucket.
    assert rw(client, token, [series(1)]).status_code == 429


def test_bucket_refills_at_the_rate(settings):
    settings.TELLTALE_INGEST_RATE_LIMIT = 10
    settings.TELLTALE_INGEST_RATE_BURST = 20
    token = fake_token()
    t0 = 1_000_000_000_000_000
    quotas.check_rate(token, now_us=t0)
    quotas.charge(token, 29, now_us=t0)  # 30 items = 3 s ahead, 1 s over the burst
    with pytest.raises(quotas.RateLimited) as refused:
        quotas.check_rate(token, now_us=t0)
    assert refused.value.retry_after == 1
    with pytest.raises(quotas.RateLimited):
        quotas.check_rate(token, now_us=t0 + 900_000)
    quotas.check_rate(token, now_us=t0 + 1_000_000)  # admitted after Retry-After
    # A long idle period refills the bucket only to its burst, not beyond.
    later = t0 + 3600 * 1_000_000
    quotas.check_rate(token, now_us=later)
    quotas.charge(token, 19, now_us=later)
    quotas.check_rate(token, now_us=later)  # exactly the burst: still admitted
    with pytest.raises(quotas.RateLimited):
        quotas.check_rate(token, now_us=later)


def test_per_token_override_and_unlimited(client, db, make_token, settings):
    settings.TELLTALE_INGEST_RATE_LIMIT = 10
    settings.TELLTALE_INGEST_RATE_BURST = 10
    raw_free, raw_tight = make_token(name="free"), make_token(name="tight")
    set_ingest_token_quotas(IngestToken.objects.get(name="free"), rate_limit=0, max_new_series=None)
    set_ingest_token_quotas(
        IngestToken.objects.get(name="tight"), rate_limit=1, max_new_series=None
    )
    for _ in range(3):
        assert jsonl(client, raw_free, 50).status_code == 200
    assert jsonl(client, raw_tight, 2).status_code == 200
    refused = jsonl(client, raw_tight, 1)
    assert refused.status_code == 429 and "rate limit of 1 " in refused.json()["error"]
    assert AuditEvent.objects.filter(action="token.quotas_changed", target="tight").exists()


def test_rate_limit_off(client, db, ingest_token, settings):
    settings.TELLTALE_INGEST_RATE_LIMIT = 0
    for _ in range(3):
        assert jsonl(client, ingest_token, 100).status_code == 200


def test_quota_values_are_checked(db):
    token = IngestToken(name="x")
    with pytest.raises(ValueError, match="must not be negative"):
        set_ingest_token_quotas(token, rate_limit=-1, max_new_series=None)
    with pytest.raises(ValueError, match="whole number"):
        set_ingest_token_quotas(token, rate_limit=None, max_new_series=1.5)


def test_create_command_sets_quotas(db, capsys):
    call_command("create_ingest_token", "limited", "--rate-limit", "50", "--max-new-series", "7")
    token = IngestToken.objects.get(name="limited")
    assert (token.rate_limit, token.max_new_series) == (50, 7)


# --- new series ----------------------------------------------------------------------------
def test_new_series_limit_refuses_only_new_series(client, store, make_token, settings):
    settings.TELLTALE_INGEST_MAX_NEW_SERIES = 5
    token = make_token(name="creator")
    assert rw(client, token, [series(i) for i in range(5)]).status_code == 204
    response = rw(client, token, [series(i, n_samples=2) for i in range(8)])
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["accepted"] == 10  # the five known series, two samples each
    problem = answer["rejected"][0]
    assert problem["field"] == "timeseries" and problem["count"] == 6
    assert "limit of 5 new series per 3600 s" in problem["reason"]
    assert "TELLTALE_INGEST_MAX_NEW_SERIES" in problem["reason"]
    assert Series.objects.count() == 5
    assert store.count() == 10  # one of each two samples repeats the first request's
    # Known series keep flowing while the token is at its limit.
    assert rw(client, token, [series(0), series(4)]).status_code == 204


def test_new_series_limit_is_per_token_and_overridable(client, store, make_token, settings):
    settings.TELLTALE_INGEST_MAX_NEW_SERIES = 2
    first, second = make_token(name="first"), make_token(name="second")
    assert rw(client, first, [series(i) for i in range(3)]).status_code == 400
    assert rw(client, second, [series(i) for i in range(10, 12)]).status_code == 204
    set_ingest_token_quotas(
        IngestToken.objects.get(name="first"), rate_limit=None, max_new_series=0
    )
    assert rw(client, first, [series(i) for i in range(20, 30)]).status_code == 204
    assert Series.objects.count() == 2 + 2 + 10


def test_new_series_window_resets(db, settings):
    settings.TELLTALE_INGEST_MAX_NEW_SERIES = 3
    settings.TELLTALE_INGEST_NEW_SERIES_WINDOW_SECONDS = 60
    token = fake_token()
    batch = MetricBatch(series=[series(i) for i in range(5)])
    assert quotas.enforce_new_series_limit(token, batch, now=6000.0) == 2
    assert len(batch.series) == 3 and batch.rejected[0].count == 2
    # Nothing was stored, so the same series are still new: the window is used up...
    assert quotas.enforce_new_series_limit(token, MetricBatch([series(7)]), now=6030.0) == 1
    # ...until the next one.
    assert quotas.enforce_new_series_limit(token, MetricBatch([series(7)]), now=6060.0) == 0


def test_otlp_metrics_report_new_series_refusals_as_partial_success(
    client, store, ingest_token, settings
):
    settings.TELLTALE_INGEST_MAX_NEW_SERIES = 1
    request = ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    for name in ("a_metric", "b_metric"):
        metrics.add(name=name).gauge.data_points.add(as_double=1, time_unix_nano=time.time_ns())
    response = client.post(
        reverse("otlp_metrics"),
        request.SerializeToString(),
        content_type="application/x-protobuf",
        **bearer(ingest_token),
    )
    assert response.status_code == 200
    answer = ExportMetricsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_data_points == 1
    assert "limit of 1 new series" in answer.partial_success.error_message
    assert Series.objects.count() == 1


def test_burst_follows_the_rate(settings):
    settings.TELLTALE_INGEST_RATE_LIMIT = 100
    settings.TELLTALE_INGEST_RATE_BURST = 1000
    assert quotas.rate_limit_for(fake_token()) == quotas.RateLimit(100, 1000)
    assert quotas.rate_limit_for(fake_token(rate_limit=10)) == quotas.RateLimit(10, 100)
    assert quotas.rate_limit_for(fake_token(rate_limit=0)).unlimited
    settings.TELLTALE_INGEST_RATE_BURST = 0
    assert quotas.rate_limit_for(fake_token()) == quotas.RateLimit(100, 1000)
    settings.TELLTALE_INGEST_RATE_LIMIT = 0
    assert quotas.rate_limit_for(fake_token()).unlimited
    assert quotas.rate_limit_for(fake_token(rate_limit=5)) == quotas.RateLimit(5, 50)
