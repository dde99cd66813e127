"""Series that exporters send, as remote_write delivers them, for tests of what the app
derives from them."""

from __future__ import annotations

import time

from tests.conftest import series_samples

STEP = 15_000
STEPS = 20
END = (int(time.time() * 1000) // STEP) * STEP
SCRAPES = [END - STEP * k - 3_000 for k in range(STEPS + 4)][::-1]


def counter_series(metric, labels, per_second):
    return series_samples(metric, labels, [(t, per_second * t / 1000.0) for t in SCRAPES])


def gauge_series(metric, labels, value):
    return series_samples(metric, labels, [(t, value) for t in SCRAPES])


def node_exporter_series(labels, idle, steal=0.0):
    """What node_exporter on a two-CPU machine exposes, as remote_write sends it."""
    out = []
    for cpu in ("0", "1"):
        for mode, share in (("idle", idle), ("iowait", 0.05), ("steal", steal)):
            out.append(
                counter_series(
                    "node_cpu_seconds_total", {**labels, "cpu": cpu, "mode": mode}, share
                )
            )
    out += [
        gauge_series("node_memory_MemAvailable_bytes", labels, 2e9),
        gauge_series("node_memory_MemTotal_bytes", labels, 8e9),
        gauge_series("node_load1", labels, 1.25),
        counter_series("node_network_receive_bytes_total", {**labels, "device": "eth0"}, 2e6),
        counter_series("node_network_receive_bytes_total", {**labels, "device": "lo"}, 9e9),
    ]
    return out
