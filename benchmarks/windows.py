"""What reading model windows costs when nodes send node_exporter instead of the models'
own metric names, on PostgreSQL.

    .venv/bin/python benchmarks/windows.py [--nodes 200] [--cpus 8] [--repeat 5]

Loads one hour at 15 s for two fleets of the same size into a throwaway database: one whose
nodes state the 17 host metrics the anomaly model reads (the simulator's and agent's
names: the in-run baseline), one whose nodes send what node_exporter gives for them (per-CPU
counters for its eight modes, memory, load, filesystem, disk and NIC counters, ``up``). Then times
``metric_windows("host", ...)`` for each whole fleet (the scoring round's read: 240 steps of
15 s). Prints the median seconds of each and their ratio as JSON.

Also times the store's raw read of the node_exporter fleet's window against the reader it
replaced (a binary COPY, which psycopg hands to Python one row at a time), kept here as
the in-run baseline.
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

STEP_MS = 15_000
STEPS = 240


def _series(metric: str, labels: dict, ts: np.ndarray, values: np.ndarray):
    from ingest.types import SeriesSamples

    return SeriesSamples(
        tuple(sorted({"__name__": metric, **labels}.items())), ts.tolist(), values.tolist()
    )


def stated_fleet(nodes: int, ts: np.ndarray, rng) -> list:
    from ingest.simulator import HOST_METRIC_NAMES

    return [
        _series(name, {"node": f"stated-{n}"}, ts, rng.random(len(ts)))
        for n in range(nodes)
        for name in HOST_METRIC_NAMES
    ]


def exporter_fleet(nodes: int, cpus: int, ts: np.ndarray, rng) -> list:
    seconds = (ts - ts[0]) / 1000.0
    out = []
    for n in range(nodes):
        labels = {"instance": f"exporter-{n}:9100", "job": "node"}

        def counter(per_second, seconds=seconds):
            return np.cumsum(np.full(len(seconds), per_second * STEP_MS / 1000)) * (
                1 + 0.01 * rng.random(len(seconds))
            )

        for cpu in range(cpus):
            for mode, share in (
                ("idle", 0.6),
                ("iowait", 0.02),
                ("steal", 0.01),
                ("user", 0.3),
                ("system", 0.05),
                ("nice", 0.0),
                ("irq", 0.0),
                ("softirq", 0.02),
            ):
                out.append(
                    _series(
                        "node_cpu_seconds_total",
                        {**labels, "cpu": str(cpu), "mode": mode},
                        ts,
                        counter(share),
                    )
                )
        for name, value in (
            ("node_memory_MemAvailable_bytes", 3e9),
            ("node_memory_MemTotal_bytes", 8e9),
            ("node_load1", 1.5),
            ("up", 1.0),
            ("node_timex_offset_seconds", 0.001),
        ):
            out.append(_series(name, labels, ts, np.full(len(ts), value)))
        for name in ("size", "free", "avail"):
            out.append(
                _series(
                    f"node_filesystem_{name}_bytes",
                    {**labels, "mountpoint": "/"},
                    ts,
                    np.full(len(ts), 1e11),
                )
            )
        for device in ("sda", "sdb"):
            for name in ("read_bytes", "written_bytes", "io_time_seconds"):
                out.append(
                    _series(
                        f"node_disk_{name}_total", {**labels, "device": device}, ts, counter(1e5)
                    )
                )
        for device in ("eth0", "lo"):
            for name in ("receive_bytes", "transmit_bytes", "carrier_changes"):
                out.append(
                    _series(
                        f"node_network_{name}_total", {**labels, "device": device}, ts, counter(1e6)
                    )
                )
    return out


def copy_read(series_ids, start_ms: int, end_ms: int) -> int:
    """The store's reader until 2026-11-30: binary COPY, decoded with numpy. Returns the
    number of samples (the decoding itself was one numpy view)."""
    from django.db import connection
    from psycopg import sql

    from webapp.telemetry.store.postgres import COPY_HEADER, COPY_TRAILER, ROW_DTYPE, ms_to_dt

    query = sql.SQL(
        "COPY (SELECT series_id, ts, value FROM telemetry_sample"
        " WHERE series_id = ANY({ids}) AND ts >= {start} AND ts < {end}"
        " ORDER BY series_id, ts) TO STDOUT (FORMAT BINARY)"
    ).format(
        ids=sql.Literal(list(map(int, series_ids))),
        start=sql.Literal(ms_to_dt(start_ms)),
        end=sql.Literal(ms_to_dt(end_ms)),
    )
    with connection.cursor() as cursor, cursor.copy(query) as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    body = data[len(COPY_HEADER) : -len(COPY_TRAILER)]
    return len(np.frombuffer(body, dtype=ROW_DTYPE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--cpus", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    database_url = fresh_database("telltale_bench_windows")
    env = app_env(database_url)
    manage(env, "migrate", "--noinput")
    os.environ.update(env)
    import django

    django.setup()
    from ingest.simulator import HOST_METRIC_NAMES
    from ingest.types import MetricBatch
    from webapp.detection import windows as _windows
    from webapp.telemetry import writer
    from webapp.telemetry.models import Node, Series
    from webapp.telemetry.store import get_store

    rng = np.random.default_rng(5)
    end_ms = int(time.time() * 1000) // STEP_MS * STEP_MS
    ts = np.arange(end_ms - (STEPS + 4) * STEP_MS, end_ms, STEP_MS, dtype=np.int64) + 1_000
    for fleet in (
        stated_fleet(args.nodes, ts, rng),
        exporter_fleet(args.nodes, args.cpus, ts, rng),
    ):
        for i in range(0, len(fleet), 500):
            writer.write_metrics(MetricBatch(series=fleet[i : i + 500]), source="bench", client="b")

    def timed(prefix: str) -> tuple[list[float], np.ndarray]:
        ids = list(Node.objects.filter(name__startswith=prefix).values_list("id", flat=True))
        runs, windows = [], {}
        for _ in range(args.repeat):
            started = time.perf_counter()
            windows = _windows.metric_windows(
                "host", ids, list(HOST_METRIC_NAMES), end_ms, STEPS, STEP_MS
            )
            runs.append(time.perf_counter() - started)
        filled = np.mean([np.isfinite(w).any(axis=0) for w in windows.values()], axis=0)
        return runs, filled

    sids = list(
        Series.objects.filter(node__name__startswith="exporter-").values_list("id", flat=True)
    )
    start_ms = end_ms - (STEPS + 30) * STEP_MS
    store_runs, copy_runs = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        samples = sum(len(t) for t, _ in get_store().read_raw(sids, start_ms, end_ms).values())
        store_runs.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert copy_read(sids, start_ms, end_ms) == samples
        copy_runs.append(time.perf_counter() - started)
    stated, _ = timed("stated-")
    exporter, filled = timed("exporter-")
    median_stated, median_exporter = float(np.median(stated)), float(np.median(exporter))
    emit(
        {
            "benchmark": "model_windows_from_node_exporter",
            "nodes": args.nodes,
            "cpus_per_node": args.cpus,
            "steps": STEPS,
            "series_stated_fleet": Series.objects.filter(node__name__startswith="stated-").count(),
            "series_exporter_fleet": Series.objects.filter(
                node__name__startswith="exporter-"
            ).count(),
            "stated_median_s": round(median_stated, 3),
            "exporter_median_s": round(median_exporter, 3),
            "ratio_exporter_to_stated": round(median_exporter / median_stated, 2),
            "host_metrics_filled_from_exporter": int((filled > 0).sum()),
            "host_metrics": len(HOST_METRIC_NAMES),
            "raw_read": {
                "samples": samples,
                "store_median_s": round(float(np.median(store_runs)), 3),
                "baseline_copy_median_s": round(float(np.median(copy_runs)), 3),
                "ratio_store_to_copy": round(
                    float(np.median(store_runs)) / float(np.median(copy_runs)), 2
                ),
            },
        }
    )


if __name__ == "__main__":
    main()
