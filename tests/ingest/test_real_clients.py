"""Real clients send to a running Telltale: Debian's Prometheus (remote_write) and the
OpenTelemetry Python SDK (OTLP/HTTP metrics and logs)."""

from __future__ import annotations

import logging
import shutil
import textwrap
import time

import pytest

from tests.conftest import wait_for
from tests.support.servers import ExpositionServer, free_port, running
from webapp.telemetry import query
from webapp.telemetry.models import LogRecord, Series

pytestmark = pytest.mark.django_db(transaction=True)
PROMETHEUS = "/usr/bin/prometheus"


@pytest.mark.skipif(not shutil.which(PROMETHEUS), reason="Debian prometheus is not installed")
def test_prometheus_remote_write_arrives_and_is_queryable(
    live_server, clean_store, make_token, tmp_path, client
):
    token = make_token("metrics:write", "read", name="prometheus")
    port = free_port()
    body = '# TYPE shop_orders_total counter\nshop_orders_total{shop="eu"} 42\nshop_queue_depth 7\n'
    with ExpositionServer(body) as exporter:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            textwrap.dedent(
                f"""
                global:
                  scrape_interval: 1s
                  external_labels: {{replica: "test"}}
                scrape_configs:
                  - job_name: shop
                    static_configs: [{{targets: ["{exporter.url.split("/")[2]}"]}}]
                remote_write:
                  - url: {live_server.url}/api/v1/write
                    authorization: {{credentials: "{token}"}}
                    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
                """
            )
        )
        argv = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with running(argv, ready_port=port):
            wait_for(lambda: Series.objects.filter(metric="shop_orders_total").exists(), timeout=60)
            series = Series.objects.get(metric="shop_orders_total")
            wait_for(
                lambda: (
                    len(
                        query.get_store()
                        .read_raw([series.id], 0, int(time.time() * 1000) + 60_000)
                        .get(series.id, ([], []))[0]
                    )
                    >= 2
                ),
                timeout=30,
            )
    assert (
        series.labels["shop"] == "eu"
        and series.labels["job"] == "shop"
        and series.labels["replica"] == "test"
    )
    assert Series.objects.filter(metric="up", labels__job="shop").exists()
    response = client.get(
        "/api/v1/query",
        {"query": 'shop_orders_total{shop="eu"}'},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    (sample,) = response.json()["data"]["result"]
    assert sample["value"][1] == "42"


def test_opentelemetry_sdk_exports_metrics_and_logs(live_server, clean_store, make_token):
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    token = make_token("metrics:write", "logs:write", name="otel")
    headers = {"Authorization": f"Bearer {token}"}
    resource = Resource.create({"service.name": "checkout", "host.name": "otel-node-1"})

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{live_server.url}/v1/metrics", headers=headers),
        export_interval_millis=60_000,
    )
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meters.get_meter("test")
    meter.create_counter("checkout.orders").add(3, {"region": "eu"})
    meter.create_histogram("checkout.latency", unit="s").record(0.25)
    assert meters.force_flush(10_000)

    loggers = LoggerProvider(resource=resource)
    loggers.add_log_record_processor(
        SimpleLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{live_server.url}/v1/logs", headers=headers)
        )
    )
    logger = logging.getLogger("otel-test")
    handler = LoggingHandler(logger_provider=loggers)
    logger.addHandler(handler)
    try:
        logger.error("payment gateway timeout after %d ms", 5000)
        loggers.force_flush()
    finally:
        logger.removeHandler(handler)
        meters.shutdown()
        loggers.shutdown()

    orders = Series.objects.get(metric="checkout_orders_total")
    assert orders.labels["region"] == "eu" and orders.labels["job"] == "checkout"
    assert orders.node.name == "otel-node-1"
    assert Series.objects.filter(metric="checkout_latency_bucket").count() > 1
    assert Series.objects.filter(metric="checkout_latency_count").exists()
    record = LogRecord.objects.get(source="otlp")
    assert record.message == "payment gateway timeout after 5000 ms"
    assert record.severity == 17 and record.node.name == "otel-node-1"
