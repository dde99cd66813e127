"""Mixed load on PostgreSQL: remote_write clients and dashboard users at once (issue 11).

    nice -n 5 .venv/bin/python benchmarks/load.py [--seconds 120] [--writers 8]
        [--series 1000] [--write-interval 1.0] [--users 30] [--max-requests 20000]

Builds the database ``bench_load``, writes ``--history-minutes`` of the writers' series
through the store's writer (so the pages have something to draw), then starts gunicorn
(4 workers x 8 threads, each recycled after
``--max-requests`` requests, as docker-compose) and a Celery worker with its beat (Redis
broker ``redis://127.0.0.1:6379/13``; model bootstrap training off, so the worker runs the
periodic rollups, stats flushes and alert cycles, not a training run) on loopback and for
``--seconds`` runs at once:

- ``--writers`` remote_write clients, each a Prometheus for 10 nodes x 10 VMs (1,000
  series) posting one sample per series every ``--write-interval`` seconds;
- ``--users`` dashboard users requesting overview, nodes, a node, an instance, explore and
  the anomaly list round robin with no think time;
- a probe that writes one sample of its own series, and after the 204 polls the
  Prometheus query API until that value is returned: the ingest lag (ack to queryable);
- the 1-minute rollup's lag behind now (the rows not yet rolled up), read from the
  database every 5 s;
- RSS of gunicorn (master and each worker) and the Celery worker, every 2 s (psutil).

Reports status counts (503 from the ingest path is deliberate back-pressure; any other 5xx
is a failure), p50/p95 of writes and pages, the lags and RSS. Prints JSON.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    RssSampler,
    app_env,
    celery_worker,
    database_size_mb,
    emit,
    flush_redis,
    fresh_database,
    gunicorn,
    manage,
    page_users,
    percentile,
    session_cookie,
    summary_ms,
    warm,
)
from ingest.remote_write import REMOTE_WRITE_HEADERS, encode_remote_write
from ingest.types import SeriesSamples

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
CACHE = os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/12")
HOST_METRICS = ("host_cpu_utilization_ratio",)
VM_METRICS = (
    "vm_cpu_utilization_ratio",
    "vm_memory_utilization_ratio",
    "vm_cpu_steal_ratio",
    "vm_request_latency_seconds",
    "vm_disk_read_bytes_per_second",
    "vm_disk_write_bytes_per_second",
    "vm_network_receive_bytes_per_second",
    "vm_network_transmit_bytes_per_second",
    "vm_requests_per_second",
)


def writer_labels(w: int) -> list[tuple]:
    """1,000 series for writer ``w``: 10 nodes, each with a host metric and 10 VMs x 9."""
    out = []
    for n in range(10):
        node = f"load-node-{w:02d}-{n}"
        base = {"node": node, "cluster": f"c{w % 3}", "rack": f"r{n % 4}", "job": f"prom-{w}"}
        for metric in HOST_METRICS:
            for k in range(10):  # ten host-level series per node (cpu0..cpu9)
                out.append(tuple(sorted({**base, "__name__": metric, "cpu": str(k)}.items())))
        for v in range(10):
            vm = {**base, "vm": f"load-vm-{w:02d}-{n}-{v}"}
            for metric in VM_METRICS:
                out.append(tuple(sorted({**vm, "__name__": metric}.items())))
    return out


def history(writers: int, minutes: int, now_ms: int) -> int:
    from ingest.types import MetricBatch
    from webapp.telemetry import services, writer

    rng = np.random.default_rng(11)
    ts = list(range(now_ms - minutes * 60_000, now_ms - 60_000, 15_000))
    stored = 0
    for w in range(writers):
        series = [
            SeriesSamples(labels, ts, rng.random(len(ts)).tolist()) for labels in writer_labels(w)
        ]
        stored += writer.write_metrics(
            MetricBatch(series=series), source="bench", client="history"
        ).stored
    services.run_rollups()
    return stored


class Writers:
    """remote_write clients at a steady rate; latencies and status counts."""

    def __init__(self, url: str, token: str, n: int, interval: float):
        self.parts = urlsplit(url)
        self.headers = {**REMOTE_WRITE_HEADERS, "Authorization": f"Bearer {token}"}
        self.n, self.interval = n, interval
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.samples_acked = 0
        self.errors: list[str] = []
        self.labels = [writer_labels(w) for w in range(n)]
        self.rng = np.random.default_rng(5)

    def client(self, w: int, stop: threading.Event) -> None:
        conn = http.client.HTTPConnection(self.parts.hostname, self.parts.port, timeout=60)
        labels = self.labels[w]
        next_at = time.monotonic() + w * self.interval / self.n  # spread the writers
        while not stop.is_set():
            if stop.wait(max(0.0, next_at - time.monotonic())):
                break
            next_at += self.interval
            now_ms = int(time.time() * 1000)
            values = self.rng.random(len(labels)).tolist()
            body = encode_remote_write(
                SeriesSamples(lab, [now_ms], [values[i]]) for i, lab in enumerate(labels)
            )
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/write", body=body, headers=self.headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(self.parts.hostname, self.parts.port, timeout=60)
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            with self.lock:
                self.statuses[str(response.status)] += 1
                if response.status == 204:
                    self.latencies.append(elapsed)
                    self.samples_acked += len(labels)
        conn.close()


def probe(url: str, token: str, stop: threading.Event, out: list[float], misses: list) -> None:
    """Write one sample, then ask the query API for it until it is there."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    auth = {"Authorization": f"Bearer {token}"}
    labels = (("__name__", "bench_lag_probe"), ("probe", "1"))
    seq = 0
    while not stop.wait(1.0):
        seq += 1
        now_ms = int(time.time() * 1000)
        body = encode_remote_write([SeriesSamples(labels, [now_ms], [float(seq)])])
        conn.request("POST", "/api/v1/write", body=body, headers={**REMOTE_WRITE_HEADERS, **auth})
        response = conn.getresponse()
        response.read()
        if response.status != 204:
            continue
        acked = time.perf_counter()
        query = urlencode({"query": "bench_lag_probe", "time": now_ms / 1000})
        while time.perf_counter() - acked < 60:
            conn.request("GET", f"/api/v1/query?{query}", headers=auth)
            response = conn.getresponse()
            data = response.read()
            if response.status == 200 and f'"{seq}"'.encode() in data:
                out.append(time.perf_counter() - acked)
                break
            time.sleep(0.05)
        else:
            misses.append(seq)
    conn.close()


def rollup_lag(stop: threading.Event, out: list[float]) -> None:
    from django.db import close_old_connections

    from webapp.telemetry.models import RollupState

    while not stop.wait(5.0):
        state = RollupState.objects.filter(resolution="1m").first()
        if state and state.complete_until:
            out.append(time.time() - state.complete_until.timestamp())
        close_old_connections()


def page_paths(writers: int) -> dict[str, str]:
    return {
        "overview": "/",
        "nodes": "/nodes/",
        "node": f"/nodes/load-node-{writers - 1:02d}-3/",
        "instance": "/instances/load-vm-00-1-2/",
        "explore_1h": "/explore/?q=vm_cpu_utilization_ratio&range=1h",
        "anomalies": "/anomalies/",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--write-interval", type=float, default=1.0)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--history-minutes", type=int, default=30)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--max-requests", type=int, default=20_000, help="worker recycling, as docker-compose"
    )
    args = parser.parse_args()

    env = app_env(
        fresh_database("bench_load"),
        CELERY_BROKER_URL=BROKER,
        TELLTALE_BOOTSTRAP_TRAINING="off",
        TELLTALE_CACHE_URL=CACHE,  # as deployed: quotas, lockouts and panels shared in Redis
    )
    flush_redis(CACHE)
    manage(env, "migrate", "--noinput")
    token = (
        manage(
            env, "create_ingest_token", "bench-load", "--scope", "metrics:write", "--scope", "read"
        )
        .strip()
        .splitlines()[-1]
    )
    os.environ.update(env)
    import django

    django.setup()
    cookie = session_cookie("bench")
    started = time.perf_counter()
    history_samples = history(args.writers, args.history_minutes, int(time.time() * 1000))
    history_seconds = time.perf_counter() - started

    writers = Writers("", token, args.writers, args.write_interval)
    paths = page_paths(args.writers)
    probe_lag: list[float] = []
    probe_missed: list[int] = []
    rollup: list[float] = []
    beat_dir = tempfile.mkdtemp(prefix="bench_load_beat_")
    beat_file = os.path.join(beat_dir, "schedule")
    with (
        gunicorn(
            env, workers=args.workers, threads=args.threads, max_requests=args.max_requests
        ) as (url, web),
        celery_worker(env, beat_file) as worker,
    ):
        warm(url, args.workers * args.threads)
        writers.parts = urlsplit(url)
        with RssSampler({"gunicorn": web.pid, "celery": worker.pid}) as rss:
            stop = threading.Event()
            threads = [
                threading.Thread(target=writers.client, args=(w, stop)) for w in range(args.writers)
            ]
            threads.append(
                threading.Thread(target=probe, args=(url, token, stop, probe_lag, probe_missed))
            )
            threads.append(threading.Thread(target=rollup_lag, args=(stop, rollup)))
            for t in threads:
                t.start()
            run_started = time.perf_counter()
            pages = page_users(url, cookie, paths, args.users, args.seconds)
            stop.set()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - run_started
    shutil.rmtree(beat_dir, ignore_errors=True)

    write_5xx = {k: v for k, v in writers.statuses.items() if k.startswith("5")}
    page_5xx = {k: v for k, v in pages["statuses"].items() if k.startswith("5")}
    emit(
        {
            "benchmark": "mixed_load_postgres",
            "seconds": round(elapsed, 1),
            "history": {
                "samples": history_samples,
                "minutes": args.history_minutes,
                "seconds": round(history_seconds, 1),
            },
            "gunicorn": {
                "workers": args.workers,
                "threads": args.threads,
                "max_requests": args.max_requests,
            },
            "celery": {"broker": BROKER, "pool": "threads", "concurrency": 2, "beat": True},
            "writes": {
                "clients": args.writers,
                "series_per_request": 1000,
                "interval_s": args.write_interval,
                "statuses": dict(writers.statuses),
                "connection_errors": len(writers.errors),
                "samples_acked": writers.samples_acked,
                "samples_per_second": round(writers.samples_acked / elapsed),
                "offered_samples_per_second": round(args.writers * 1000 / args.write_interval),
                "latency": summary_ms(writers.latencies),
                "back_pressure_503": write_5xx.get("503", 0),
                "other_5xx": {k: v for k, v in write_5xx.items() if k != "503"},
            },
            "pages": {**pages, "5xx": page_5xx},
            "ingest_lag_ack_to_queryable": {
                **summary_ms(probe_lag),
                "not_visible_within_60s": len(probe_missed),
            },
            "rollup_1m_lag_seconds": {
                "p50": round(percentile(rollup, 50), 1),
                "max": round(max(rollup), 1) if rollup else None,
                "end": round(rollup[-1], 1) if rollup else None,
            },
            "rss_mb": rss.report(),
            "database_size_mb": database_size_mb(),
            "pass": not page_5xx
            and not writers.errors
            and not pages["errors"]
            and not {k for k in write_5xx if k != "503"},
        }
    )


if __name__ == "__main__":
    main()
