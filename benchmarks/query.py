"""Range-query latency on PostgreSQL through the HTTP API (the path a chart takes).

    .venv/bin/python benchmarks/query.py [--repeat 50]

Loads 7 days of one series and 24 h of 20 series at 15 s resolution into a throwaway
database, brings rollups up to date, then times (server side, in-process Django test
client, logged in) two requests: one series over 7 days as ~1,000 points and a
20-series panel over 24 h. Also times the 7-day query with rollups disabled (raw scan)
as the in-run baseline. Prints p50/p95 in ms as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import app_env, emit, fresh_database, manage, percentile

DAY_MS = 86_400_000
STEP_MS = 15_000


def load(now_ms: int) -> None:
    from ingest.types import MetricBatch, SeriesSamples
    from webapp.telemetry import services, writer

    rng = np.random.default_rng(3)
    start = now_ms - 7 * DAY_MS
    ts = np.arange(start, now_ms, STEP_MS, dtype=np.int64)
    chunk = 5760  # one day per write
    for i in range(0, len(ts), chunk):
        part = ts[i : i + chunk]
        labels = tuple(sorted({"__name__": "bench_cpu", "node": "n-long"}.items()))
        batch = MetricBatch(
            series=[SeriesSamples(labels, part.tolist(), rng.random(len(part)).tolist())]
        )
        writer.write_metrics(batch, source="bench", client="bench")
    day = ts[ts >= now_ms - DAY_MS]
    panel = [
        SeriesSamples(
            tuple(sorted({"__name__": "bench_panel", "node": f"n{k}"}.items())),
            day.tolist(),
            rng.random(len(day)).tolist(),
        )
        for k in range(20)
    ]
    writer.write_metrics(MetricBatch(series=panel), source="bench", client="bench")
    services.run_rollups(now_ms=now_ms + 5 * 60_000)


def timed(client, params: dict, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get("/api/telemetry/range", params)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    database_url = fresh_database("telltale_bench_query")
    env = app_env(database_url)
    manage(env, "migrate", "--noinput")
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from webapp.core.services import set_user_role
    from webapp.telemetry.models import RollupState

    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    started = time.perf_counter()
    load(now_ms)
    load_seconds = time.perf_counter() - started
    user = get_user_model().objects.create_user("bench", password="bench-pass-123")
    set_user_role(user, "viewer")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)

    week = {
        "match": "bench_cpu",
        "start": (now_ms - 7 * DAY_MS) / 1000,
        "end": now_ms / 1000,
        "step": "605",
    }
    day = {
        "match": "bench_panel",
        "start": (now_ms - DAY_MS) / 1000,
        "end": now_ms / 1000,
        "step": "86",
    }
    points = len(client.get("/api/telemetry/range", week).json()["data"]["series"][0]["points"])
    panel = client.get("/api/telemetry/range", day).json()["data"]
    import gc

    gc.freeze()  # as webapp/wsgi.py does in every web worker once the app is loaded
    week_ms = timed(client, week, args.repeat)
    day_ms = timed(client, day, args.repeat)
    RollupState.objects.all().delete()  # same queries without rollups: raw scans
    week_raw_ms = timed(client, week, max(5, args.repeat // 5))
    emit(
        {
            "benchmark": "range_query_postgres",
            "load_seconds": round(load_seconds, 1),
            "one_series_7d": {
                "points_returned": points,
                "p50_ms": round(percentile(week_ms, 50), 1),
                "p95_ms": round(percentile(week_ms, 95), 1),
            },
            "panel_20_series_24h": {
                "series": len(panel["series"]),
                "points_per_series": len(panel["series"][0]["points"]),
                "resolution": panel["resolution"],
                "p50_ms": round(percentile(day_ms, 50), 1),
                "p95_ms": round(percentile(day_ms, 95), 1),
            },
            "baseline_one_series_7d_raw_scan": {
                "p50_ms": round(percentile(week_raw_ms, 50), 1),
                "p95_ms": round(percentile(week_raw_ms, 95), 1),
            },
            "target": "p95 < 100 ms",
        }
    )


if __name__ == "__main__":
    main()
