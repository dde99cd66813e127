"""Log files followed like ``tail -F`` and packed into JSON-lines bodies."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from ingest.agent.spool import load_json, write_durably
from ingest.types import severity_from_text

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
MAX_CHUNK_BYTES = 1 << 20  # far below the server's 16 MiB body limit

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
        saved = self._committed = load_json(self.state_file)
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
            write_durably(self.state_file, json.dumps(state).encode())
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
