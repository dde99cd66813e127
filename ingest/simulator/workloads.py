"""Workload archetypes and their load patterns.

Each archetype is modelled on a class of real cloud application (the CloudSuite and
CloudFormer workload families). Per vCPU at nominal load it declares what it consumes of
each shared resource (which is the pressure it puts on neighbours), how sensitive its
performance is to contention on each resource, its perf-counter profile, and whether it
serves requests (latency and throughput exist) or runs as a batch job (they do not).

The numbers are order-of-magnitude figures from public benchmark characterisations, not
measurements of any one system; what matters for learning is their relative structure
(memcached is LLC- and network-bound, a database is disk-bound, transcoding is
compute-bound), which matches the literature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.simulator.config import SECONDS_PER_DAY

PATTERNS: tuple[str, ...] = ("static", "monotonic", "diurnal", "bursty", "periodic")
MB = 1e6


@dataclass(frozen=True)
class Archetype:
    name: str
    description: str
    cpu_base: float  # fraction of its vCPUs busy at load 1
    mem_util: float  # resident fraction of its memory
    mem_gb_per_vcpu: float
    llc_mb_per_vcpu: float  # cache footprint
    membw_gbps_per_vcpu: float
    net_rx_mbps_per_vcpu: float  # MB/s
    net_tx_mbps_per_vcpu: float
    disk_read_mbps_per_vcpu: float
    disk_write_mbps_per_vcpu: float
    ipc: float  # instructions per cycle when running alone
    mpki: float  # LLC misses per kilo-instruction when running alone
    # Sensitivity of performance to contention on cpu, llc, membw, net, disk (0 = immune)
    sensitivity: tuple[float, float, float, float, float]
    latency_s: float | None  # request latency alone at light load; None for batch jobs
    rps_per_vcpu: float | None
    fds: int  # open file descriptors at load 1
    patterns: tuple[float, float, float, float, float]  # weights over PATTERNS
    log_rate: float  # background log lines per second at load 1
    service_names: tuple[str, ...]

    @property
    def serves_requests(self) -> bool:
        return self.latency_s is not None


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "kv_cache", "in-memory key-value cache (memcached/Redis)",
        0.30, 0.78, 8.0, 2.5, 1.0, 6.0, 12.0, 0.05, 0.3, 1.1, 8.0,
        (0.4, 0.9, 0.6, 0.7, 0.0), 0.0008, 15000.0, 3000,
        (0.1, 0.05, 0.7, 0.15, 0.0), 0.012, ("session-cache", "catalog-cache", "rate-limit-kv"),
    ),
    Archetype(
        "oltp_db", "transactional database (PostgreSQL/MySQL)",
        0.40, 0.82, 8.0, 2.0, 1.5, 2.0, 3.0, 8.0, 12.0, 1.3, 5.0,
        (0.6, 0.6, 0.5, 0.3, 0.9), 0.004, 800.0, 1500,
        (0.1, 0.1, 0.7, 0.1, 0.0), 0.04, ("orders-db", "accounts-db", "inventory-db"),
    ),
    Archetype(
        "web_serving", "web front end and application server (nginx + app)",
        0.38, 0.55, 4.0, 1.0, 0.5, 3.0, 8.0, 0.3, 0.5, 1.6, 2.0,
        (0.8, 0.3, 0.2, 0.6, 0.1), 0.025, 300.0, 2500,
        (0.05, 0.05, 0.75, 0.15, 0.0), 0.12, ("storefront", "checkout-api", "account-web"),
    ),
    Archetype(
        "web_search", "search serving (Elasticsearch/Solr)",
        0.50, 0.70, 8.0, 2.0, 2.0, 1.0, 2.0, 3.0, 0.5, 1.4, 6.0,
        (0.7, 0.8, 0.7, 0.3, 0.3), 0.06, 60.0, 1200,
        (0.05, 0.05, 0.75, 0.15, 0.0), 0.06, ("product-search", "docs-search"),
    ),
    Archetype(
        "inmem_analytics", "in-memory analytics (Spark)",
        0.65, 0.85, 8.0, 3.0, 4.0, 2.0, 2.0, 1.0, 2.0, 1.2, 15.0,
        (0.5, 0.7, 0.9, 0.2, 0.2), None, None, 800,
        (0.1, 0.1, 0.2, 0.4, 0.2), 0.05, ("spark-reports", "spark-features"),
    ),
    Archetype(
        "graph_analytics", "graph analytics (GraphX/GraphFrames)",
        0.60, 0.80, 8.0, 3.5, 3.0, 1.0, 1.0, 0.5, 0.5, 0.7, 25.0,
        (0.4, 0.9, 0.8, 0.3, 0.0), None, None, 400,
        (0.1, 0.1, 0.1, 0.4, 0.3), 0.04, ("fraud-graph", "reco-graph"),
    ),
    Archetype(
        "media_streaming", "media streaming server (segment delivery)",
        0.28, 0.50, 4.0, 0.8, 0.8, 1.0, 40.0, 20.0, 0.5, 1.8, 3.0,
        (0.3, 0.2, 0.3, 0.9, 0.6), 0.015, 40.0, 4000,
        (0.05, 0.05, 0.8, 0.1, 0.0), 0.08, ("vod-edge", "live-edge"),
    ),
    Archetype(
        "ml_training", "machine-learning training (CPU data-parallel)",
        0.85, 0.70, 4.0, 2.0, 5.0, 5.0, 1.0, 6.0, 1.0, 2.2, 4.0,
        (0.8, 0.4, 0.9, 0.3, 0.3), None, None, 300,
        (0.6, 0.1, 0.0, 0.1, 0.2), 0.02, ("ranker-train", "embeddings-train"),
    ),
    Archetype(
        "object_storage", "object storage node (S3-compatible)",
        0.18, 0.45, 4.0, 0.5, 0.5, 8.0, 8.0, 25.0, 15.0, 1.0, 4.0,
        (0.2, 0.1, 0.2, 0.8, 0.9), 0.03, 150.0, 5000,
        (0.1, 0.3, 0.5, 0.1, 0.0), 0.08, ("blob-store", "backup-store"),
    ),
    Archetype(
        "message_broker", "message broker (Kafka/RabbitMQ)",
        0.28, 0.60, 4.0, 1.0, 1.0, 10.0, 20.0, 2.0, 15.0, 1.3, 4.0,
        (0.4, 0.3, 0.3, 0.8, 0.7), 0.005, 2000.0, 6000,
        (0.1, 0.1, 0.7, 0.1, 0.0), 0.03, ("events-kafka", "jobs-rabbit"),
    ),
    Archetype(
        "batch_etl", "batch ETL (extract, transform, load)",
        0.55, 0.60, 4.0, 1.5, 2.0, 3.0, 3.0, 15.0, 20.0, 1.1, 7.0,
        (0.6, 0.4, 0.5, 0.4, 0.8), None, None, 600,
        (0.05, 0.05, 0.1, 0.2, 0.6), 0.05, ("nightly-etl", "billing-etl"),
    ),
    Archetype(
        "video_transcoding", "video transcoding (ffmpeg workers)",
        0.88, 0.50, 2.0, 1.5, 2.5, 2.0, 2.0, 5.0, 5.0, 2.0, 3.0,
        (0.9, 0.5, 0.6, 0.0, 0.2), None, None, 200,
        (0.2, 0.0, 0.2, 0.5, 0.1), 0.03, ("transcode-workers",),
    ),
)  # fmt: skip

ARCHETYPE_INDEX: dict[str, int] = {a.name: i for i, a in enumerate(ARCHETYPES)}


def archetype(name: str) -> Archetype:
    return ARCHETYPES[ARCHETYPE_INDEX[name]]


def archetype_table() -> dict[str, np.ndarray]:
    """Per-archetype parameters as arrays indexed by archetype id, for vectorised lookups."""
    table: dict[str, np.ndarray] = {}
    for attr in (
        "cpu_base", "mem_util", "llc_mb_per_vcpu", "membw_gbps_per_vcpu",
        "net_rx_mbps_per_vcpu", "net_tx_mbps_per_vcpu", "disk_read_mbps_per_vcpu",
        "disk_write_mbps_per_vcpu", "ipc", "mpki", "fds", "log_rate",
    ):  # fmt: skip
        table[attr] = np.array([float(getattr(a, attr)) for a in ARCHETYPES])
    table["sensitivity"] = np.array([a.sensitivity for a in ARCHETYPES])
    table["latency_s"] = np.array([a.latency_s or np.nan for a in ARCHETYPES])
    table["rps_per_vcpu"] = np.array([a.rps_per_vcpu or np.nan for a in ARCHETYPES])
    table["serves"] = np.array([a.serves_requests for a in ARCHETYPES])
    return table


@dataclass(frozen=True)
class LoadParams:
    """Per-instance load pattern parameters, one array entry per instance."""

    pattern: np.ndarray  # index into PATTERNS
    base: np.ndarray  # mean load level (1 = nominal)
    amplitude: np.ndarray  # diurnal/periodic swing, as a fraction of base
    phase_hours: np.ndarray  # local hour of the diurnal peak
    period_s: np.ndarray  # periodic pattern period
    duty: np.ndarray  # fraction of each period that a periodic job runs
    slope_per_day: np.ndarray  # monotonic growth or decay
    burst_rate_per_hour: np.ndarray
    weekend_factor: np.ndarray


def sample_load_params(rng: np.random.Generator, arch_ids: np.ndarray) -> LoadParams:
    n = len(arch_ids)
    weights = np.array([ARCHETYPES[a].patterns for a in arch_ids])
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    pattern = (rng.random(n)[:, None] > cum).sum(axis=1).clip(0, len(PATTERNS) - 1)
    return LoadParams(
        pattern=pattern.astype(np.int8),
        base=rng.uniform(0.45, 0.95, n),
        amplitude=rng.uniform(0.25, 0.6, n),
        # Consumer traffic peaks in the evening, business traffic mid-day.
        phase_hours=np.where(rng.random(n) < 0.5, rng.normal(20.5, 1.0, n), rng.normal(14, 1.5, n)),
        period_s=rng.choice([1800.0, 3600.0, 7200.0, 14400.0], n),
        duty=rng.uniform(0.3, 0.7, n),
        slope_per_day=rng.choice([-1.0, 1.0], n) * rng.uniform(0.05, 0.3, n),
        burst_rate_per_hour=rng.uniform(0.2, 1.0, n),
        weekend_factor=rng.uniform(0.6, 0.95, n),
    )


def deterministic_load(
    params: LoadParams,
    cols: np.ndarray,
    ts: np.ndarray,
    t0: float,
    tz_hours: np.ndarray,
) -> np.ndarray:
    """Load [steps, len(cols)] from the closed-form part of each pattern (bursts added later).

    Closed form in time so that any hour can be produced without the hours before it.
    """
    p = params.pattern[cols]
    base = params.base[cols]
    local = ts[:, None] + tz_hours[None, :] * 3600.0
    hour = (local % SECONDS_PER_DAY) / 3600.0
    # 1970-01-01 was a Thursday: day index 2 and 3 after it are Saturday and Sunday.
    weekday = ((local // SECONDS_PER_DAY + 3) % 7).astype(np.int64)
    weekend = np.where(weekday >= 5, params.weekend_factor[cols][None, :], 1.0)
    amp = params.amplitude[cols][None, :]
    diurnal = (
        1 + amp * np.cos(2 * np.pi * (hour - params.phase_hours[cols][None, :]) / 24)
    ) * weekend
    elapsed_days = (ts[:, None] - t0) / SECONDS_PER_DAY
    monotonic = np.clip(1 + params.slope_per_day[cols][None, :] * elapsed_days, 0.3, 1.6)
    frac = (ts[:, None] % params.period_s[cols][None, :]) / params.period_s[cols][None, :]
    periodic = np.where(frac < params.duty[cols][None, :], 1 + amp, 0.25)
    out = np.ones((len(ts), len(cols)))
    out = np.where(p[None, :] == 1, monotonic, out)
    out = np.where(p[None, :] == 2, diurnal, out)
    out = np.where(p[None, :] == 3, 0.8, out)  # bursty: a calm floor, bursts on top
    out = np.where(p[None, :] == 4, periodic, out)
    return out * base[None, :]


def burst_events(
    rng: np.random.Generator,
    params: LoadParams,
    inst_ids: np.ndarray,
    block_start_step: int,
    steps_in_block: int,
    step_seconds: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bursts starting in one block: (instance, start step, end step, height), absolute steps.

    A burst may run up to half a block into the next one, so a block applies its own
    bursts and its predecessor's.
    """
    bursty = inst_ids[params.pattern[inst_ids] == 3]
    rate = params.burst_rate_per_hour[bursty] * steps_in_block * step_seconds / 3600
    counts = rng.poisson(rate)
    inst = np.repeat(bursty, counts)
    n = len(inst)
    start = block_start_step + rng.integers(0, steps_in_block, n)
    length = np.minimum(
        rng.exponential(600 / step_seconds, n).astype(np.int64) + 2, steps_in_block // 2
    )
    height = rng.uniform(0.5, 1.5, n)
    return inst, start, start + length, height


def apply_bursts(
    load: np.ndarray,
    cols: np.ndarray,
    block_start_step: int,
    bursts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    inst, start, end, height = bursts
    pos = np.searchsorted(cols, inst)
    present = (pos < len(cols)) & (cols[np.minimum(pos, len(cols) - 1)] == inst)
    steps = load.shape[0]
    for j, s0, s1, h in zip(
        pos[present], start[present], end[present], height[present], strict=True
    ):
        lo, hi = max(int(s0) - block_start_step, 0), min(int(s1) - block_start_step, steps)
        if hi > lo:
            load[lo:hi, j] += h
