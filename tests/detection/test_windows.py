"""Model windows read from the store: metrics as stated, or derived from the series that
node_exporter sends when a target does not state them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ingest import scraper
from ingest.simulator import HOST_METRIC_NAMES, VM_METRIC_NAMES
from ingest.types import MetricBatch
from tests.support.exporters import END, STEP, STEPS, gauge_series, node_exporter_series
from tests.support.servers import needs_node_exporter, node_exporter
from webapp.detection.windows import metric_windows
from webapp.telemetry import writer
from webapp.telemetry.models import Instance, Node, ScrapeTarget


def _write(series):
    writer.write_metrics(MetricBatch(series=series), source="remote_write", client="t")


def _column(matrix, names, metric):
    return matrix[:, list(names).index(metric)]


def test_a_node_exporter_node_gets_the_host_metrics_the_models_read(store):
    _write(node_exporter_series({"node": "n1"}, idle=0.7))
    node = Node.objects.get(name="n1")
    (matrix,) = metric_windows(
        "host", [node.pk], list(HOST_METRIC_NAMES), END, STEPS, STEP
    ).values()
    assert matrix.shape == (STEPS, len(HOST_METRIC_NAMES))
    np.testing.assert_allclose(
        _column(matrix, HOST_METRIC_NAMES, "host_cpu_utilization_ratio"), 0.25, rtol=1e-5
    )
    np.testing.assert_allclose(
        _column(matrix, HOST_METRIC_NAMES, "host_memory_utilization_ratio"), 0.75
    )
    np.testing.assert_allclose(_column(matrix, HOST_METRIC_NAMES, "host_load1"), 1.25)
    np.testing.assert_allclose(
        _column(matrix, HOST_METRIC_NAMES, "host_network_receive_bytes_per_second"), 2e6, rtol=1e-5
    )
    # Nothing node_exporter sends here says what the ECC counters are: still missing.
    assert np.isnan(_column(matrix, HOST_METRIC_NAMES, "host_ecc_errors_total")).all()


def test_node_exporter_inside_a_vm_gives_the_instance_its_steal(store):
    _write(node_exporter_series({"node": "n1", "vm": "vm-1"}, idle=0.5, steal=0.2))
    vm = Instance.objects.get(name="vm-1")
    (matrix,) = metric_windows("vm", [vm.pk], list(VM_METRIC_NAMES), END, STEPS, STEP).values()
    np.testing.assert_allclose(
        _column(matrix, VM_METRIC_NAMES, "vm_cpu_steal_ratio"), 0.2, rtol=1e-5
    )
    np.testing.assert_allclose(
        _column(matrix, VM_METRIC_NAMES, "vm_cpu_utilization_ratio"), 0.45, rtol=1e-5
    )
    # The VM's series are the VM's: its node has no host-level metrics from them.
    node = Node.objects.get(name="n1")
    (host,) = metric_windows("host", [node.pk], list(HOST_METRIC_NAMES), END, STEPS, STEP).values()
    assert np.isnan(host).all()


def test_a_metric_stated_under_the_models_name_is_used_as_stated(store):
    labels = {"node": "n2"}
    _write(
        [
            *node_exporter_series(labels, idle=0.7),
            gauge_series("host_cpu_utilization_ratio", labels, 0.9),
        ]
    )
    node = Node.objects.get(name="n2")
    (matrix,) = metric_windows(
        "host", [node.pk], list(HOST_METRIC_NAMES), END, STEPS, STEP
    ).values()
    np.testing.assert_allclose(
        _column(matrix, HOST_METRIC_NAMES, "host_cpu_utilization_ratio"), 0.9
    )
    np.testing.assert_allclose(
        _column(matrix, HOST_METRIC_NAMES, "host_memory_utilization_ratio"), 0.75
    )


def test_the_agents_disk_busy_name_fills_the_models(store):
    _write([gauge_series("host_disk_io_time_ratio", {"node": "n3"}, 0.4)])
    node = Node.objects.get(name="n3")
    (matrix,) = metric_windows(
        "host", [node.pk], list(HOST_METRIC_NAMES), END, STEPS, STEP
    ).values()
    np.testing.assert_allclose(
        _column(matrix, HOST_METRIC_NAMES, "host_disk_io_utilization_ratio"), 0.4
    )


@needs_node_exporter
def test_the_real_node_exporter_scraped_twice_feeds_the_models(store):
    with node_exporter("cpu", "meminfo", "loadavg", "filesystem", "netdev") as url:
        target = ScrapeTarget.objects.create(name="node", url=url)
        assert scraper.scrape_target(target) is True
        time.sleep(1.5)  # two scrapes make a rate
        assert scraper.scrape_target(target) is True
    node = Node.objects.get(name="127.0.0.1")
    end = int(time.time() * 1000) + 1_000  # the grid aligns down: keep the last scrape on it
    (matrix,) = metric_windows("host", [node.pk], list(HOST_METRIC_NAMES), end, 4, 1_000).values()
    latest = {
        name: matrix[:, i][np.isfinite(matrix[:, i])] for i, name in enumerate(HOST_METRIC_NAMES)
    }
    for name in ("host_cpu_utilization_ratio", "host_memory_utilization_ratio", "host_load1"):
        assert latest[name].size, name
    assert 0 <= latest["host_cpu_utilization_ratio"][-1] <= 1
    assert 0 < latest["host_memory_utilization_ratio"][-1] < 1


def test_opentelemetry_host_metrics_feed_the_models(live_server, clean_store, make_token):
    """OpenTelemetry's Python system-metrics instrumentation, exported over OTLP/HTTP as
    any OTel SDK or Collector sends it, gives the node the host metrics the models read."""
    pytest.importorskip("opentelemetry.instrumentation.system_metrics")
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    token = make_token("metrics:write", name="otel-host")
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(
            endpoint=f"{live_server.url}/v1/metrics", headers={"Authorization": f"Bearer {token}"}
        ),
        export_interval_millis=600_000,
    )
    resource = Resource.create({"service.name": "hostmetrics", "host.name": "otel-host-1"})
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    instrumentor = SystemMetricsInstrumentor(
        config={
            "system.cpu.time": ["idle", "user", "system", "iowait", "steal"],
            "system.memory.utilization": ["used", "free"],
            "system.disk.io": ["read", "write"],
            "system.network.io": ["receive", "transmit"],
        }
    )
    instrumentor.instrument(meter_provider=meters)
    try:
        assert meters.force_flush(10_000)
        time.sleep(1.5)  # two exports make a rate
        assert meters.force_flush(10_000)
    finally:
        instrumentor.uninstrument()
        meters.shutdown()
    node = Node.objects.get(name="otel-host-1")
    end = int(time.time() * 1000) + 1_000
    (matrix,) = metric_windows("host", [node.pk], list(HOST_METRIC_NAMES), end, 6, 1_000).values()
    latest = {
        name: matrix[:, i][np.isfinite(matrix[:, i])] for i, name in enumerate(HOST_METRIC_NAMES)
    }
    assert 0 <= latest["host_cpu_utilization_ratio"][-1] <= 1
    assert 0 <= latest["host_cpu_steal_ratio"][-1] <= 1
    assert 0 < latest["host_memory_utilization_ratio"][-1] < 1
    assert latest["host_network_receive_bytes_per_second"][-1] >= 0
    assert latest["host_disk_read_bytes_per_second"].size or not _has_disks()


def _has_disks() -> bool:
    import psutil

    return bool(psutil.disk_io_counters(perdisk=True))


def test_a_filesystem_metric_per_mountpoint_is_read_as_the_root_filesystems(store):
    """The agent sends host_filesystem_utilization_ratio for each mountpoint; the models'
    metric is the root filesystem's, not their mean."""
    _write(
        [
            gauge_series(
                "host_filesystem_utilization_ratio", {"node": "n4", "mountpoint": "/"}, 0.5
            ),
            gauge_series(
                "host_filesystem_utilization_ratio", {"node": "n4", "mountpoint": "/boot"}, 0.9
            ),
            gauge_series(
                "host_filesystem_utilization_ratio", {"node": "n5", "mountpoint": "/data"}, 0.2
            ),
            gauge_series(
                "host_filesystem_utilization_ratio", {"node": "n5", "mountpoint": "/srv"}, 0.4
            ),
        ]
    )
    ids = [Node.objects.get(name=name).pk for name in ("n4", "n5")]
    windows = metric_windows("host", ids, list(HOST_METRIC_NAMES), END, STEPS, STEP)
    used = [
        _column(windows[pk], HOST_METRIC_NAMES, "host_filesystem_utilization_ratio") for pk in ids
    ]
    np.testing.assert_allclose(used[0], 0.5)
    np.testing.assert_allclose(used[1], 0.3)  # no root filesystem: the mean, as before
