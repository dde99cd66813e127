"""Telltale host agent: host metrics and log files, spooled on disk, sent to a Telltale server.

Everything collected is first written to the spool as the exact request body that will be
sent (remote_write bytes for metrics, JSON lines for logs), so a retry after an ambiguous
failure sends identical bytes and the server's deduplication stores it once. Each kind is
delivered strictly in sequence order; a disk budget drops the oldest chunks first.

Runs without Django: only the standard library, psutil and ``ingest`` are imported.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import logging
import math
import os
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from ingest.remote_write import REMOTE_WRITE_HEADERS, encode_remote_write
from ingest.types import SeriesSamples, severity_from_text

log = logging.getLogger(__name__)

KINDS = ("metrics", "logs")
MAX_LINE_BYTES = 64 * 1024
MAX_CHUNK_BYTES = 1 << 20  # far below the server's 16 MiB body limit
MAX_RETRY_AFTER = 600.0  # a broken proxy's "Retry-After: 86400" must not stall the agent
USER_AGENT = "telltale-agent/1.0"


@dataclass(slots=True)
class AgentConfig:
    server: str
    token: str
    node: str
    interval: float = 15.0
    log_files: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    state_dir: Path = Path("var/agent")
    max_buffer_bytes: int = 256 << 20
    top_processes: int = 10
    log_poll_interval: float = 1.0
    http_timeout: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    auth_retry: float = 60.0


# --- metrics ---------------------------------------------------------------------------
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
    ):
        self.base = {**(labels or {}), "node": node}
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

    @staticmethod
    def _nic_counters() -> dict[str, tuple]:
        counters = psutil.net_io_counters(pernic=True, nowrap=True) or {}
        return {
            n: (c.bytes_recv, c.bytes_sent, c.errin + c.errout)
            for n, c in counters.items()
            if not n.startswith(VIRTUAL_NIC_PREFIXES)
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


# --- spool -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Chunk:
    kind: str
    seq: int
    data: bytes


@dataclass(slots=True)
class SpoolStats:
    buffer_bytes: int = 0
    chunks: int = 0
    dropped_chunks: int = 0
    dropped_bytes: int = 0
    rejected_chunks: int = 0
    send_failures: int = 0


def _write_durably(path: Path, data: bytes) -> None:
    """Write via a temporary name, fsync and rename: readers see all of it or nothing."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # directories cannot be opened for fsync everywhere
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _load_json(path: Path) -> dict:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # written atomically, so only a person breaks it
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    return loaded if isinstance(loaded, dict) else {}


class Spool:
    """Chunk files named by one sequence shared by all kinds, so that "oldest" is global.

    ``peek`` pins a kind's oldest chunk until ``ack``/``reject``/``release``, and the budget
    never drops a pinned chunk: deleting what is being sent would count it as lost.
    """

    COUNTERS = ("dropped_chunks", "dropped_bytes", "rejected_chunks", "send_failures")

    def __init__(self, directory: Path, max_bytes: int = 256 << 20):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._cond = threading.Condition()
        self._sizes: dict[str, dict[int, int]] = {kind: {} for kind in KINDS}
        self._pinned: set[int] = set()
        self._state_path = self.directory / "state.json"
        self._counters = dict.fromkeys(self.COUNTERS, 0)
        self._next_seq = 1
        saved = _load_json(self._state_path)
        self._next_seq = int(saved.get("next_seq", 1))
        self._counters.update({k: int(saved.get(k, 0)) for k in self.COUNTERS})
        for kind in KINDS:
            folder = self.directory / kind
            folder.mkdir(parents=True, exist_ok=True)
            for entry in folder.iterdir():
                if entry.suffix == ".tmp":
                    entry.unlink()  # a write interrupted by a crash; its batch was never acked
                elif entry.suffix == ".chunk" and entry.stem.isdigit():
                    self._sizes[kind][int(entry.stem)] = entry.stat().st_size
                    self._next_seq = max(self._next_seq, int(entry.stem) + 1)

    def _path(self, kind: str, seq: int) -> Path:
        return self.directory / kind / f"{seq:020d}.chunk"

    def _save_state(self) -> None:
        state = {"next_seq": self._next_seq, **self._counters}
        _write_durably(self._state_path, json.dumps(state).encode())

    def append(self, kind: str, data: bytes) -> int:
        with self._cond:
            seq = self._next_seq
            self._next_seq += 1
            _write_durably(self._path(kind, seq), data)
            self._sizes[kind][seq] = len(data)
            self._enforce_budget()
            self._save_state()
            self._cond.notify_all()
            return seq

    def peek(self, kind: str) -> Chunk | None:
        with self._cond:
            while self._sizes[kind]:
                seq = min(self._sizes[kind])
                try:
                    data = self._path(kind, seq).read_bytes()
                except OSError as exc:
                    log.error("spool: cannot read %s chunk %d (%s); dropping it", kind, seq, exc)
                    self._drop(kind, seq)
                    self._save_state()
                    continue
                self._pinned.add(seq)
                return Chunk(kind, seq, data)
            return None

    def ack(self, chunk: Chunk) -> None:
        with self._cond:
            self._remove(chunk)

    def reject(self, chunk: Chunk) -> None:
        with self._cond:
            self._remove(chunk)
            self._counters["rejected_chunks"] += 1
            self._save_state()

    def release(self, chunk: Chunk) -> None:
        with self._cond:
            self._pinned.discard(chunk.seq)

    def note_send_failure(self) -> None:
        with self._cond:
            self._counters["send_failures"] += 1
            self._save_state()

    def _remove(self, chunk: Chunk) -> None:
        self._pinned.discard(chunk.seq)
        if self._sizes[chunk.kind].pop(chunk.seq, None) is not None:
            self._path(chunk.kind, chunk.seq).unlink(missing_ok=True)

    def _drop(self, kind: str, seq: int) -> None:
        size = self._sizes[kind].pop(seq)
        self._path(kind, seq).unlink(missing_ok=True)
        self._counters["dropped_chunks"] += 1
        self._counters["dropped_bytes"] += size

    def _enforce_budget(self) -> None:
        total = sum(sum(sizes.values()) for sizes in self._sizes.values())
        if total <= self.max_bytes:
            return
        oldest = sorted(
            (seq, kind) for kind in KINDS for seq in self._sizes[kind] if seq not in self._pinned
        )
        dropped = freed = 0
        for seq, kind in oldest:
            if total <= self.max_bytes:
                break
            size = self._sizes[kind][seq]
            self._drop(kind, seq)
            total -= size
            dropped, freed = dropped + 1, freed + size
        log.warning(
            "spool over its budget of %d bytes: dropped the %d oldest chunks (%d bytes)",
            self.max_bytes,
            dropped,
            freed,
        )

    def stats(self) -> SpoolStats:
        with self._cond:
            sizes = [size for kind in KINDS for size in self._sizes[kind].values()]
            return SpoolStats(sum(sizes), len(sizes), **self._counters)

    def pending(self, kind: str) -> int:
        with self._cond:
            return len(self._sizes[kind])

    def wait(self, kind: str, timeout: float, stop: threading.Event | None = None) -> None:
        """Until a chunk of ``kind`` is queued, ``stop`` is set (see ``wake``) or ``timeout``."""
        with self._cond:
            self._cond.wait_for(
                lambda: bool(self._sizes[kind]) or (stop is not None and stop.is_set()), timeout
            )

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


# --- logs ------------------------------------------------------------------------------
_LEVEL_RE = re.compile(r"(?:\blevel[=:]\s*\"?|\[)([a-zA-Z]{3,11})\b", re.IGNORECASE)
_WORD_RE = re.compile(
    r"\b(FATAL|PANIC|EMERG|CRIT(?:ICAL)?|ERROR|ERR|WARN(?:ING)?|NOTICE|INFO|DEBUG|TRACE)\b"
)


def guess_severity(message: str) -> str | None:
    """A level name the server understands, from ``level=x``, ``[x]`` or an upper-case word."""
    head = message[:256]  # levels sit near the start; scanning a 64 KiB line costs too much
    for match in _LEVEL_RE.finditer(head):
        if severity_from_text(match.group(1)):
            return match.group(1).lower()
    match = _WORD_RE.search(head)
    return match.group(1).lower() if match else None


@dataclass(slots=True)
class _Tail:
    path: str
    file: BinaryIO | None = None
    dev: int = 0
    ino: int = 0
    offset: int = 0  # next byte to read
    partial: bytes = b""  # an unfinished last line, kept until its newline arrives
    skipping: bool = False  # inside an over-long line whose head was already emitted


class LogTailer:
    """``tail -F`` for several files, with offsets saved by ``commit``.

    The caller commits only after the lines are safely in the spool, so a crash resends
    lines rather than losing them.
    """

    def __init__(
        self,
        paths: tuple[str, ...] | list[str],
        state_file: Path,
        *,
        node: str,
        wall: Callable[[], float] = time.time,
        max_read_bytes: int = 8 << 20,
    ):
        self.node, self._wall, self.max_read_bytes = node, wall, max_read_bytes
        self.state_file = Path(state_file)
        saved = self._committed = _load_json(self.state_file)
        self._tails = {path: self._resume(path, saved.get(path)) for path in paths}

    def _resume(self, path: str, saved: dict | None) -> _Tail:
        tail = _Tail(path)
        if saved is None:
            # First run: only what is written from now on, as tail -F.
            if self._open(tail, path):
                tail.offset = tail.file.seek(0, os.SEEK_END)
            return tail
        identity = (saved["dev"], saved["ino"])
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == identity:
                self._open(tail, path, saved["offset"] if saved["offset"] <= st.st_size else 0)
                tail.skipping = saved.get("skipping", False) and tail.offset > 0
                return tail
        # Rotated while we were down: finish the old file under its new name first.
        rotated = self._find_rotated(path, identity)
        if rotated and self._open(tail, rotated, saved["offset"]):
            tail.skipping = saved.get("skipping", False)
        return tail

    @staticmethod
    def _find_rotated(path: str, identity: tuple[int, int]) -> str | None:
        folder, base = os.path.split(os.path.abspath(path))
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(base) and entry.path != os.path.abspath(path):
                    st = entry.stat(follow_symlinks=False)
                    if (st.st_dev, st.st_ino) == identity:
                        return entry.path
        return None

    @staticmethod
    def _open(tail: _Tail, path: str, offset: int = 0) -> bool:
        try:
            f = open(path, "rb")  # noqa: SIM115 - kept open across polls to follow renames
        except OSError:
            return False
        st = os.fstat(f.fileno())
        tail.file, tail.dev, tail.ino = f, st.st_dev, st.st_ino
        tail.offset = f.seek(offset)
        tail.partial, tail.skipping = b"", False
        return True

    def poll(self) -> list[dict]:
        """JSON-ready records for the lines completed since the last poll."""
        records: list[dict] = []
        read_at = datetime.fromtimestamp(self._wall(), tz=UTC).isoformat().replace("+00:00", "Z")
        for tail in self._tails.values():
            self._poll_one(tail, records, read_at)
        return records

    def _poll_one(self, tail: _Tail, records: list[dict], read_at: str) -> None:
        budget = self.max_read_bytes
        for _ in range(3):  # at most: drain, switch to the new file or start over, drain
            if tail.file is None and not self._open(tail, tail.path):
                return
            while budget > 0 and (data := tail.file.read(min(1 << 16, budget))):
                tail.offset += len(data)
                budget -= len(data)
                self._split(tail, data, records, read_at)
            if budget <= 0:
                return  # more is waiting; rotation is checked once caught up
            try:
                st = os.stat(tail.path)
            except OSError:
                return  # moved away and not recreated yet: keep the old file open
            if (st.st_dev, st.st_ino) != (tail.dev, tail.ino):
                self._flush_partial(tail, records, read_at)  # its writer has moved on
                tail.file.close()
                tail.file = None
            elif st.st_size < tail.offset:
                log.info("%s was truncated; reading it from the start", tail.path)
                self._flush_partial(tail, records, read_at)
                tail.offset = tail.file.seek(0)
            else:
                return

    def _split(self, tail: _Tail, data: bytes, records: list[dict], read_at: str) -> None:
        buf = tail.partial + data
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            if tail.skipping:
                tail.skipping = False
            else:
                self._emit(tail, buf[start:end], records, read_at)
            start = end + 1
        rest = buf[start:]
        if tail.skipping:
            rest = b""
        elif len(rest) > MAX_LINE_BYTES:  # cannot fit whatever follows: send the head now
            self._emit(tail, rest, records, read_at)
            tail.skipping, rest = True, b""
        tail.partial = rest

    def _flush_partial(self, tail: _Tail, records: list[dict], read_at: str) -> None:
        if tail.partial and not tail.skipping:
            self._emit(tail, tail.partial, records, read_at)
        tail.partial, tail.skipping = b"", False

    def _emit(self, tail: _Tail, raw: bytes, records: list[dict], read_at: str) -> None:
        text = raw[:MAX_LINE_BYTES].decode("utf-8", errors="replace").rstrip("\r")
        if not text.strip():
            return
        attributes = {"log.file.path": tail.path}
        if len(raw) > MAX_LINE_BYTES:
            attributes["telltale.truncated"] = "true"
        record = {"ts": read_at, "message": text, "node": self.node, "attributes": attributes}
        severity = guess_severity(text)
        if severity:
            record["severity"] = severity
        records.append(record)

    def commit(self) -> None:
        state = {
            path: {
                "dev": t.dev,
                "ino": t.ino,
                "offset": t.offset - len(t.partial),  # an unfinished line is read again
                "skipping": t.skipping,
            }  # a file not there yet is saved as inode 0: read from its start once it appears
            for path, t in self._tails.items()
        }
        if state != self._committed:  # an idle agent should not fsync every second
            _write_durably(self.state_file, json.dumps(state).encode())
            self._committed = state

    def close(self) -> None:
        for tail in self._tails.values():
            if tail.file is not None:
                tail.file.close()
                tail.file = None


def jsonl_chunks(records: list[dict], max_bytes: int = MAX_CHUNK_BYTES) -> list[bytes]:
    """Pack records into JSON-lines bodies of at most ``max_bytes`` (one record at least)."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for record in records:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        if current and size + len(line) > max_bytes:
            chunks.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        chunks.append(b"".join(current))
    return chunks


# --- sender ----------------------------------------------------------------------------
DELIVERED, REJECTED, RETRY, AUTH = "delivered", "rejected", "retry", "auth"
ENDPOINTS = {"metrics": "/api/v1/write", "logs": "/api/v1/logs/jsonl"}
HEADERS = {
    "metrics": {**REMOTE_WRITE_HEADERS, "User-Agent": USER_AGENT},
    "logs": {
        "Content-Type": "application/x-ndjson",
        "User-Agent": USER_AGENT,
        "X-Telltale-Source": "agent",
    },
}
Opener = Callable[[urllib.request.Request, float], Any]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib would turn the POST into a GET without a body


def default_opener() -> Opener:
    director = urllib.request.build_opener(_NoRedirect)
    return lambda request, timeout: director.open(request, timeout=timeout)


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    with contextlib.suppress(ValueError):
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return min(MAX_RETRY_AFTER, max(0.0, when.timestamp() - time.time()))
    return 0.0


class Sender:
    """Delivers one kind's chunks in order: one chunk at a time, retried until settled."""

    def __init__(
        self,
        spool: Spool,
        kind: str,
        config: AgentConfig,
        stop_event: threading.Event,
        *,
        opener: Opener | None = None,
        sleep: Callable[[float], Any] | None = None,
        rng: random.Random | None = None,
    ):
        self.spool, self.kind, self.config, self.stop = spool, kind, config, stop_event
        self.url = config.server.rstrip("/") + ENDPOINTS[kind]
        self.opener = opener or default_opener()
        self.sleep = sleep or stop_event.wait  # a stop request cuts any wait short
        self.rng = rng or random.Random()
        self._failures = 0

    def attempt(self, chunk: Chunk) -> tuple[str, float]:
        """Send once; (outcome, seconds to wait before the next try)."""
        headers = {**HEADERS[self.kind], "Authorization": f"Bearer {self.config.token}"}
        request = urllib.request.Request(  # noqa: S310 - the command allows http(s) only
            self.url, data=chunk.data, headers=headers, method="POST"
        )
        body = b""
        try:
            response = self.opener(request, self.config.http_timeout)
            with contextlib.closing(response):
                status = getattr(response, "status", None) or response.getcode()
                body, retry_after = response.read(), response.headers.get("Retry-After")
        except urllib.error.HTTPError as exc:
            status, retry_after = exc.code, exc.headers.get("Retry-After") if exc.headers else None
            with contextlib.suppress(OSError, http.client.HTTPException):
                body = exc.read(4096)
            exc.close()
        except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSError
            return self._retry(chunk, f"cannot reach {self.url}: {exc}", 0.0)
        text = body[:2048].decode("utf-8", errors="replace") if body else ""
        if 200 <= status < 300:
            self._failures = 0
            return DELIVERED, 0.0
        if status in (400, 413):
            log.error(
                "server refused %s chunk %d (%d bytes) with %d, not retrying it: %s",
                *(self.kind, chunk.seq, len(chunk.data), status, text),
            )
            self._failures = 0
            return REJECTED, 0.0
        if status in (408, 429) or status >= 500:
            return self._retry(chunk, f"{self.url} answered {status}", _retry_after(retry_after))
        # 401/403 bad token, 404 wrong URL, 3xx: needs a person; keep the data meanwhile.
        log.error(
            "%s answered %d for %s chunk %d; keeping it and retrying in %.0f s: %s",
            *(self.url, status, self.kind, chunk.seq, self.config.auth_retry, text),
        )
        return AUTH, self.config.auth_retry

    def _retry(self, chunk: Chunk, why: str, retry_after: float) -> tuple[str, float]:
        # The exponent is capped: 2.0**1100 overflows a float after a long outage.
        doubled = self.config.backoff_initial * 2 ** min(self._failures, 32)
        base = min(self.config.backoff_max, doubled)
        self._failures += 1
        delay = max(retry_after, base / 2 + self.rng.uniform(0, base / 2))
        log.warning("%s; %s chunk %d retried in %.1f s", why, self.kind, chunk.seq, delay)
        return RETRY, delay

    def drain(self, max_attempts: int | None = None) -> bool:
        """Deliver until the queue is empty (True when nothing was refused), the stop event is
        set, or one chunk failed ``max_attempts`` times in a row (False)."""
        all_delivered, attempts = True, 0
        while not self.stop.is_set():
            chunk = self.spool.peek(self.kind)
            if chunk is None:
                return all_delivered
            outcome, delay = self.attempt(chunk)
            if outcome == DELIVERED:
                self.spool.ack(chunk)
            elif outcome == REJECTED:
                self.spool.reject(chunk)
                all_delivered = False
            else:
                self.spool.release(chunk)  # while we wait the budget may drop it
                self.spool.note_send_failure()
                attempts += 1
                if max_attempts is not None and attempts >= max_attempts:
                    return False
                self.sleep(delay)
                continue
            attempts = 0
        return False

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.drain()
            except Exception:
                log.exception("%s sender failed; restarting it", self.kind)
                self.sleep(self.config.backoff_max)
            self.spool.wait(self.kind, timeout=5.0, stop=self.stop)


# --- the agent -------------------------------------------------------------------------
def _lock_state_dir(state_dir: Path) -> BinaryIO:
    """One agent per state dir: two would send and delete the same chunks."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = open(state_dir / "agent.lock", "a+b")  # noqa: SIM115 - held while running
    try:
        import fcntl

        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        pass  # no advisory locks on this platform
    except OSError:
        lock.close()
        raise RuntimeError(f"another agent is using the state dir {state_dir}") from None
    return lock


class Agent:
    """The parts wired together; ``run_agent`` and ``run_once`` drive it."""

    def __init__(
        self, config: AgentConfig, stop_event: threading.Event, opener: Opener | None = None
    ):
        self.config, self.stop = config, stop_event
        state_dir = Path(config.state_dir)
        self.lock = _lock_state_dir(state_dir)
        self.spool = Spool(state_dir / "spool", config.max_buffer_bytes)
        self.collector = Collector(config.node, config.labels, config.top_processes)
        self.tailer = LogTailer(config.log_files, state_dir / "tail-state.json", node=config.node)
        self.senders = {k: Sender(self.spool, k, config, stop_event, opener=opener) for k in KINDS}

    def collect_metrics(self) -> None:
        stats = self.spool.stats()
        own = {
            "telltale_agent_buffer_bytes": stats.buffer_bytes,
            "telltale_agent_dropped_chunks_total": stats.dropped_chunks,
            "telltale_agent_dropped_bytes_total": stats.dropped_bytes,
            "telltale_agent_rejected_chunks_total": stats.rejected_chunks,
            "telltale_agent_send_failures_total": stats.send_failures,
        }
        try:
            series = self.collector.collect(own)
        except Exception:  # one failing psutil call must not stop logs and delivery
            log.exception("metrics collection failed")
            return
        if series:
            self.spool.append("metrics", encode_remote_write(series))

    def flush_logs(self) -> None:
        records = self.tailer.poll()
        for body in jsonl_chunks(records):
            self.spool.append("logs", body)
        self.tailer.commit()

    def close(self) -> None:
        self.tailer.close()
        self.lock.close()


def run_agent(
    config: AgentConfig, stop_event: threading.Event, *, opener: Opener | None = None
) -> None:
    """Collect, spool and send until ``stop_event`` is set; then spool what was read."""
    agent = Agent(config, stop_event, opener)
    threads = [
        threading.Thread(target=s.run, name=f"telltale-agent-{k}", daemon=True)
        for k, s in agent.senders.items()
    ]
    for thread in threads:
        thread.start()
    log.info("agent for node %s sending to %s", config.node, config.server)
    try:
        next_metrics = next_logs = time.monotonic()
        while not stop_event.is_set():
            now = time.monotonic()
            try:
                if now >= next_metrics:
                    # Skip missed ticks after a pause (suspend) instead of collecting in a burst.
                    next_metrics = max(next_metrics + config.interval, now)
                    agent.collect_metrics()
                if now >= next_logs:
                    next_logs = now + config.log_poll_interval
                    agent.flush_logs()
            except OSError:  # a full or read-only disk; the next tick tries again
                log.exception("cannot write to the spool in %s", config.state_dir)
            stop_event.wait(max(0.0, min(next_metrics, next_logs) - time.monotonic()))
        agent.flush_logs()
    finally:
        stop_event.set()
        agent.spool.wake()
        for thread in threads:
            thread.join(timeout=config.http_timeout + 1)
        agent.close()
    log.info("agent stopped; %d bytes left in the spool", agent.spool.stats().buffer_bytes)


def run_once(
    config: AgentConfig,
    *,
    opener: Opener | None = None,
    max_attempts: int = 2,
    prime_seconds: float = 1.0,
) -> bool:
    """One metrics batch and one log read, then deliver the whole spool; True if all went."""
    stop = threading.Event()
    agent = Agent(config, stop, opener)
    try:
        # Rates need two readings; the first one only primes the counters.
        agent.collector.collect()
        time.sleep(prime_seconds)
        agent.collect_metrics()
        agent.flush_logs()
        results = [agent.senders[kind].drain(max_attempts) for kind in KINDS]
        return all(results) and not any(agent.spool.pending(kind) for kind in KINDS)
    finally:
        agent.close()


def install_signal_handlers(stop_event: threading.Event) -> None:
    """SIGTERM/SIGINT end the run loop, which then spools what it had read."""

    def handle(signum: int, frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop_event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
