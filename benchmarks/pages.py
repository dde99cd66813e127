"""Page latency on a week of a simulated fleet in PostgreSQL (issue 10).

    nice -n 5 .venv/bin/python benchmarks/pages.py [--nodes 50] [--instances 400] [--days 7]
        [--step 300] [--recent-hours 6] [--recent-step 15] [--repeat 30] [--users 30]
        [--seconds 60] [--panel-cache-seconds 10] [--cache-url redis://...] [--reuse]

Builds the database ``bench_pages`` (or, with --reuse, keeps it when a previous run filled
it) and backfills the simulator's fleet through the store's writer: the last
``--recent-hours`` at ``--recent-step`` seconds with full log volume, the days before at
``--step`` seconds with ``--old-log-scale`` of the log volume (a full week at 15 s is ~10^9
samples, more than this machine writes in a benchmark). Both parts come from the same
seeded fleet; the 15 s simulator's ground truth (injected cases, node faults) is recorded.
The anomaly model is not trained here, so the injected anomaly cases become Anomaly rows
through the scoring code's own open/extend/close path (``webapp.detection.scoring``),
which also raises the incident signals. Then it times, in process with a logged-in
Django test client, ``--repeat`` requests of each page (server time: no network), once
with the panel cache off (what computing a page costs) and once with it on (repeated
views within the cache period, as people refreshing a page get); and finally ``--users``
concurrent users mixing the same pages over real HTTP against gunicorn (4 workers x 8
threads as docker-compose runs it, a thread per kept-alive user, sharing a Redis cache) on
loopback for ``--seconds``: first from the Python generator (latency per page), then from
``wrk`` when installed (C, cheaper on the shared cores). Prints JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    app_env,
    database_exists,
    database_size_mb,
    database_url,
    emit,
    flush_redis,
    fresh_database,
    gunicorn,
    manage,
    page_users,
    session_cookie,
    summary_ms,
    warm,
    wrk_users,
)

HOUR = 3600
TARGET_P95_MS = 300
TARGET_CONCURRENT_P95_MS = 1000


# --- backfill -----------------------------------------------------------------------------
def simulators(args, now: int, start: int | None = None):
    from ingest.simulator import SimConfig, Simulator

    if start is None:
        start = (now - args.days * 86400) // HOUR * HOUR
    hours = (now - start) // HOUR + 1  # the period ends in the current hour; we stop at now

    def sim(step: int, log_scale: float) -> Simulator:
        config = SimConfig(
            seed=args.seed,
            n_nodes=args.nodes,
            n_instances=args.instances,
            step_seconds=step,
            start=start,
            hours=hours,
            log_rate_scale=log_scale,
        )
        return Simulator(config)

    recent = sim(args.recent_step, 1.0)
    old = sim(args.step, args.old_log_scale)
    assert old.fleet.instance_names == recent.fleet.instance_names, "fleets differ"
    return old, recent


def write_steps(sim, step0: int, step1: int, chunk_steps: int, run_id: str) -> tuple[int, int]:
    import hashlib

    from ingest.types import LogBatch, MetricBatch
    from webapp.telemetry import writer

    samples = logs = 0
    for s0 in range(step0, step1, chunk_steps):
        chunk = sim.simulate_chunk(s0, min(chunk_steps, step1 - s0))
        batch = MetricBatch(series=list(sim.iter_series(chunk)))
        samples += writer.write_metrics(batch, source="simulator", client=run_id).stored
        entries = LogBatch(entries=list(sim.log_entries(chunk.logs)))
        digest = hashlib.blake2b(f"{run_id}:{sim.config.step_seconds}:{s0}".encode()).digest()
        logs += writer.write_logs(
            entries, source="simulator", client=run_id, batch_digest=digest[:16]
        ).stored
        print(f"  steps {s0}/{step1} at {sim.config.step_seconds}s", file=sys.stderr)
    return samples, logs


def backfill(args, now: int) -> dict:
    from ingest.simulator.live import LiveStreamer
    from webapp.telemetry import services
    from webapp.telemetry.simulation import record_faults

    started = time.perf_counter()
    old, recent = simulators(args, now)
    truth = LiveStreamer(recent, "http://unused", "")
    fleet = truth.fleet_truth()
    cases = [truth.case_payload(c) for c in recent.cases if c.start <= now]
    services.record_ground_truth(truth.run_id, fleet["nodes"], fleet["instances"], cases)
    boundary = (now - args.recent_hours * HOUR) // HOUR * HOUR
    old_steps = old.step_of(boundary)
    old_samples, old_logs = write_steps(old, 0, old_steps, max(1, 6 * HOUR // args.step), "old")
    new_samples, new_logs = write_steps(
        recent, recent.step_of(boundary), recent.step_of(now) + 1, HOUR // args.recent_step, "new"
    )
    faults = record_faults(recent, truth, now)
    write_seconds = time.perf_counter() - started
    rollups_started = time.perf_counter()
    services.run_rollups()
    rollup_seconds = time.perf_counter() - rollups_started
    anomalies = anomalies_from_truth(recent, now)
    return {
        "fleet": {"nodes": args.nodes, "instances": args.instances, "seed": args.seed},
        "period_start": old.config.start,
        "period_end": now,
        "older_part": {
            "from": old.config.start,
            "to": boundary,
            "step_seconds": args.step,
            "samples": old_samples,
            "log_lines": old_logs,
            "log_rate_scale": args.old_log_scale,
        },
        "recent_part": {
            "from": boundary,
            "to": now,
            "step_seconds": args.recent_step,
            "samples": new_samples,
            "log_lines": new_logs,
        },
        "samples_stored": old_samples + new_samples,
        "log_lines_stored": old_logs + new_logs,
        "injected_cases": len(cases),
        "node_faults": faults,
        "anomalies_from_truth": anomalies,
        "write_seconds": round(write_seconds, 1),
        "rollup_seconds": round(rollup_seconds, 1),
        "backfill_seconds": round(time.perf_counter() - started, 1),
    }


def top_up(args, record: dict, now: int) -> dict:
    """A reused database gets the minutes since it was filled (15 s steps, full logs, the
    rollups caught up), so "last hour" pages show data as on a live install."""
    from webapp.telemetry import services

    last = int(record["period_end"])
    if now - last < 60:
        return {"seconds": 0, "samples": 0}
    started = time.perf_counter()
    _, recent = simulators(args, now, start=int(record["period_start"]))
    samples, logs = write_steps(
        recent, recent.step_of(last) + 1, recent.step_of(now) + 1, HOUR // args.recent_step, "top"
    )
    services.run_rollups()
    return {
        "from": last,
        "to": now,
        "samples": samples,
        "log_lines": logs,
        "seconds": round(time.perf_counter() - started, 1),
    }


def anomalies_from_truth(sim, now: int) -> dict:
    """Injected anomaly cases as Anomaly rows, opened, extended and closed by the same
    functions the per-minute scorer uses (so incidents correlate them as they would)."""
    from datetime import UTC, datetime

    from webapp.detection import scoring, versions
    from webapp.detection.models import Anomaly, ModelVersion
    from webapp.telemetry.models import Instance, Node

    version = versions.create_version(
        ModelVersion.KIND_ANOMALY, {"note": "benchmark: anomalies from simulator truth"}
    )
    instances = {i.name: i for i in Instance.objects.select_related("node")}
    node_rows = {n.name: n for n in Node.objects.all()}
    fleet = sim.fleet
    metric = {"vm": "vm_cpu_utilization_ratio", "host": "host_cpu_utilization_ratio"}
    cases = sorted(
        (c for c in sim.cases if c.kind == "anomaly" and c.start <= now), key=lambda c: c.start
    )
    for case in cases:
        if case.level == "vm":
            target = instances.get(fleet.instance_names[case.instance])
        else:
            target = node_rows.get(fleet.node_names[case.node]) if case.node >= 0 else None
        if target is None:
            continue
        start = datetime.fromtimestamp(case.start + 60, tz=UTC)
        end = datetime.fromtimestamp(min(case.end, now), tz=UTC)
        scoring._close_quiet(case.level, start)
        score = SimpleNamespace(
            score=60 + 40 * min(1.0, float(case.intensity)),
            raw=float(case.intensity),
            scenario=case.scenario,
            scenario_probability=0.9,
            metrics=[(metric[case.level], 0.7)],
            templates=[],
        )
        scoring._extend_or_open(version, case.level, target, score, start)
        if end > start:
            scoring._extend_or_open(version, case.level, target, score, end)
    now_dt = datetime.fromtimestamp(now, tz=UTC)
    for level in ("vm", "host"):
        scoring._close_quiet(level, now_dt)
    return {
        "cases": len(cases),
        "rows": Anomaly.objects.count(),
        "open": Anomaly.objects.filter(status=Anomaly.OPEN).count(),
    }


def predictions(hours: int, now: int) -> dict:
    """One interference prediction per instance per minute over the last ``hours``, as the
    per-minute predictor leaves them (the model is not trained here, so P is synthetic and
    written in one INSERT ... SELECT): the overview and interference pages read them."""
    from django.db import connection

    from webapp.detection import versions
    from webapp.detection.models import InterferencePrediction, ModelVersion

    if InterferencePrediction.objects.exists() or hours <= 0:
        return {"rows": InterferencePrediction.objects.count(), "written_now": False}
    started = time.perf_counter()
    version = versions.create_version(
        ModelVersion.KIND_INTERFERENCE, {"note": "benchmark: synthetic predictions"}
    )
    end = now - now % 60
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO detection_interferenceprediction"
            " (instance_id, node_id, ts, p, p_low, p_high, neighbours, model_version_id)"
            " SELECT i.id, i.node_id, t, x.p, x.p - 0.05, least(1.0, x.p + 0.05), '[]', %s"
            " FROM telemetry_instance i"
            " CROSS JOIN generate_series(to_timestamp(%s), to_timestamp(%s), interval '1 minute') t"
            " CROSS JOIN LATERAL (SELECT 0.5 + 0.5 * abs(sin(i.id * 7.0"
            " + extract(epoch FROM t) / 3600.0)) AS p) x"
            " WHERE i.node_id IS NOT NULL AND i.last_seen >= to_timestamp(%s)",
            [version.pk, end - hours * HOUR, end, end - hours * HOUR],
        )
        rows = cur.rowcount
        cur.execute("ANALYZE detection_interferenceprediction")
    return {
        "rows": rows,
        "hours": hours,
        "written_now": True,
        "seconds": round(time.perf_counter() - started, 1),
    }


def prepare(args) -> tuple[dict, bool]:
    """The database's backfill record; True when this run wrote it."""
    name = args.database
    if args.reuse and database_exists(name):
        env = app_env(database_url(name))
        manage(env, "migrate", "--noinput")  # the code may have moved on since the fill
        os.environ.update(env)
        import django

        django.setup()
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb)")
            cur.execute("SELECT value FROM bench_meta WHERE key = 'backfill'")
            row = cur.fetchone()
        if row:
            record = json.loads(row[0]) if isinstance(row[0], str) else row[0]
            now = int(time.time())
            record["last_top_up"] = top_up(args, record, now)
            record["period_end"] = now
            save(record)
            return record, False
        raise SystemExit(f"{name} exists but was not filled by this benchmark; run without --reuse")
    env = app_env(fresh_database(name))
    manage(env, "migrate", "--noinput")
    os.environ.update(env)
    import django

    django.setup()
    record = backfill(args, int(time.time()))
    save(record)
    return record, True


def save(record: dict) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb)")
        cur.execute(
            "INSERT INTO bench_meta VALUES ('backfill', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [json.dumps(record)],
        )


# --- pages --------------------------------------------------------------------------------
def page_paths() -> dict[str, str]:
    from django.urls import reverse

    from webapp.detection.models import Anomaly
    from webapp.telemetry.models import Instance, Node

    anomaly = Anomaly.objects.filter(instance__isnull=False).order_by("-end").first()
    node = Node.objects.order_by("name").first()
    instance = anomaly.instance if anomaly else Instance.objects.order_by("name").first()
    paths = {
        "overview": reverse("overview"),
        "node": reverse("node_detail", args=[node.name]),
        "anomaly": reverse("anomaly_detail", args=[anomaly.pk]) if anomaly else None,
        "nodes": reverse("node_list"),
        "instance": reverse("instance_detail", args=[instance.name]),
        "explore_7d": reverse("explore") + "?q=host_cpu_utilization_ratio&range=7d",
        "anomalies": reverse("anomaly_list"),
    }
    return {k: v for k, v in paths.items() if v}


def calibration_ms(repeat: int = 5) -> float:
    """Median time of a fixed pure-Python loop: how fast this (shared) machine was during
    the run, so figures from different runs can be compared."""
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        out.append((time.perf_counter() - started) * 1000)
    return round(sorted(out)[len(out) // 2], 1)


def time_pages(paths: dict[str, str], repeat: int, panel_cache_seconds: int) -> dict:
    """Server time of each page. With ``panel_cache_seconds`` 0 every request computes its
    panels (what a page costs); otherwise repeated requests share them as users do."""
    from django.conf import settings
    from django.core.cache import caches
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="bench"))
    settings.TELLTALE_PANEL_CACHE_SECONDS = panel_cache_seconds
    caches["panels"].clear()
    out = {}
    for name, path in paths.items():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path)  # warm-up, and the query count
        n_queries = len(queries)
        assert response.status_code == 200, (name, response.status_code, response.content[:300])
        latencies = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(path)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, name
        stats = summary_ms(latencies)
        out[name] = {
            "path": path,
            "queries": n_queries,
            "bytes": len(response.content),
            **stats,
            "meets_target": stats["p95_ms"] < TARGET_P95_MS,
        }
    return out


def fix_baselines(repeat: int = 10) -> dict:
    """The two page fixes against what they replaced, in this process on this data:
    the overview's ten most slowed instances (sorted in Python after loading the whole
    prediction round, vs ORDER BY p LIMIT 10) and embedding explore's 7-day figure
    (Django's json_script vs figure_json)."""
    from django.utils.html import json_script

    from webapp.dashboards import charts, fleet
    from webapp.dashboards.templatetags.telltale import figure_json
    from webapp.detection.interference_views import latest_predictions
    from webapp.telemetry import query

    def median_ms(fn) -> float:
        out = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            out.append((time.perf_counter() - started) * 1000)
        return round(sorted(out)[len(out) // 2], 1)

    old_slowed = median_ms(lambda: sorted(latest_predictions(), key=lambda r: r.p)[:10])
    new_slowed = median_ms(lambda: list(latest_predictions().order_by("p", "instance_id")[:10]))
    end = int(time.time() * 1000)
    start = end - 7 * 86_400_000
    found = query.select("host_cpu_utilization_ratio", limit=50)
    results, _ = query.range_query(found, start, end, (end - start) // 1000, "avg")
    lines = fleet.result_lines(found, results)
    figure = charts.time_series_figure(charts.ChartSpec("x", "ratio", lines), start, end)
    old_embed = median_ms(lambda: json_script(figure, "f"))
    new_embed = median_ms(lambda: figure_json(figure, "f"))
    return {
        "overview_most_slowed": {
            "prediction_rows_in_round": latest_predictions().count(),
            "python_sort_ms": old_slowed,
            "order_by_limit_ms": new_slowed,
            "speedup": round(old_slowed / max(new_slowed, 0.1), 1),
        },
        "explore_7d_figure_embedding": {
            "json_bytes": len(str(figure_json(figure, "f"))),
            "json_script_ms": old_embed,
            "figure_json_ms": new_embed,
            "speedup": round(old_embed / max(new_embed, 0.1), 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", default="bench_pages")
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--step", type=int, default=300, help="seconds, the older days")
    parser.add_argument("--recent-hours", type=int, default=6)
    parser.add_argument("--recent-step", type=int, default=15)
    parser.add_argument("--old-log-scale", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prediction-hours", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--think", type=float, default=0.0, help="seconds a user waits between pages"
    )
    parser.add_argument("--reuse", action="store_true", help="keep a filled bench_pages")
    parser.add_argument(
        "--panel-cache-seconds", type=int, default=10, help="0: every request computes"
    )
    parser.add_argument("--cache-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    record, wrote = prepare(args)
    record["interference_predictions"] = predictions(args.prediction_hours, record["period_end"])
    cookie = session_cookie("bench")
    paths = page_paths()
    gc.freeze()  # as webapp/wsgi.py does in every web worker once the app is loaded
    before = calibration_ms()
    # /healthz is the in-run baseline: the request/response path with no page work.
    pages = {"baseline_healthz": "/healthz", **paths}
    serial = time_pages(pages, args.repeat, panel_cache_seconds=0)
    serial_cached = time_pages(pages, args.repeat, panel_cache_seconds=args.panel_cache_seconds)
    calibration = {"cpu_loop_ms_before": before, "cpu_loop_ms_after": calibration_ms()}
    baselines = fix_baselines()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["DJANGO_SETTINGS_MODULE"] = "webapp.settings"
    # As deployed (docker-compose): the web workers share one Redis cache.
    env["TELLTALE_CACHE_URL"] = args.cache_url
    env["TELLTALE_PANEL_CACHE_SECONDS"] = str(args.panel_cache_seconds)
    flush_redis(args.cache_url)
    with gunicorn(env, workers=args.workers, threads=args.threads) as (url, _):
        warm(url, args.workers * args.threads)
        page_users(url, cookie, paths, args.workers * args.threads, 5)
        concurrent = page_users(url, cookie, paths, args.users, args.seconds, think=args.think)
        concurrent_wrk = wrk_users(url, cookie, paths, args.users, args.seconds)
    concurrent["gunicorn"] = {"workers": args.workers, "threads": args.threads}
    for run in (concurrent, concurrent_wrk):
        if run is not None:
            run["meets_target"] = (
                run["errors"] == 0 and run["all_pages"]["p95_ms"] < TARGET_CONCURRENT_P95_MS
            )
    emit(
        {
            "benchmark": "pages_postgres",
            "database": args.database,
            "reused": not wrote,
            "data_age_seconds": round(time.time() - record["period_end"]),
            "database_size_mb": database_size_mb(),
            "backfill": record,
            "machine_calibration": calibration,
            "fixes_vs_replaced_code": baselines,
            "panel_cache_seconds": args.panel_cache_seconds,
            "serial_in_process": serial,
            "misses": [k for k, v in serial.items() if not v["meets_target"]],
            "serial_in_process_cached": serial_cached,
            "concurrent_http": concurrent,
            "concurrent_http_wrk": concurrent_wrk,
            "targets": {
                "serial_p95_ms": TARGET_P95_MS,
                "concurrent_p95_ms": TARGET_CONCURRENT_P95_MS,
                "concurrent_errors": 0,
            },
        }
    )


if __name__ == "__main__":
    main()
