"""Alert rule evaluation on PostgreSQL: 1,000 rules over 10,000 series in one cycle.

    .venv/bin/python benchmarks/alerting.py [--rules 1000] [--series 10000] [--cycles 3]

Loads 10 metrics x 1,000 nodes (10 minutes at 15 s) into a throwaway database, writes
1,000 rules of mixed shapes (per-cluster and fleet-wide thresholds with avg/max/p95/last
aggregations, regex matchers, up == 0 absence rules), then times evaluation cycles: the
first creates the alert rows, the next ones are the steady state. Also counts the SQL
queries of a cycle, and times apart the dispatch stage and the incident-signal task the
cycle queues (a separate worker task in production). Prints JSON with seconds and the
ratio of the slowest evaluation cycle to the 5 s target.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import app_env, emit, fresh_database, manage

TARGET_S = 5.0
STEP_MS = 15_000
METRICS = 10
CLUSTERS = 20


def load(now_ms: int, n_series: int, cycles: int) -> None:
    from ingest.types import MetricBatch, SeriesSamples
    from webapp.telemetry import writer

    rng = np.random.default_rng(11)
    nodes = n_series // METRICS
    # Ten minutes before the first cycle through the last one (cycles are a minute apart).
    ts = list(range(now_ms - 10 * 60_000 + STEP_MS, now_ms + cycles * 60_000 + 1, STEP_MS))
    batch = []
    for m in range(METRICS):
        metric = "bench_up" if m == METRICS - 1 else f"bench_m{m}"
        levels = rng.random(nodes)
        for i in range(nodes):
            labels = {
                "__name__": metric,
                "node": f"n{i:04d}",
                "cluster": f"c{i % CLUSTERS:02d}",
                "rack": f"r{i % 100:02d}",
            }
            if metric == "bench_up":
                values = [0.0 if i % 97 == 0 else 1.0] * len(ts)
            else:
                values = (levels[i] + rng.normal(0, 0.01, len(ts))).tolist()
            batch.append(SeriesSamples(tuple(sorted(labels.items())), ts, values))
            if len(batch) >= 1000:
                writer.write_metrics(MetricBatch(series=batch), source="bench", client="bench")
                batch = []
    if batch:
        writer.write_metrics(MetricBatch(series=batch), source="bench", client="bench")


def make_rules(n_rules: int, now) -> None:
    from webapp.alerting.models import AlertRule

    aggs = ["avg", "max", "p95", "last", "avg", "min"]
    rules = []
    for i in range(n_rules):
        m = i % (METRICS - 1)
        shape = i % 10
        fields = {
            "name": f"BenchRule{i:04d}",
            "kind": AlertRule.METRIC,
            "agg": aggs[i % len(aggs)],
            "window_s": 300,
            "op": ">",
            # About one series in a hundred is above: an alert storm, not a quiet day.
            "threshold": 0.99 + (i % 7) / 1000,
            "for_s": 60 * (i % 3),
            "interval_s": 60,
            "severity": "warning",
            "summary": "{{ $labels.node }} at {{ $value }}",
            "next_eval_at": now,
        }
        if shape < 6:  # one cluster of one metric (50 series)
            fields["selector"] = f'bench_m{m}{{cluster="c{i % CLUSTERS:02d}"}}'
        elif shape < 8:  # a whole metric (1,000 series)
            fields["selector"] = f"bench_m{m}"
        elif shape == 8:  # regex over nodes
            fields["selector"] = f'bench_m{m}{{node=~"n0[0-4].*", rack!="r00"}}'
        else:  # up == 0 per series of a cluster pair
            fields.update(
                kind=AlertRule.ABSENCE,
                absence_mode=AlertRule.UP,
                selector=f'bench_up{{cluster=~"c{i % CLUSTERS:02d}|c{(i + 1) % CLUSTERS:02d}"}}',
                window_s=120,
            )
        rules.append(AlertRule(**fields))
    AlertRule.objects.bulk_create(rules)


def cycle(now) -> tuple[float, int, dict, list[int]]:
    """One evaluation cycle. The incident feed it queues is a separate Celery task on a
    worker in production; here (no broker) its calls are collected and timed apart."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from webapp.alerting import evaluation
    from workers import tasks

    queued: list[int] = []
    real_delay = tasks.feed_incidents.delay
    tasks.feed_incidents.delay = queued.extend
    try:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            ids = evaluation.claim_due_rules(now)
            result = evaluation.evaluate_rules(ids, now)
            seconds = time.perf_counter() - started
    finally:
        tasks.feed_incidents.delay = real_delay
    return seconds, len(queries), result, queued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    database_url = fresh_database("telltale_bench_alerting")
    env = app_env(database_url)
    manage(env, "migrate", "--noinput")
    os.environ.update(env)
    import django

    django.setup()
    from datetime import UTC, datetime, timedelta

    from webapp.alerting import dispatch, incidents_feed
    from webapp.alerting.models import AlertInstance
    from webapp.telemetry.models import Series

    now_ms = int(time.time() * 1000) // STEP_MS * STEP_MS
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    started = time.perf_counter()
    load(now_ms, args.series, args.cycles)
    load_seconds = time.perf_counter() - started
    make_rules(args.rules, now)
    from webapp.alerting.models import Receiver, Route

    # Grouping and flushing run in full; the receiver is disabled so nothing leaves.
    off = Receiver.objects.create(name="off", kind="webhook", config={"url": "http://x/"})
    off.enabled = False
    off.save()
    Route.objects.create(name="root", receiver=off, group_by=["alertname"], group_wait_s=0)
    cycles = []
    for k in range(args.cycles):
        at = now + timedelta(seconds=60 * k)
        seconds, queries, result, fed = cycle(at)
        dispatch_started = time.perf_counter()
        dispatched = dispatch.dispatch(at)
        dispatch_seconds = time.perf_counter() - dispatch_started
        feed_started = time.perf_counter()
        signals = incidents_feed.feed(fed)
        feed_seconds = time.perf_counter() - feed_started
        cycles.append(
            {
                "evaluate_seconds": round(seconds, 3),
                "dispatch_seconds": round(dispatch_seconds, 3),
                "incident_feed_task_seconds": round(feed_seconds, 3),
                "incident_signals": signals,
                "queries": queries,
                "rules": result["rules"],
                "alert_changes": result["changed"],
                "history_events": result["events"],
                "firing_after": AlertInstance.objects.filter(state="firing").count(),
                "pending_after": AlertInstance.objects.filter(state="pending").count(),
                "notify_groups": dispatched.get("groups", 0),
            }
        )
    steady = max(c["evaluate_seconds"] for c in cycles[1:]) if len(cycles) > 1 else None
    worst = max(c["evaluate_seconds"] for c in cycles)
    emit(
        {
            "benchmark": "alert_evaluation_postgres",
            "series": Series.objects.count(),
            "rules": args.rules,
            "load_seconds": round(load_seconds, 1),
            "cycles": cycles,
            "first_cycle_seconds": cycles[0]["evaluate_seconds"],
            "steady_cycle_seconds": steady,
            "target_seconds": TARGET_S,
            "ratio_to_target_worst_cycle": round(worst / TARGET_S, 3),
        }
    )


if __name__ == "__main__":
    main()
