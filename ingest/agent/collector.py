"""Host and top-process metrics read with psutil, as remote_write series."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from ingest.agent import hardware
from ingest.types import SeriesSamples

VIRTUAL_FSTYPES = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs",
    "devpts", "devtmpfs", "efivarfs", "fusectl", "fuse.gvfsd-fuse", "fuse.lxcfs", "fuse.portal",
    "hugetlbfs", "mqueue", "nsfs", "nullfs", "overlay", "proc", "pstore", "ramfs", "rpc_pipefs",
    "securityfs", "squashfs", "sysfs", "tmpfs", "tracefs",
})  # fmt: skip
# Devices whose I/O is already counted on the disks beneath them, or that are not disks.
VIRTUAL_DISK_PREFIXES = ("loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd")
VIRTUAL_NIC_PREFIXES = ("lo", "veth")  # veth traffic also crosses a bridge or real NIC


def _delta_sum(now: dict[str, tuple], before: dict[str, tuple], index: int) -> float | None:
    """Sum of one counter's increase over devices seen both times; None after a reset."""
    total = 0
    for name, values in now.items():
        old = before.get(name)
        if old is not None:
            if values[index] < old[index]:
                return None
            total += values[index] - old[index]
    return total


class Collector:
    """Host and top-process gauges; rates come from counter deltas between two calls."""

    def __init__(
        self,
        node: str,
        labels: dict[str, str] | None = None,
        top_processes: int = 10,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sysfs: Path = hardware.SYSFS,
    ):
        self.base = {**(labels or {}), "node": node}
        self.sysfs = sysfs
        self.top_processes = top_processes
        self._clock, self._wall = clock, wall
        self._prev: dict[str, Any] | None = None
        self._proc_cpu: dict[tuple[int, float], float] = {}

    def collect(self, extra: dict[str, float] | None = None) -> list[SeriesSamples]:
        now_ms = int(self._wall() * 1000)
        at = self._clock()
        out: list[SeriesSamples] = []

        def add(name: str, value: float | None, **labels: str) -> None:
            if value is not None and math.isfinite(value):
                merged = {**self.base, **labels, "__name__": name}
                out.append(SeriesSamples(tuple(sorted(merged.items())), [now_ms], [float(value)]))

        prev = self._prev
        elapsed = at - prev["at"] if prev else 0.0
        cpu = psutil.cpu_times()
        disks, nics = self._disk_counters(), self._nic_counters()
        if prev and elapsed > 0:
            d = {f: max(0.0, getattr(cpu, f) - getattr(prev["cpu"], f)) for f in cpu._fields}
            # Linux counts guest time inside user/nice as well.
            total = sum(v for k, v in d.items() if k not in ("guest", "guest_nice"))
            if total > 0:
                idle = d.get("idle", 0.0) + d.get("iowait", 0.0)
                add("host_cpu_utilization_ratio", min(1.0, max(0.0, 1 - idle / total)))
                add("host_cpu_steal_ratio", d.get("steal", 0.0) / total)
                add("host_cpu_iowait_ratio", d.get("iowait", 0.0) / total)
            for name, i in (("read", 0), ("write", 1)):
                value = _delta_sum(disks, prev["disks"], i)
                add(
                    f"host_disk_{name}_bytes_per_second", None if value is None else value / elapsed
                )
            busy = [
                (v[2] - prev["disks"][n][2]) / 1000 / elapsed
                for n, v in disks.items()
                if n in prev["disks"] and v[2] >= prev["disks"][n][2]
            ]
            # The busiest disk is the bottleneck; a sum over disks is not a ratio.
            add("host_disk_io_time_ratio", min(1.0, max(busy, default=0.0)))
            for name, i in (("receive", 0), ("transmit", 1), ("errors", 2)):
                value = _delta_sum(nics, prev["nics"], i)
                unit = "" if name == "errors" else "bytes_"
                metric = f"host_network_{name}_{unit}per_second"
                add(metric, None if value is None else value / elapsed)
        for minutes, value in zip((1, 5, 15), psutil.getloadavg(), strict=True):
            add(f"host_load{minutes}", value)
        vm = psutil.virtual_memory()
        used = vm.total - vm.available  # "used" differs per platform; available does not
        add("host_memory_utilization_ratio", used / vm.total if vm.total else None)
        add("host_memory_used_bytes", used)
        add("host_memory_total_bytes", vm.total)
        add("host_swap_used_bytes", psutil.swap_memory().used)
        self._filesystems(add)
        add("host_open_file_descriptors", _open_files())
        add("host_processes", len(psutil.pids()))
        add("host_uptime_seconds", self._wall() - psutil.boot_time())
        add("host_cpu_count", psutil.cpu_count() or 1)
        for name, value in hardware.read(self.sysfs).items():
            add(name, value)
        # What a scrape of the node would say: it answered. The anomaly model reads it, and
        # a node that stops sending is judged by the missing samples that follow.
        add("host_agent_up", 1.0)
        self._processes(add, elapsed if prev else 0.0)
        for name, value in (extra or {}).items():
            add(name, value)
        self._prev = {"at": at, "cpu": cpu, "disks": disks, "nics": nics}
        return out

    @staticmethod
    def _disk_counters() -> dict[str, tuple]:
        counters = psutil.disk_io_counters(perdisk=True, nowrap=True) or {}
        # Partitions are counted again on their disk; /sys/block lists whole disks only.
        whole = set(os.listdir("/sys/block")) if os.path.isdir("/sys/block") else set(counters)
        return {
            n: (c.read_bytes, c.write_bytes, getattr(c, "busy_time", 0))
            for n, c in counters.items()
            if n in whole and not n.startswith(VIRTUAL_DISK_PREFIXES)
        }

    def _nic_counters(self) -> dict[str, tuple]:
        counters = psutil.net_io_counters(pernic=True, nowrap=True) or {}
        # Bridges, bonds, VLANs and container interfaces carry traffic a physical NIC also
        # counts; sysfs says which they are (the prefixes cover hosts without it).
        virtual = hardware.virtual_nic_names(self.sysfs)
        return {
            n: (c.bytes_recv, c.bytes_sent, c.errin + c.errout)
            for n, c in counters.items()
            if n not in virtual and not n.startswith(VIRTUAL_NIC_PREFIXES)
        }

    @staticmethod
    def _filesystems(add: Callable[..., None]) -> None:
        seen: set[str] = set()
        for part in psutil.disk_partitions(all=False):
            if part.fstype in VIRTUAL_FSTYPES or part.device in seen:
                continue  # the same device bind-mounted twice is one filesystem
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue
            if usage.total <= 0:
                continue
            seen.add(part.device)
            # As df: reserved blocks count as neither used nor available.
            usable = usage.used + usage.free
            ratio = usage.used / usable if usable else 0.0
            add("host_filesystem_utilization_ratio", ratio, mountpoint=part.mountpoint)
            add("host_filesystem_free_bytes", usage.free, mountpoint=part.mountpoint)

    def _processes(self, add: Callable[..., None], elapsed: float) -> None:
        ncpu = psutil.cpu_count() or 1
        current: dict[tuple[int, float], float] = {}
        ranked: list[tuple[float, psutil.Process, str]] = []
        for proc in psutil.process_iter(["name", "cpu_times", "create_time"]):
            info = proc.info
            times, created = info.get("cpu_times"), info.get("create_time")
            if times is None or created is None:
                continue  # access denied
            key = (proc.pid, created)  # pids are reused; the start time tells them apart
            current[key] = times.user + times.system
            before = self._proc_cpu.get(key)
            if before is not None and elapsed > 0:
                ratio = max(0.0, current[key] - before) / elapsed / ncpu
                ranked.append((min(1.0, ratio), proc, info.get("name") or str(proc.pid)))
        self._proc_cpu = current
        ranked.sort(key=lambda row: row[0], reverse=True)
        for ratio, proc, name in ranked[: self.top_processes]:
            labels = {"process": name, "pid": str(proc.pid)}
            try:
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            fds = None
            with contextlib.suppress(psutil.Error, AttributeError):
                # Other users' descriptors are unreadable without root; still report the rest.
                fds = proc.num_fds()
            add("process_cpu_utilization_ratio", ratio, **labels)
            add("process_resident_memory_bytes", rss, **labels)
            add("process_open_fds", fds, **labels)


def _open_files() -> int | None:
    try:
        allocated, unused, _ = Path("/proc/sys/fs/file-nr").read_text().split()
    except (OSError, ValueError):
        return None
    return int(allocated) - int(unused)
