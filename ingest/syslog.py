"""Syslog parsing (RFC 5424, RFC 3164 and the variants real senders emit) and TCP framing.

Syslog senders are old, varied and rarely fixable, so parsing is best effort and never
loses a line: whatever does not fit a header grammar is kept as the message text. Only an
empty message is an error.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime

from ingest.types import DecodeError, LogEntry

# Syslog severity 0-7 onto OpenTelemetry numbers; the levels OpenTelemetry lacks (notice,
# crit, alert) take in-between numbers so that ordering is preserved.
SYSLOG_SEVERITY = (21, 19, 18, 17, 13, 10, 9, 5)
SYSLOG_SEVERITY_TEXT = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "audit", "alert", "clock",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
# RFC 3164 4.3.3: a message without PRI is user.notice.
DEFAULT_PRI = 13

_PRI = re.compile(rb"<(\d{1,3})>")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9})\d*)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)
_BSD_TS = re.compile(
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ \d]\d) (\d{2}):(\d{2}):(\d{2})"
    r"(?:\.(\d{1,9})\d*)?(?= |$)"
)
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: i + 1 for i, name in enumerate(_MONTH_NAMES)}
# A tag is "app" or "app[pid]" followed by a colon; slashes and dots occur ("postfix/smtpd").
_TAG = re.compile(r"([^\s\[\]:]{1,64})(?:\[([^\]\s]{0,64})\])?:(?: |$)")
# At most 200 characters: the length of a node name in the store.
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:%-]{0,199}")
MAX_NODE_NAME = 200
_SD_NAME = re.compile(r'[^\s=\]"]{1,64}')
_BOM = "\ufeff"
_NS = 1_000_000_000
_BSD_FUTURE_SLACK_NS = 24 * 3600 * _NS


def parse_rfc3339_ns(text: str, *, require_zone: bool = False) -> int | None:
    """Epoch nanoseconds of an RFC 3339 time, None when ``text`` is not one.

    Fractions are kept to the nanosecond (datetime would cut them to microseconds);
    a missing zone means UTC unless ``require_zone``; a leap second counts as :59.
    """
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    return _match_to_ns(m, require_zone)


def _match_to_ns(m: re.Match[str], require_zone: bool) -> int | None:
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    second = min(second, 59)
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    if m.group(9):
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 23 or off_m > 59:
            return None
        offset = (off_h * 3600 + off_m * 60) * (1 if m.group(9) == "-" else -1)
    elif m.group(8) or not require_zone:
        offset = 0
    else:
        return None
    seconds = calendar.timegm((year, month, day, hour, minute, second)) + offset
    frac = m.group(7) or ""
    return seconds * _NS + int(frac.ljust(9, "0") or 0)


def _bsd_time_ns(m: re.Match[str], received_ns: int) -> int | None:
    """RFC 3164 times carry no year or zone: take UTC and the latest year that does not put
    the line more than a day after its arrival, so December lines read in January (or
    replayed from an old file) land in the past, while a sender whose clock runs a little
    ahead across New Year still gets the new year."""
    month, day = _MONTHS[m.group(1)], int(m.group(2))
    hour, minute, second = int(m.group(3)), int(m.group(4)), min(int(m.group(5)), 59)
    frac = int((m.group(6) or "").ljust(9, "0") or 0)
    # The clamp keeps a wild received time from making gmtime raise.
    year = time.gmtime(max(0, min(received_ns // _NS, 253_402_300_799))).tm_year
    for candidate in range(year + 1, year - 8, -1):  # Feb 29 may need a few years back
        try:
            datetime(candidate, month, day, hour, minute, second)
        except ValueError:
            continue
        ns = calendar.timegm((candidate, month, day, hour, minute, second)) * _NS + frac
        if ns <= received_ns + _BSD_FUTURE_SLACK_NS:
            return ns
    return None


def parse_syslog(message: bytes, *, received_ns: int, peer: str | None = None) -> LogEntry:
    """Parse one syslog message (one UDP datagram or one TCP frame).

    RFC 5424 is tried first, then RFC 3164 with its common variants (no hostname, ISO
    timestamps as rsyslog forwards them, no timestamp); text that fits neither is the
    message. Raises DecodeError only when the input holds nothing but whitespace or NULs.
    """
    data = message.rstrip(b"\r\n\x00")
    if not data.strip(b" \t\r\n\x00"):
        raise DecodeError("empty syslog message", field="message")
    attributes: dict[str, str] = {}
    m = _PRI.match(data)
    pri = int(m.group(1)) if m else -1
    if m and pri <= 191:
        rest = data[m.end() :]
    else:
        pri = DEFAULT_PRI
        rest = data
        attributes["syslog.pri_missing"] = "true"
    facility, level = divmod(pri, 8)
    attributes["syslog.facility"] = FACILITIES[facility]
    entry = LogEntry(
        ts_ns=received_ns,
        message="",
        severity=SYSLOG_SEVERITY[level],
        severity_text=SYSLOG_SEVERITY_TEXT[level],
        attributes=attributes,
        source="syslog",
    )
    if peer:
        attributes["syslog.peer"] = peer
    text = rest.decode("utf-8", errors="replace")
    if not (rest.startswith(b"1 ") and _parse_5424(text[2:], entry)):
        _parse_3164(text, entry, received_ns)
    if entry.node is None and peer:
        entry.node = peer
    return entry


def _nil(field: str) -> str | None:
    return None if field == "-" else field


def _parse_5424(text: str, entry: LogEntry) -> bool:
    """Fill ``entry`` from the part after "<PRI>1 "; False (entry untouched) if not RFC 5424."""
    parts = text.split(" ", 5)
    if len(parts) < 5:
        return False
    timestamp, hostname, app, procid, msgid = parts[:5]
    after = parts[5] if len(parts) > 5 else ""
    if timestamp == "-":
        ts_ns = entry.ts_ns
    else:
        parsed = parse_rfc3339_ns(timestamp, require_zone=True)
        if parsed is None:
            return False
        ts_ns = parsed
    if not all(token and len(token) <= 255 for token in (hostname, app, procid, msgid)):
        return False
    sd_attrs: dict[str, str] = {}
    if after.startswith("-"):
        msg = after[2:] if after.startswith("- ") else after[1:]
        if after[1:2] not in ("", " "):
            return False
    elif after.startswith("["):
        end = _parse_structured_data(after, sd_attrs)
        if end is None:
            # Malformed structured data: keep it as part of the message rather than guess.
            msg = after
            sd_attrs.clear()
        else:
            msg = after[end + 1 :] if after[end : end + 1] == " " else after[end:]
    else:
        return False
    entry.ts_ns = ts_ns
    entry.node = _nil(hostname)
    if entry.node and len(entry.node) > MAX_NODE_NAME:
        # RFC 5424 allows 255 characters; the store's node names hold fewer. Keep it as text.
        entry.attributes["syslog.hostname"] = entry.node
        entry.node = None
    for key, value in (("syslog.appname", app), ("syslog.procid", procid), ("syslog.msgid", msgid)):
        if value != "-":
            entry.attributes[key] = value
    entry.attributes.update(sd_attrs)
    entry.message = msg.removeprefix(_BOM)
    return True


def _parse_structured_data(text: str, out: dict[str, str]) -> int | None:
    """Parse ``[id k="v" ...]...`` into ``sd.<id>.<k>`` attributes; index after it or None."""
    # Values of a repeated parameter are joined once at the end: joining as they come
    # would copy the growing string each time, quadratic in a hostile message.
    values: dict[str, list[str]] = {}
    end = _scan_structured_data(text, values)
    if end is not None:
        out.update((key, ", ".join(parts)) for key, parts in values.items())
    return end


def _scan_structured_data(text: str, out: dict[str, list[str]]) -> int | None:
    pos, n = 0, len(text)
    while pos < n and text[pos] == "[":
        m = _SD_NAME.match(text, pos + 1)
        if m is None:
            return None
        sd_id, pos = m.group(), m.end()
        params = 0
        while True:
            if pos < n and text[pos] == "]":
                pos += 1
                if not params:
                    out.setdefault(f"sd.{sd_id}", [""])  # an element may carry no parameters
                break
            if pos >= n or text[pos] != " ":
                return None
            m = _SD_NAME.match(text, pos + 1)
            if m is None or text[m.end() : m.end() + 2] != '="':
                return None
            name, pos = m.group(), m.end() + 2
            value: list[str] = []
            while True:
                if pos >= n:
                    return None
                ch = text[pos]
                if ch == "\\" and pos + 1 < n and text[pos + 1] in '"\\]':
                    value.append(text[pos + 1])
                    pos += 2
                elif ch == '"':
                    pos += 1
                    break
                else:
                    value.append(ch)
                    pos += 1
            params += 1
            # RFC 5424 lets a parameter repeat; keep every value.
            out.setdefault(f"sd.{sd_id}.{name}", []).append("".join(value))
    return pos


def _parse_3164(text: str, entry: LogEntry, received_ns: int) -> None:
    """RFC 3164 and the shapes rsyslog, util-linux logger and devices send in its place."""
    rest = text
    m = _BSD_TS.match(rest)
    if m:
        parsed = _bsd_time_ns(m, received_ns)
    else:
        m = _RFC3339.match(rest)
        parsed = _match_to_ns(m, False) if m and rest[m.end() : m.end() + 1] in (" ", "") else None
    if m is not None and parsed is not None:
        entry.ts_ns = parsed
        rest = rest[m.end() + 1 :]
        # After a timestamp comes a hostname unless the sender left it out and went
        # straight to the tag ("su[12]: ...", "root: ...").
        token, _, after = rest.partition(" ")
        if _HOSTNAME.fullmatch(token) and not _TAG.match(rest) and after:
            entry.node = token
            rest = after
    tag = _TAG.match(rest)
    if tag:
        entry.attributes["syslog.appname"] = tag.group(1)
        if tag.group(2):
            entry.attributes["syslog.procid"] = tag.group(2)
        rest = rest[tag.end() :]
    entry.message = rest.removeprefix(_BOM)


class SyslogStreamFramer:
    """Split a syslog TCP stream into messages (RFC 6587).

    Octet counting (``LEN SP <PRI>...``) and non-transparent framing (messages ended by LF
    or NUL, CR before LF dropped) are told apart per message, as rsyslog does, so a
    connection may mix them. Memory stays bounded: a frame longer than ``max_frame`` is
    cut to that size, emitted, and the rest of it is skipped; ``truncated_frames`` counts
    how often that happened so the listener can report it.
    """

    _MAX_LEN_DIGITS = 10

    def __init__(self, max_frame: int = 64 * 1024):
        if max_frame < 1:
            raise ValueError("max_frame must be positive")
        self.max_frame = max_frame
        self.truncated_frames = 0
        self._buf = bytearray()
        self._skip = 0  # bytes of a cut octet-counted frame still to discard
        self._skip_line = False  # discarding the rest of a cut LF-framed message
        self._scanned = 0  # bytes at the buffer start known to hold no terminator

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        frames: list[bytes] = []
        pos = self._drain(frames)
        del self._buf[:pos]
        self._scanned = max(0, self._scanned - pos)
        return frames

    def flush(self) -> list[bytes]:
        """Everything still buffered, as the connection closes: a partial last message is
        emitted as it is rather than lost."""
        frames: list[bytes] = []
        if not self._skip and not self._skip_line:
            buf = bytes(self._buf)
            header = re.match(rb"[1-9]\d{0,9} (?=<)", buf)
            frame = buf[header.end() :] if header else buf.rstrip(b"\r\n\x00")
            if len(frame) > self.max_frame:
                frame = frame[: self.max_frame]
                self.truncated_frames += 1
            if frame.strip(b"\r\n\x00"):
                frames.append(frame)
        self._buf.clear()
        self._skip, self._skip_line, self._scanned = 0, False, 0
        return frames

    def _drain(self, frames: list[bytes]) -> int:
        buf, pos, end, cap = self._buf, 0, len(self._buf), self.max_frame
        while True:
            if self._skip:
                step = min(self._skip, end - pos)
                pos += step
                self._skip -= step
                if self._skip:
                    return pos
            if self._skip_line:
                stop = _find_terminator(buf, pos)
                if stop < 0:
                    return end
                pos, self._skip_line = stop + 1, False
            while pos < end and buf[pos] in b"\r\n\x00":
                pos += 1
            if pos >= end:
                return pos
            if 0x31 <= buf[pos] <= 0x39:  # octet counting starts with a non-zero digit
                state, length, start = self._octet_header(buf, pos, end)
                if state == "wait":
                    return pos
                if state == "frame":
                    if length > cap:
                        if end - start < cap:
                            return pos
                        frames.append(bytes(buf[start : start + cap]))
                        self.truncated_frames += 1
                        taken = min(length, end - start)
                        self._skip = length - taken
                        pos = start + taken
                        continue
                    if end - start < length:
                        return pos
                    frames.append(bytes(buf[start : start + length]))
                    pos = start + length
                    continue
            stop = _find_terminator(buf, pos + self._scanned)
            if stop < 0:
                if end - pos > cap:
                    frames.append(bytes(buf[pos : pos + cap]))
                    self.truncated_frames += 1
                    self._skip_line, self._scanned = True, 0
                    return end
                self._scanned = end - pos
                return pos
            frame = bytes(buf[pos:stop]).rstrip(b"\r")
            if len(frame) > cap:
                frame = frame[:cap]
                self.truncated_frames += 1
            if frame:
                frames.append(frame)
            pos, self._scanned = stop + 1, 0

    def _octet_header(self, buf: bytearray, pos: int, end: int) -> tuple[str, int, int]:
        """("frame", length, start), ("wait", 0, 0) for more bytes, or ("text", 0, 0)."""
        if self._scanned:
            return "text", 0, 0  # already decided this is an LF-framed message
        i = pos
        limit = min(end, pos + self._MAX_LEN_DIGITS)
        while i < limit and 0x30 <= buf[i] <= 0x39:
            i += 1
        if i == end:
            return "wait", 0, 0
        if buf[i] != 0x20 or i - pos >= self._MAX_LEN_DIGITS + 1:
            return "text", 0, 0
        if i + 1 == end:
            return "wait", 0, 0
        # A syslog message starts with "<"; anything else is a text line that happens to
        # begin with a number ("404 not found"), framed by LF.
        if buf[i + 1] != 0x3C:
            return "text", 0, 0
        return "frame", int(buf[pos:i]), i + 1


_TERMINATOR = re.compile(rb"[\n\x00]")


def _find_terminator(buf: bytearray, start: int) -> int:
    m = _TERMINATOR.search(buf, start)
    return m.start() if m else -1
