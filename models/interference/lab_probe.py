"""What the lab reads from this host: per-process-tree vm_* metrics, host_* metrics and the
node's capacity, the same quantities the app ingests from /proc-based exporters.

Rates come from counter differences between two readings kept in a ``prev`` dict, so the
first reading of each source only sets the baseline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from ingest.simulator import HOST_METRIC_NAMES, VM_METRIC_NAMES

VM_INDEX = {n: i for i, n in enumerate(VM_METRIC_NAMES)}
HOST_INDEX = {n: i for i, n in enumerate(HOST_METRIC_NAMES)}


@dataclass
class HostSample:
    array: np.ndarray  # [len(HOST_METRIC_NAMES)]
    steal: float
    iowait: float


def _cpu_total(t: psutil._common.namedtuple) -> float:  # type: ignore[name-defined]
    # guest time is already counted in user on Linux
    return sum(getattr(t, f) for f in t._fields if f not in ("guest", "guest_nice"))


def host_sample(prev: dict) -> HostSample | None:
    now = time.monotonic()
    cpu = psutil.cpu_times()
    disk = psutil.disk_io_counters()
    net = psutil.net_io_counters()
    last = prev.get("host")
    prev["host"] = (now, cpu, disk, net)
    if last is None:
        return None
    t0, cpu0, disk0, net0 = last
    dt = max(now - t0, 1e-3)
    total = max(_cpu_total(cpu) - _cpu_total(cpu0), 1e-9)

    def share(field: str) -> float:
        return max(getattr(cpu, field, 0.0) - getattr(cpu0, field, 0.0), 0.0) / total

    idle = share("idle") + share("iowait")
    out = np.full(len(HOST_METRIC_NAMES), np.nan)
    vmem = psutil.virtual_memory()
    out[HOST_INDEX["host_cpu_utilization_ratio"]] = min(max(1 - idle, 0.0), 1.0)
    out[HOST_INDEX["host_cpu_steal_ratio"]] = share("steal")
    out[HOST_INDEX["host_memory_utilization_ratio"]] = 1 - vmem.available / vmem.total
    out[HOST_INDEX["host_load1"]] = os.getloadavg()[0]
    if disk is not None and disk0 is not None:
        out[HOST_INDEX["host_disk_read_bytes_per_second"]] = (
            disk.read_bytes - disk0.read_bytes
        ) / dt
        out[HOST_INDEX["host_disk_write_bytes_per_second"]] = (
            disk.write_bytes - disk0.write_bytes
        ) / dt
        busy = getattr(disk, "busy_time", None)
        if busy is not None:
            out[HOST_INDEX["host_disk_io_utilization_ratio"]] = min(
                max((busy - disk0.busy_time) / 1000 / dt, 0.0), 1.0
            )
    out[HOST_INDEX["host_filesystem_utilization_ratio"]] = _fs_used("/")
    out[HOST_INDEX["host_network_receive_bytes_per_second"]] = (
        net.bytes_recv - net0.bytes_recv
    ) / dt
    out[HOST_INDEX["host_network_transmit_bytes_per_second"]] = (
        net.bytes_sent - net0.bytes_sent
    ) / dt
    out[HOST_INDEX["host_temperature_celsius"]] = _temperature()
    out[HOST_INDEX["host_agent_up"]] = 1.0
    return HostSample(out, share("steal"), share("iowait"))


def _fs_used(path: str) -> float:
    usage = shutil.disk_usage(path)
    return usage.used / usage.total if usage.total else float("nan")


def _temperature() -> float:
    read = getattr(psutil, "sensors_temperatures", None)
    temps = read() if read else {}
    values = [t.current for entries in (temps or {}).values() for t in entries if t.current]
    return float(max(values)) if values else float("nan")


def _swap_bytes(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmSwap:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def tree_sample(
    pid: int, workers: int, prev: dict, key: str, host: HostSample | None = None
) -> np.ndarray | None:
    """vm_* metrics [M] of a process and its descendants (NaN where not measurable here)."""
    now = time.monotonic()
    cpu = rss = swap = read = write = fds = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = []
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
                io = p.io_counters()
                read, write = read + io.read_bytes, write + io.write_bytes
                fds += p.num_fds()
            swap += _swap_bytes(p.pid)
        except psutil.Error:
            continue  # a worker exited between listing and reading
    last = prev.get(key)
    prev[key] = (now, cpu, read, write)
    if last is None or host is None or not procs:
        return None
    t0, cpu0, read0, write0 = last
    dt = max(now - t0, 1e-3)
    out = np.full(len(VM_METRIC_NAMES), np.nan)
    out[VM_INDEX["vm_cpu_utilization_ratio"]] = min(max((cpu - cpu0) / dt / workers, 0.0), 1.0)
    out[VM_INDEX["vm_cpu_steal_ratio"]] = host.steal
    out[VM_INDEX["vm_cpu_iowait_ratio"]] = host.iowait
    out[VM_INDEX["vm_memory_utilization_ratio"]] = rss / psutil.virtual_memory().total
    out[VM_INDEX["vm_swap_used_bytes"]] = swap
    out[VM_INDEX["vm_disk_read_bytes_per_second"]] = max(read - read0, 0.0) / dt
    out[VM_INDEX["vm_disk_write_bytes_per_second"]] = max(write - write0, 0.0) / dt
    out[VM_INDEX["vm_disk_used_ratio"]] = _fs_used(tempfile.gettempdir())
    out[VM_INDEX["vm_open_fds"]] = fds
    out[VM_INDEX["vm_process_restarts_total"]] = 0.0
    return out


def _llc_mb() -> float:
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    sizes = []
    for idx in sorted(base.glob("index*")):
        try:
            level = int((idx / "level").read_text())
            size = (idx / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        mult = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}.get(size[-1:], 1 / 1024 / 1024)
        sizes.append((level, float(size.rstrip("KMG")) * mult))
    if sizes:
        return max(sizes)[1]
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cache size"):
                return float(line.split(":")[1].split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def _membw_probe() -> float:
    """Copy bandwidth of one core in bytes/s (read + write), best of three 64 MB copies."""
    src = np.ones(8 * 1024 * 1024)
    dst = np.empty_like(src)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = max(best, 2 * src.nbytes / (time.perf_counter() - t))
    return best


def _disk_probe() -> float:
    """Write speed of the temp directory's disk in bytes/s (16 MB, fsync'd)."""
    data = os.urandom(16 * 1024 * 1024)
    with tempfile.NamedTemporaryFile(prefix="telltale-lab-") as fh:
        t = time.perf_counter()
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
        return len(data) / (time.perf_counter() - t)


def _nic_bytes_per_second() -> tuple[float, str]:
    for dev in sorted(Path("/sys/class/net").glob("*")):
        if dev.name == "lo":
            continue
        try:
            mbit = float((dev / "speed").read_text())
        except (OSError, ValueError):
            continue
        if mbit > 0:
            return mbit * 1e6 / 8, f"{dev.name} link speed"
    return 1e9 / 8, "nominal 1 Gbit/s (no link speed reported)"


def host_capacity() -> dict[str, float]:
    """Capacity in the units the simulator uses: cores, GB, MB, bytes/s for the last three."""
    net, _ = _nic_bytes_per_second()
    return {
        "cores": float(os.cpu_count() or 1),
        "mem_gb": psutil.virtual_memory().total / 1e9,
        "llc_mb": _llc_mb(),
        "membw": _membw_probe(),
        "net": net,
        "disk": _disk_probe(),
    }


def capacity_sources() -> dict[str, str]:
    return {
        "cores": "os.cpu_count()",
        "mem_gb": "psutil.virtual_memory().total",
        "llc_mb": "/sys/devices/system/cpu/cpu0/cache (largest level) or /proc/cpuinfo",
        "membw": "probe: best of three 64 MB numpy copies on one core",
        "net": _nic_bytes_per_second()[1],
        "disk": "probe: 16 MB fsync'd write to the temp directory",
    }
