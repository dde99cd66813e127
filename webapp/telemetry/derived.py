"""Model inputs from the exporters people already run.

The models read one fixed set of metrics (the simulator's catalogue, which the Telltale
agent also writes). A node that sends Prometheus node_exporter's series instead, by
remote_write or by being scraped, would give them nothing but missing values. Each
derivation here computes one model metric from such series, the way a Prometheus
recording rule would (``rate()`` of counters, sums over CPUs and devices, ratios), on the
models' own time grid. A metric that a target states under the model's name is always
used as stated; a derivation only fills a metric the target does not send.

node_exporter run inside a VM whose series carry a ``vm`` label (see docs/ingest.md) gives
the instance-level metrics, CPU steal included; run on a node it gives the node's.

Pure numpy: the caller reads the series and their samples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ingest.agent.collector import VIRTUAL_DISK_PREFIXES, VIRTUAL_NIC_PREFIXES

# Prometheus' rate() assumes a counter that went down was reset to 0. A gap this long
# between two samples is missing data, not one slow interval.
MAX_RATE_GAP_MS = 10 * 60_000
# How far before the first grid step a counter's previous sample is looked for.
RATE_LOOKBACK_MS = 5 * 60_000

# Besides the agent's: bridges, taps, overlay and tunnel devices, bonds and VLANs carry
# traffic that also crosses a physical NIC, so counting them would count it twice. A bond's
# members are physical and are counted; the bond is not (its counters are their sum). The
# agent reads which NICs are virtual from sysfs; an exporter's series say only the name.
VIRTUAL_NICS = re.compile(
    "^(" + "|".join(VIRTUAL_NIC_PREFIXES) + "|tap|vnet|virbr|vmbr|docker|br-|br[0-9]|cali|"
    "flannel|cni|kube-|cilium|weave|lxc|ovs|tun|vxlan|genev|gre|ipip|sit|ip6|wg|bond|team|"
    "vlan|macvtap|dummy|ifb)"
    r"|.*\.[0-9]+$"  # eth0.100: a VLAN on eth0
)
# Partitions are counted again on their disk (node_exporter leaves them out by default;
# OpenTelemetry's host metrics and psutil do not).
VIRTUAL_DISKS = re.compile(
    "^(" + "|".join(re.escape(p) for p in VIRTUAL_DISK_PREFIXES) + ")"
    r"|^((s|v|xv|h)d[a-z]+\d+|nvme\d+n\d+p\d+|mmcblk\d+p\d+)$"
)


@dataclass(frozen=True)
class Source:
    """The series of one metric that a derivation reads, combined into one value per step."""

    metric: str
    # Labels that must equal these values (or be one of a tuple of them).
    match: tuple[tuple[str, str | tuple[str, ...]], ...] = ()
    exclude: tuple[tuple[str, re.Pattern], ...] = ()  # labels that must not match these
    rate: bool = False  # a counter: its per-second increase
    combine: str = "sum"  # over the matching series at one step: sum | mean | max | count

    def matches(self, labels: dict) -> bool:
        return all(
            labels.get(k) in v if isinstance(v, tuple) else labels.get(k) == v
            for k, v in self.match
        ) and not any(pattern.match(labels.get(k, "")) for k, pattern in self.exclude)


@dataclass(frozen=True)
class Derivation:
    metric: str  # the model's metric it fills
    sources: tuple[Source, ...]
    formula: Callable[..., np.ndarray]  # the sources' step arrays, in order → values
    origin: str  # where the sources come from, for people


def newest_in_step(ts: np.ndarray, values: np.ndarray, times: np.ndarray, step_ms: int):
    """At each grid time, the newest sample of the step that ends there; NaN where none."""
    if not len(ts):
        return np.full(len(times), np.nan)
    idx = np.searchsorted(ts, times, side="right") - 1
    ok = idx >= 0
    safe = np.where(ok, idx, 0)
    ok &= ts[safe] > times - step_ms
    return np.where(ok, values[safe], np.nan)


def per_second_rates(ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A counter's per-second increase between consecutive samples, stamped at the later
    one. A drop is a reset (the increase is the new value, as Prometheus assumes); a gap
    longer than ``MAX_RATE_GAP_MS`` gives no rate."""
    if len(ts) < 2:
        return ts[:0], values[:0]
    dt = np.diff(ts) / 1000.0
    dv = np.diff(values)
    increase = np.where(dv < 0, values[1:], dv)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where((dt > 0) & (np.diff(ts) <= MAX_RATE_GAP_MS), increase / dt, np.nan)
    return ts[1:], rates


def source_on_grid(
    source: Source,
    series: Iterable[tuple[dict, np.ndarray, np.ndarray]],
    times: np.ndarray,
    step_ms: int,
) -> np.ndarray | None:
    """One value per grid time from the matching (labels, ts, values) series; None when no
    series matches, NaN at steps where none has a sample."""
    columns = []
    for labels, ts, values in series:
        if not source.matches(labels):
            continue
        if source.rate:
            ts, values = per_second_rates(ts, values)
        columns.append(newest_in_step(ts, values, times, step_ms))
    if not columns:
        return None
    stack = np.vstack(columns)
    present = np.isfinite(stack).any(axis=0)
    filled = np.where(np.isfinite(stack), stack, 0.0)
    if source.combine == "sum":
        out = filled.sum(axis=0)
    elif source.combine == "mean":
        out = filled.sum(axis=0) / np.maximum(np.isfinite(stack).sum(axis=0), 1)
    elif source.combine == "count":
        out = np.isfinite(stack).sum(axis=0).astype(np.float64)
    elif source.combine == "max":
        out = np.where(np.isfinite(stack), stack, -np.inf).max(axis=0)
    else:
        raise ValueError(f"unknown combine {source.combine!r}")
    return np.where(present, out, np.nan)


def derive(
    derivation: Derivation,
    series: dict[str, list[tuple[dict, np.ndarray, np.ndarray]]],
    times: np.ndarray,
    step_ms: int,
) -> np.ndarray | None:
    """The derived metric on the grid from ``{metric: [(labels, ts, values)]}``; None when a
    source is absent, so the next derivation of the metric can be tried."""
    arrays = []
    for source in derivation.sources:
        values = source_on_grid(source, series.get(source.metric, ()), times, step_ms)
        if values is None:
            return None
        arrays.append(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(derivation.formula(*arrays), dtype=np.float64)
    return np.where(np.isfinite(out), out, np.nan)


def first_derived(
    candidates: Iterable[Derivation],
    series: dict[str, list[tuple[dict, np.ndarray, np.ndarray]]],
    times: np.ndarray,
    step_ms: int,
) -> tuple[Derivation, np.ndarray] | None:
    """The first of ``candidates`` (one metric's derivations, in order) that gives a value
    at any grid time, with its values; None when none does."""
    for derivation in candidates:
        values = derive(derivation, series, times, step_ms)
        if values is not None and np.isfinite(values).any():
            return derivation, values
    return None


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


NODE_EXPORTER = "node_exporter"
NODE_CPU = "node_cpu_seconds_total"


def _cpu_mode(mode: str) -> Source:
    # Each CPU spends one second per second across its modes, so the mean rate of one
    # mode over the CPUs is that mode's share of the machine.
    return Source(NODE_CPU, (("mode", mode),), rate=True, combine="mean")


def _disk(metric: str, combine: str = "sum") -> Source:
    return Source(metric, exclude=(("device", VIRTUAL_DISKS),), rate=True, combine=combine)


def _nic(metric: str, rate: bool = True) -> Source:
    return Source(metric, exclude=(("device", VIRTUAL_NICS),), rate=rate)


def _root_fs(metric: str) -> Source:
    return Source(metric, (("mountpoint", "/"),))


def _used_fs(size, free, avail):
    # As df: blocks reserved for root count as neither used nor available.
    return _clip01((size - free) / (size - free + avail))


def _cpu_busy(idle: Source, iowait: Source):
    return (idle, iowait), lambda idle, iowait: _clip01(1.0 - idle - iowait)


CPU_BUSY = _cpu_busy(_cpu_mode("idle"), _cpu_mode("iowait"))
MEMORY_USED = (
    (Source("node_memory_MemAvailable_bytes"), Source("node_memory_MemTotal_bytes")),
    lambda available, total: _clip01(1.0 - available / total),
)
ROOT_FS_USED = (
    tuple(_root_fs(f"node_filesystem_{name}_bytes") for name in ("size", "free", "avail")),
    _used_fs,
)


def _one(metric: str, sources_and_formula, origin: str = NODE_EXPORTER) -> Derivation:
    sources, formula = sources_and_formula
    return Derivation(metric, tuple(sources), formula, origin)


def _same(metric: str, source: Source, origin: str = NODE_EXPORTER) -> Derivation:
    return Derivation(metric, (source,), lambda x: x, origin)


def _shared(prefix: str) -> list[Derivation]:
    """What node_exporter gives at both levels, under the level's metric names."""
    fs_name = "vm_disk_used_ratio" if prefix == "vm" else "host_filesystem_utilization_ratio"
    return [
        _one(f"{prefix}_cpu_utilization_ratio", CPU_BUSY),
        _same(f"{prefix}_cpu_steal_ratio", _cpu_mode("steal")),
        _one(f"{prefix}_memory_utilization_ratio", MEMORY_USED),
        _same(f"{prefix}_disk_read_bytes_per_second", _disk("node_disk_read_bytes_total")),
        _same(f"{prefix}_disk_write_bytes_per_second", _disk("node_disk_written_bytes_total")),
        _one(fs_name, ROOT_FS_USED),
        _same(
            f"{prefix}_network_receive_bytes_per_second",
            _nic("node_network_receive_bytes_total"),
        ),
        _same(
            f"{prefix}_network_transmit_bytes_per_second",
            _nic("node_network_transmit_bytes_total"),
        ),
    ]


OTEL = "OpenTelemetry"
# OpenTelemetry host metrics (the Collector's hostmetrics receiver, the Python
# system-metrics instrumentation) as the OTLP receiver names them: dots become
# underscores, monotonic sums end in _total, no unit suffix. The CPU mode attribute was
# ``state`` before the semantic conventions renamed it ``cpu.mode``.
OTEL_CPU = "system_cpu_time_total"
OTEL_MODE_LABELS = ("state", "cpu_mode")


def _otel_cpu(label: str, modes: str | tuple[str, ...]) -> Source:
    return Source(OTEL_CPU, ((label, modes),), rate=True, combine="mean")


def _otel_cpu_busy(prefix: str) -> list[Derivation]:
    """Busy as the agent counts it where the wait mode is reported, else all but idle."""
    out = []
    for label in OTEL_MODE_LABELS:
        out.append(
            _one(
                f"{prefix}_cpu_utilization_ratio",
                _cpu_busy(_otel_cpu(label, "idle"), _otel_cpu(label, ("wait", "iowait"))),
                OTEL,
            )
        )
    for label in OTEL_MODE_LABELS:
        out.append(
            Derivation(
                f"{prefix}_cpu_utilization_ratio",
                (_otel_cpu(label, "idle"),),
                lambda idle: _clip01(1.0 - idle),
                OTEL,
            )
        )
    return out


def _otel_shared(prefix: str) -> list[Derivation]:
    fs_name = "vm_disk_used_ratio" if prefix == "vm" else "host_filesystem_utilization_ratio"
    usage = "system_memory_usage"
    return [
        *_otel_cpu_busy(prefix),
        *(
            _same(f"{prefix}_cpu_steal_ratio", _otel_cpu(label, "steal"), OTEL)
            for label in OTEL_MODE_LABELS
        ),
        _same(
            f"{prefix}_memory_utilization_ratio",
            Source("system_memory_utilization", (("state", "used"),)),
            OTEL,
        ),
        _one(
            f"{prefix}_memory_utilization_ratio",
            (
                (
                    Source(usage, (("state", "used"),)),
                    # Every state but slab_unreclaimable, which "used" already holds.
                    Source(
                        usage,
                        (("state", ("used", "free", "cached", "buffered", "slab_reclaimable")),),
                    ),
                ),
                lambda used, total: _clip01(used / total),
            ),
            OTEL,
        ),
        *(
            _same(
                f"{prefix}_disk_{direction}_bytes_per_second",
                Source(
                    "system_disk_io_total",
                    (("direction", direction),),
                    (("device", VIRTUAL_DISKS),),
                    rate=True,
                ),
                OTEL,
            )
            for direction in ("read", "write")
        ),
        _one(
            fs_name,
            (
                (
                    Source("system_filesystem_usage", (("mountpoint", "/"), ("state", "used"))),
                    Source(
                        "system_filesystem_usage",
                        (("mountpoint", "/"), ("state", ("used", "free"))),
                    ),
                ),
                lambda used, total: _clip01(used / total),
            ),
            OTEL,
        ),
        *(
            _same(
                f"{prefix}_network_{direction}_bytes_per_second",
                Source(
                    "system_network_io_total",
                    (("direction", direction),),
                    (("device", VIRTUAL_NICS),),
                    rate=True,
                ),
                OTEL,
            )
            for direction in ("receive", "transmit")
        ),
    ]


DERIVATIONS: tuple[Derivation, ...] = (
    *_shared("vm"),
    *_shared("host"),
    *_otel_shared("vm"),
    *_otel_shared("host"),
    _same("vm_cpu_iowait_ratio", _cpu_mode("iowait")),
    _one(
        "vm_swap_used_bytes",
        (
            (Source("node_memory_SwapTotal_bytes"), Source("node_memory_SwapFree_bytes")),
            lambda total, free: np.maximum(total - free, 0.0),
        ),
    ),
    _same("vm_tcp_retransmits_per_second", Source("node_netstat_Tcp_RetransSegs", rate=True)),
    _one(
        "vm_ipc",
        (
            (
                Source("node_perf_instructions_total", rate=True),
                Source("node_perf_cpucycles_total", rate=True),
            ),
            lambda instructions, cycles: instructions / cycles,
        ),
    ),
    _same("vm_llc_misses_per_second", Source("node_perf_cache_misses_total", rate=True)),
    _same("host_load1", Source("node_load1")),
    _same("host_load1", Source("system_cpu_load_average_1m"), OTEL),
    _same(
        "vm_cpu_iowait_ratio",
        _otel_cpu("state", ("wait", "iowait")),
        OTEL,
    ),
    _same("vm_cpu_iowait_ratio", _otel_cpu("cpu_mode", "wait"), OTEL),
    _same("vm_swap_used_bytes", Source("system_paging_usage", (("state", "used"),)), OTEL),
    # The agent's name for it before the models settled on theirs.
    _same("host_disk_io_utilization_ratio", Source("host_disk_io_time_ratio"), "Telltale agent"),
    _one(
        "host_disk_io_utilization_ratio",
        (
            (_disk("node_disk_io_time_seconds_total", combine="max"),),
            # The busiest disk is the bottleneck, as the agent reports it.
            _clip01,
        ),
    ),
    _one(
        "host_disk_io_utilization_ratio",
        (
            (
                Source(
                    "system_disk_io_time_total",
                    exclude=(("device", VIRTUAL_DISKS),),
                    rate=True,
                    combine="max",
                ),
            ),
            _clip01,
        ),
        OTEL,
    ),
    _same("host_ecc_errors_total", Source("node_edac_correctable_errors_total")),
    _same("host_nic_link_flaps_total", _nic("node_network_carrier_changes_total", rate=False)),
    _same("host_temperature_celsius", Source("node_hwmon_temp_celsius", combine="max")),
    # The offset of a clock NTP does not discipline is stale, not a measurement: left out,
    # as the agent leaves it out.
    _one(
        "host_clock_offset_seconds",
        (
            (Source("node_timex_offset_seconds"), Source("node_timex_sync_status")),
            lambda offset, synced: np.where(synced == 1, offset, np.nan),
        ),
    ),
    # Telltale's scraper writes ``up`` for each target on the node (as Prometheus does, and
    # forwards by remote_write): the node answered if any of them did.
    _same("host_agent_up", Source("up", combine="max"), "scrape up"),
)


# The node's capacity as its own telemetry states it, in the units people state it in
# (models.interference.features.CAPACITY_UNITS: cores, GB, MB, Gbit/s). Memory and disk
# bandwidth have no common exporter: an admin states them.
AGENT = "Telltale agent"


def _scaled(factor: float):
    return lambda x: x * factor


CAPACITY_DERIVATIONS: tuple[Derivation, ...] = (
    Derivation("cores", (Source("host_cpu_count"),), _scaled(1.0), AGENT),
    Derivation(
        "cores",
        (Source(NODE_CPU, (("mode", "idle"),), combine="count"),),
        _scaled(1.0),
        NODE_EXPORTER,
    ),
    *(
        Derivation(
            "cores", (Source(OTEL_CPU, ((label, "idle"),), combine="count"),), _scaled(1.0), OTEL
        )
        for label in OTEL_MODE_LABELS
    ),
    Derivation("mem_gb", (Source("host_memory_total_bytes"),), _scaled(2.0**-30), AGENT),
    Derivation("mem_gb", (Source("node_memory_MemTotal_bytes"),), _scaled(2.0**-30), NODE_EXPORTER),
    Derivation("llc_mb", (Source("host_llc_bytes"),), _scaled(2.0**-20), AGENT),
    Derivation("net", (Source("host_network_speed_bytes"),), _scaled(8e-9), AGENT),
    Derivation(
        "net", (_nic("node_network_speed_bytes", rate=False),), _scaled(8e-9), NODE_EXPORTER
    ),
)


def derivations_for(
    metric_names: Iterable[str], among: Iterable[Derivation] = DERIVATIONS
) -> dict[str, tuple[Derivation, ...]]:
    """{model metric (or capacity figure): its derivations, in the order they are tried}."""
    wanted = set(metric_names)
    out: dict[str, list[Derivation]] = {}
    for derivation in among:
        if derivation.metric in wanted:
            out.setdefault(derivation.metric, []).append(derivation)
    return {metric: tuple(found) for metric, found in out.items()}


def sources_by_metric(derivations: dict[str, tuple[Derivation, ...]]) -> dict[str, list[Source]]:
    """{series metric: the sources that read it} for these derivations."""
    out: dict[str, list[Source]] = {}
    for found in derivations.values():
        for derivation in found:
            for source in derivation.sources:
                out.setdefault(source.metric, []).append(source)
    return out


def source_metrics(derivations: dict[str, tuple[Derivation, ...]]) -> set[str]:
    return set(sources_by_metric(derivations))
