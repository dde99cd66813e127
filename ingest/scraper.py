"""Pull Prometheus text / OpenMetrics from configured targets, as Prometheus does.

Each scrape writes the target's samples plus ``up``, ``scrape_duration_seconds`` and
``scrape_samples_scraped``; series that vanish from a target (or all of them when the
target is down) get Prometheus' staleness marker so charts and queries end them.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request

import numpy as np
from django.utils import timezone

from ingest import admission
from ingest.exposition import parse_exposition
from ingest.types import STALE_NAN, MetricBatch, SeriesSamples
from webapp.telemetry import services, writer
from webapp.telemetry.models import ScrapeTarget

log = logging.getLogger(__name__)

ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
MAX_SCRAPE_BYTES = 32 * 1024 * 1024
USER_AGENT = "Telltale-scraper/1.0"


class ScrapeFailed(Exception):
    pass


def fetch(url: str, timeout: float) -> tuple[bytes, str]:
    if not url.startswith(("http://", "https://")):
        raise ScrapeFailed(f"only http and https targets can be scraped, not {url!r}")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        headers={
            "Accept": ACCEPT,
            "User-Agent": USER_AGENT,
            "X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_SCRAPE_BYTES + 1)
            content_type = response.headers.get("Content-Type", "text/plain")
    except urllib.error.HTTPError as exc:
        raise ScrapeFailed(f"server returned HTTP status {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScrapeFailed(f"{type(exc).__name__}: {reason}") from None
    if len(body) > MAX_SCRAPE_BYTES:
        raise ScrapeFailed(f"body exceeds {MAX_SCRAPE_BYTES} bytes")
    return body, content_type


def _synthetic(name: str, target_labels: dict[str, str], ts_ms: int, value: float) -> SeriesSamples:
    labels = tuple(sorted({"__name__": name, **target_labels}.items()))
    return SeriesSamples(labels=labels, timestamps_ms=[ts_ms], values=[value])


def scrape_target(target: ScrapeTarget) -> bool:
    """Scrape once, store the result and the target's health; returns whether it was up."""
    at = timezone.now()
    at_ms = int(at.timestamp() * 1000)
    target_labels = {**target.labels, "job": target.name, "instance": target.instance_label}
    started = time.perf_counter()
    error = ""
    batch = MetricBatch()
    try:
        body, content_type = fetch(target.url, target.timeout_seconds)
        batch = parse_exposition(
            body,
            content_type=content_type,
            scrape_ts_ms=at_ms,
            target_labels=target_labels,
            honor_labels=target.honor_labels,
        )
        # An exporter naming a node longer than the store holds would fail the whole write.
        admission.drop_unstorable_series(batch, admission.fresh_series(batch))
        if batch.rejected:
            first = batch.rejected[0]
            error = f"{batch.rejected_count} lines rejected, first: {first.field}: {first.reason}"
    except ScrapeFailed as exc:
        error = str(exc)
    except Exception as exc:  # a parser bug must not stop the schedule for other targets
        log.exception("scrape of %s failed", target.url)
        error = f"{type(exc).__name__}: {exc}"
    up = bool(batch.series) or (not error)
    duration = time.perf_counter() - started
    scraped = batch.sample_count
    batch.series.extend(
        [
            _synthetic("up", target_labels, at_ms, 1.0 if up else 0.0),
            _synthetic("scrape_duration_seconds", target_labels, at_ms, duration),
            _synthetic("scrape_samples_scraped", target_labels, at_ms, float(scraped)),
        ]
    )
    writer.write_metrics(batch, source="scrape", client=target.name)
    current_ids, _ = writer.series_ids_for(batch)
    vanished = sorted(set(target.last_series_ids) - set(current_ids))
    if vanished:
        writer.write_samples(
            np.asarray(vanished, dtype=np.int64),
            np.full(len(vanished), at_ms, dtype=np.int64),
            np.full(len(vanished), STALE_NAN, dtype=np.float64),
        )
    synthetic = set(current_ids[-3:])
    kept = [sid for sid in current_ids if sid not in synthetic] if up else []
    services.record_scrape(
        target,
        at=at,
        ok=up,
        duration=duration,
        samples=scraped,
        series_ids=kept,
        error=error,
    )
    return up


def scrape_target_by_id(target_id: int) -> None:
    target = ScrapeTarget.objects.filter(pk=target_id, enabled=True).first()
    if target is not None:
        scrape_target(target)


def scrape_due_targets() -> int:
    from workers.tasks import scrape_target as scrape_task

    claimed = services.claim_due_targets(timezone.now())
    for target_id in claimed:
        scrape_task.delay(target_id)
    return len(claimed)
