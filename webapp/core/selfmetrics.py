"""Telltale's own figures in Prometheus exposition format, served at /metrics.

With PROMETHEUS_MULTIPROC_DIR set (docker compose and ``make demo`` set it), web
workers, Celery workers and listeners write to shared files and /metrics sums them.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

HTTP_REQUESTS = Counter(
    "telltale_http_requests_total", "HTTP requests answered", ["method", "view", "status"]
)
HTTP_DURATION = Histogram(
    "telltale_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INGEST_SAMPLES = Counter("telltale_ingest_samples_total", "Samples stored", ["source"])
INGEST_REJECTED = Counter(
    "telltale_ingest_rejected_total", "Samples or log lines refused", ["source", "kind"]
)
INGEST_LOG_LINES = Counter("telltale_ingest_log_lines_total", "Log lines stored", ["source"])
INGEST_REQUESTS = Counter(
    "telltale_ingest_requests_total", "Ingest requests by outcome", ["source", "status"]
)
TASK_DURATION = Histogram(
    "telltale_task_duration_seconds",
    "Celery task run time",
    ["task", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)


def observe_request(method: str, view: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, view, str(status)).inc()
    HTTP_DURATION.labels(view).observe(seconds)


class QueueDepthCollector:
    """Reads the broker's queue length at scrape time (no state kept in the process)."""

    def collect(self):
        from webapp.core.health import queue_depth

        family = GaugeMetricFamily(
            "telltale_queue_depth", "Tasks waiting in the broker queue", labels=["queue"]
        )
        depth = queue_depth()
        if depth is not None:
            family.add_metric(["celery"], depth)
        yield family


def render() -> tuple[bytes, str]:
    registry = CollectorRegistry()
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir and Path(multiproc_dir).is_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    output = generate_latest(registry)
    output += generate_latest(_queue_registry())
    return output, CONTENT_TYPE_LATEST


def _queue_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QueueDepthCollector())
    return registry
