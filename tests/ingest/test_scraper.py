"""The scraper against a loopback exposition endpoint and Debian's node_exporter."""

from __future__ import annotations

import time
from datetime import timedelta

from django.utils import timezone

from ingest import scraper
from ingest.types import is_stale_marker
from tests.conftest import wait_for
from tests.support.servers import (
    ExpositionServer,
    free_port,
    needs_node_exporter,
    node_exporter,
)
from webapp.telemetry import query, services
from webapp.telemetry.models import ScrapeTarget, Series
from workers import tasks

EXPOSITION = """# HELP jobs_total Jobs processed.
# TYPE jobs_total counter
jobs_total{queue="a"} 10
jobs_total{queue="b"} 20
# TYPE temperature_celsius gauge
temperature_celsius 41.5
"""


def _target(url, **kw):
    return ScrapeTarget.objects.create(
        name=kw.pop("name", "app"), url=url, labels={"cluster": "eu1"}, **kw
    )


def _latest(metric, **labels):
    matchers = ",".join(f'{k}="{v}"' for k, v in labels.items())
    (series,) = query.select(f"{metric}{{{matchers}}}")
    now = int(time.time() * 1000)
    data = query.get_store().read_raw([series.id], now - 600_000, now + 60_000, keep_stale=True)
    return data[series.id][1]


def test_scrape_stores_samples_with_target_labels_and_up(store):
    with ExpositionServer(EXPOSITION) as server:
        target = _target(server.url)
        assert scraper.scrape_target(target) is True
    target.refresh_from_db()
    assert target.health == "up" and target.last_samples == 3 and target.last_error == ""
    series = Series.objects.get(metric="jobs_total", labels__queue="b")
    assert series.labels["job"] == "app" and series.labels["cluster"] == "eu1"
    assert series.labels["instance"] == server.url.split("/")[2]
    assert series.node.name == "127.0.0.1"
    assert _latest("up", job="app").tolist() == [1.0]
    assert _latest("scrape_samples_scraped", job="app").tolist() == [3.0]


def test_down_target_writes_up_zero_and_staleness_markers(store):
    with ExpositionServer(EXPOSITION) as server:
        target = _target(server.url)
        scraper.scrape_target(target)
        server.status = 500
        time.sleep(0.01)
        assert scraper.scrape_target(target) is False
    target.refresh_from_db()
    assert target.health == "down" and "HTTP status 500" in target.last_error
    assert _latest("up", job="app").tolist() == [1.0, 0.0]
    values = _latest("temperature_celsius", job="app")
    assert values[0] == 41.5 and is_stale_marker(float(values[-1]))


def test_vanished_series_get_a_staleness_marker(store):
    with ExpositionServer(EXPOSITION) as server:
        target = _target(server.url)
        scraper.scrape_target(target)
        server.body = EXPOSITION.replace('jobs_total{queue="b"} 20\n', "")
        time.sleep(0.01)
        scraper.scrape_target(target)
    assert is_stale_marker(float(_latest("jobs_total", queue="b")[-1]))
    assert _latest("jobs_total", queue="a").tolist() == [10.0, 10.0]


def test_unreachable_target(store):
    target = _target(f"http://127.0.0.1:{free_port()}/metrics", timeout_seconds=1)
    assert scraper.scrape_target(target) is False
    target.refresh_from_db()
    assert "Connection refused" in target.last_error or "URLError" in target.last_error


def test_due_targets_are_claimed_once_per_interval(db):
    a = _target("http://127.0.0.1:1/metrics", interval_seconds=30)
    _target("http://127.0.0.1:2/metrics", name="off", enabled=False)
    now = timezone.now()
    assert services.claim_due_targets(now) == [a.pk]
    assert services.claim_due_targets(now + timedelta(seconds=5)) == []
    assert services.claim_due_targets(now + timedelta(seconds=31)) == [a.pk]


def test_beat_task_scrapes_due_targets(clean_store, task_worker):
    with ExpositionServer(EXPOSITION) as server:
        target = _target(server.url)
        assert tasks.scrape_due.delay() is not None
        wait_for(lambda: ScrapeTarget.objects.get(pk=target.pk).health == "up", timeout=30)
    assert Series.objects.filter(metric="jobs_total").count() == 2


@needs_node_exporter
def test_scrapes_the_real_node_exporter(store):
    with node_exporter("cpu", "meminfo", "loadavg", "filesystem") as url:
        target = _target(url, name="node")
        assert scraper.scrape_target(target) is True, ScrapeTarget.objects.get(
            pk=target.pk
        ).last_error
    target.refresh_from_db()
    assert target.last_samples > 50
    assert Series.objects.filter(metric="node_memory_MemTotal_bytes").exists()
    assert Series.objects.filter(metric="node_cpu_seconds_total", labels__mode="idle").exists()
    assert _latest("node_load1", job="node")[0] >= 0
