"""The disk spool: chunks waiting for delivery, a disk budget and persisted counters."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KINDS = ("metrics", "logs")


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


def write_durably(path: Path, data: bytes) -> None:
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


def load_json(path: Path) -> dict:
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
        saved = load_json(self._state_path)
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
        write_durably(self._state_path, json.dumps(state).encode())

    def append(self, kind: str, data: bytes) -> int:
        with self._cond:
            seq = self._next_seq
            self._next_seq += 1
            # Room first, then the write: the spool never holds more than its budget on disk,
            # not even for the moment between writing a chunk and dropping old ones.
            self._enforce_budget(incoming=len(data))
            write_durably(self._path(kind, seq), data)
            self._sizes[kind][seq] = len(data)
            self._enforce_budget()  # a chunk larger than the whole budget is dropped too
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

    def _enforce_budget(self, incoming: int = 0) -> None:
        total = incoming + sum(sum(sizes.values()) for sizes in self._sizes.values())
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
