"""End-to-end remote_write ingest on PostgreSQL versus a raw psycopg COPY of the same rows.

    .venv/bin/python benchmarks/ingest.py [--requests 200] [--clients 4] [--series 500]

Starts gunicorn against a throwaway database, posts pre-encoded remote_write requests of
``series`` x ``samples`` over HTTP from ``clients`` threads until every one is answered
204 (committed), then COPYs the same rows with psycopg into an empty table in the same
run: once row by row (``write_row``, the idiomatic psycopg way) and once as one binary
buffer (the fastest a client can do). The ratio uses the faster ceiling. Prints JSON.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import app_env, emit, fresh_database, gunicorn, manage
from ingest.remote_write import REMOTE_WRITE_HEADERS, encode_remote_write
from ingest.types import SeriesSamples


def build_requests(n_requests: int, n_series: int, n_samples: int, now_ms: int):
    rng = np.random.default_rng(7)
    labels = [
        tuple(
            sorted(
                {
                    "__name__": f"bench_metric_{i % 25}",
                    "node": f"node-{i % 50}",
                    "vm": f"vm-{i}",
                    "job": "bench",
                }.items()
            )
        )
        for i in range(n_series)
    ]
    bodies, rows = [], []
    span = n_requests * n_samples * 1000
    for r in range(n_requests):
        base = now_ms - span + r * n_samples * 1000
        ts = [base + k * 1000 for k in range(n_samples)]
        series = []
        for lab in labels:
            values = rng.normal(50, 10, n_samples).tolist()
            series.append(SeriesSamples(labels=lab, timestamps_ms=ts, values=values))
        bodies.append(encode_remote_write(series))
        rows.append(series)
    return bodies, rows


def post_all(
    url: str, token: str, bodies: list[bytes], clients: int
) -> tuple[float, list[float], int]:
    parts = urlsplit(url)
    headers = {**REMOTE_WRITE_HEADERS, "Authorization": f"Bearer {token}"}
    queue = list(enumerate(bodies))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]

    def worker():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        while True:
            with lock:
                if not queue:
                    break
                _, body = queue.pop()
            started = time.perf_counter()
            conn.request("POST", "/api/v1/write", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            with lock:
                latencies.append(time.perf_counter() - started)
                if response.status != 204:
                    errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, errors[0]


def raw_copy(database_url: str, rows, series_ids) -> dict[str, float]:
    from webapp.telemetry.store.postgres import encode_copy

    conninfo = database_url.replace("postgres://", "postgresql://")
    flat = []
    for series in rows:
        sids = np.repeat(np.array(series_ids, np.int64), [len(s.timestamps_ms) for s in series])
        ts = np.array([t for s in series for t in s.timestamps_ms], np.int64)
        vals = np.array([v for s in series for v in s.values], np.float64)
        flat.append((sids, ts, vals))
    results = {}
    with psycopg.connect(conninfo) as conn:
        for mode in ("write_row", "binary_buffer"):
            conn.execute("TRUNCATE telemetry_sample")
            conn.commit()
            started = time.perf_counter()
            for sids, ts, vals in flat:
                with conn.cursor() as cur:
                    if mode == "write_row":
                        with cur.copy(
                            "COPY telemetry_sample (series_id, ts, value) FROM STDIN"
                        ) as copy:
                            from datetime import UTC, datetime

                            for sid, t, v in zip(
                                sids.tolist(), ts.tolist(), vals.tolist(), strict=True
                            ):
                                copy.write_row((sid, datetime.fromtimestamp(t / 1000, tz=UTC), v))
                    else:
                        binary = "COPY telemetry_sample (series_id, ts, value) FROM STDIN BINARY"
                        with cur.copy(binary) as copy:
                            copy.write(encode_copy(sids, ts, vals))
                conn.commit()  # one transaction per batch, like one request
            elapsed = time.perf_counter() - started
            results[mode] = sum(len(f[0]) for f in flat) / elapsed
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    database_url = fresh_database("telltale_bench_ingest")
    env = app_env(database_url)
    manage(env, "migrate", "--noinput")
    token = manage(env, "create_ingest_token", "bench").strip()
    now_ms = int(time.time() * 1000)
    bodies, rows = build_requests(args.requests, args.series, args.samples, now_ms)
    warmup = encode_remote_write(rows[0])  # registers the series before timing
    total = args.requests * args.series * args.samples

    with gunicorn(env, workers=args.workers) as (url, _):
        post_all(url, token, [warmup] * args.workers * 4, args.clients)
        elapsed, latencies, errors = post_all(url, token, bodies, args.clients)

    os.environ.update(env)
    import django

    django.setup()
    from webapp.telemetry import identity
    from webapp.telemetry.store import get_store

    stored = get_store().count()
    series_ids = [identity.series_id(s.labels) for s in rows[0]]
    ceiling = raw_copy(database_url, rows, series_ids)
    best = max(ceiling.values())
    e2e = total / elapsed
    emit(
        {
            "benchmark": "ingest_remote_write_postgres",
            "requests": args.requests,
            "series_per_request": args.series,
            "samples_per_series": args.samples,
            "clients": args.clients,
            "gunicorn_workers": args.workers,
            "samples_sent": total,
            "samples_stored": stored,
            "non_2xx": errors,
            "end_to_end_seconds": round(elapsed, 3),
            "end_to_end_samples_per_second": round(e2e),
            "request_latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "request_latency_p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1),
            "raw_copy_write_row_samples_per_second": round(ceiling["write_row"]),
            "raw_copy_binary_samples_per_second": round(ceiling["binary_buffer"]),
            "ratio_to_fastest_raw_copy": round(e2e / best, 3),
            "target": ">= 150000 samples/s end to end and >= 0.5 of raw COPY",
        }
    )


if __name__ == "__main__":
    main()
