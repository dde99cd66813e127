"""Hardware figures the models read for nodes and psutil does not give: corrected memory
errors, NIC link flaps, the hottest temperature sensor and the clock's offset (anomaly
model), and the last-level cache and link speed (the interference model's node capacity).

Read from sysfs (a root can be passed, so tests build a fake tree) and, for the clock,
the kernel's NTP state through adjtimex(2), as node_exporter's edac, netclass, hwmon and
timex collectors read them. A figure the host does not expose is left out, never 0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from pathlib import Path

SYSFS = Path("/sys")


def _read_number(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _sum(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return sum(found) if found else None


def ecc_corrected_errors(sysfs: Path = SYSFS) -> float | None:
    """Corrected errors over every memory controller EDAC knows; None without EDAC."""
    return _sum([_read_number(p) for p in (sysfs / "devices/system/edac/mc").glob("mc*/ce_count")])


def _nics(sysfs: Path) -> list[tuple[Path, bool]]:
    """Every NIC with whether it is virtual: one under devices/virtual (loopback, bridges,
    bonds, VLANs, veth, tunnels) has no link of its own, and its traffic also crosses a
    physical NIC (a bond's members are physical)."""
    net = sysfs / "class/net"
    if not net.is_dir():
        return []
    return [(nic, "/devices/virtual/" in os.path.realpath(nic)) for nic in net.iterdir()]


def _physical_nics(sysfs: Path) -> list[Path]:
    return [nic for nic, virtual in _nics(sysfs) if not virtual]


def virtual_nic_names(sysfs: Path = SYSFS) -> set[str]:
    return {nic.name for nic, virtual in _nics(sysfs) if virtual}


def nic_carrier_changes(sysfs: Path = SYSFS) -> float | None:
    """Carrier changes summed over physical NICs."""
    return _sum([_read_number(nic / "carrier_changes") for nic in _physical_nics(sysfs)])


def link_speed_bytes(sysfs: Path = SYSFS) -> float | None:
    """Link speed summed over physical NICs with a link, in bytes/s (sysfs says Mbit/s;
    virtual NICs such as virtio's say -1 or nothing: unknown, not 0)."""
    speeds = [_read_number(nic / "speed") for nic in _physical_nics(sysfs)]
    return _sum([s * 1e6 / 8 for s in speeds if s is not None and s > 0])


def _size_bytes(text: str) -> float | None:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    text = text.strip()
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        return None


@functools.cache  # the hardware does not change under a running agent; 4 files per CPU
def last_level_cache_bytes(sysfs: Path = SYSFS) -> float | None:
    """The node's last-level cache: the size of each distinct highest-level cache (one per
    socket or die, shared by the CPUs its shared_cpu_list names), summed."""
    caches: dict[int, dict[str, float]] = {}
    for index in (sysfs / "devices/system/cpu").glob("cpu[0-9]*/cache/index[0-9]*"):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            shared = (index / "shared_cpu_list").read_text().strip()
            size = _size_bytes((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Unified", "Data") and size is not None:
            caches.setdefault(level, {})[shared] = size
    if not caches:
        return None
    return sum(caches[max(caches)].values())


def hottest_celsius(sysfs: Path = SYSFS) -> float | None:
    """The highest reading of any hwmon temperature sensor (millidegrees in sysfs)."""
    readings = [_read_number(p) for p in (sysfs / "class/hwmon").glob("hwmon*/temp*_input")]
    found = [r / 1000.0 for r in readings if r is not None]
    return max(found) if found else None


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (Linux): only the leading fields are read, the
    # trailing padding keeps the kernel's writes inside the buffer.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


STA_NANO = 0x2000  # offset in nanoseconds instead of microseconds
TIME_ERROR = 5  # the clock is not synchronised


def clock_offset_seconds() -> float | None:
    """The kernel's estimate of the clock's offset from its NTP reference; None where the
    clock is not synchronised (the offset means nothing then) or off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        timex = _Timex()  # modes 0: read only, no privilege needed
        state = _libc().adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return None
    if state < 0 or state == TIME_ERROR:
        return None
    scale = 1e-9 if timex.status & STA_NANO else 1e-6
    return timex.offset * scale


def read(sysfs: Path = SYSFS) -> dict[str, float | None]:
    return {
        "host_ecc_errors_total": ecc_corrected_errors(sysfs),
        "host_nic_link_flaps_total": nic_carrier_changes(sysfs),
        "host_temperature_celsius": hottest_celsius(sysfs),
        "host_clock_offset_seconds": clock_offset_seconds(),
        "host_network_speed_bytes": link_speed_bytes(sysfs),
        "host_llc_bytes": last_level_cache_bytes(sysfs),
    }
