"""Helpers for alerting tests: synthetic series on a fixed grid, rules, and a clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from ingest.types import MetricBatch
from tests.conftest import series_samples

MIN = 60_000
# A whole hour in the recent past, so samples land in today's partitions.
T0 = (int(time.time() * 1000) // 3_600_000 - 2) * 3_600_000


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def write(metric: str, labels: dict, points: list[tuple[int, float]]) -> None:
    from webapp.telemetry import writer

    writer.write_metrics(
        MetricBatch(series=[series_samples(metric, labels, points)]), source="test", client="t"
    )


def every(start: int, end: int, value, step: int = 15_000) -> list[tuple[int, float]]:
    """Points from start (inclusive) to end (exclusive); ``value`` may be a function of t."""
    return [(t, value(t) if callable(value) else value) for t in range(start, end, step)]


def make_rule(**fields):
    from webapp.alerting.models import AlertRule

    defaults = {
        "name": "HighValue",
        "kind": AlertRule.METRIC,
        "selector": "test_metric",
        "agg": "avg",
        "window_s": 60,
        "op": ">",
        "threshold": 0.5,
        "interval_s": 60,
        "severity": "warning",
        "summary": "{{ $labels.node }} at {{ $value }}",
        "next_eval_at": at(T0),
    }
    defaults.update(fields)
    return AlertRule.objects.create(**defaults)


def evaluate(ms: int, *rules) -> dict:
    from webapp.alerting import evaluation
    from webapp.alerting.models import AlertRule

    ids = [r.pk for r in rules] or list(AlertRule.objects.values_list("id", flat=True))
    return evaluation.evaluate_rules(ids, at(ms))


def states(rule) -> dict[str, str]:
    """node label (or fingerprint) -> state, for the rule's alerts."""
    return {a.labels.get("node", a.fingerprint): a.state for a in rule.alerts.all().order_by("id")}


@pytest.fixture
def receiver_factory(db):
    from webapp.alerting.models import Receiver

    def make(name="hook", kind=Receiver.WEBHOOK, send_resolved=True, **config):
        return Receiver.objects.create(
            name=name, kind=kind, config=config, send_resolved=send_resolved
        )

    return make
