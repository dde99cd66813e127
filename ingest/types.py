"""The data every decoder produces and the writer consumes.

Decoders never raise anything but ``DecodeError`` (the whole payload is unusable)
and report per-item problems as ``Rejection`` rows so that the valid rest of a
request is still stored (partial success, as Prometheus and OTLP do).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

# Prometheus' special NaN bit patterns: an explicit NaN sample and the staleness
# marker written when a series disappears from a scrape.
NORMAL_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
STALE_NAN_BITS = 0x7FF0000000000002


def is_stale_marker(value: float) -> bool:
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS


class DecodeError(ValueError):
    """The payload as a whole cannot be used; the message names the problem and field."""

    def __init__(self, message: str, field: str = "body", status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status

    def as_dict(self) -> dict:
        return {"error": str(self), "field": self.field}


@dataclass(slots=True)
class Rejection:
    """Part of a payload that was refused while the rest was accepted."""

    field: str  # where in the payload, e.g. "timeseries[3].labels"
    reason: str
    count: int = 1  # samples or log lines refused

    def as_dict(self) -> dict:
        return {"field": self.field, "reason": self.reason, "count": self.count}


Labels = tuple[tuple[str, str], ...]  # sorted by name; includes ("__name__", metric)


@dataclass(slots=True)
class SeriesSamples:
    labels: Labels
    timestamps_ms: list[int]
    values: list[float]

    @property
    def metric(self) -> str:
        for name, value in self.labels:
            if name == "__name__":
                return value
        return ""


@dataclass(slots=True)
class MetricBatch:
    series: list[SeriesSamples] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def sample_count(self) -> int:
        return sum(len(s.timestamps_ms) for s in self.series)

    @property
    def rejected_count(self) -> int:
        return sum(r.count for r in self.rejected)


# OpenTelemetry severity numbers are the canonical scale (1-24); these are the
# first number of each range.
SEVERITY_TRACE, SEVERITY_DEBUG, SEVERITY_INFO = 1, 5, 9
SEVERITY_WARN, SEVERITY_ERROR, SEVERITY_FATAL = 13, 17, 21
SEVERITY_NAMES = (
    (21, "FATAL"),
    (17, "ERROR"),
    (13, "WARN"),
    (9, "INFO"),
    (5, "DEBUG"),
    (1, "TRACE"),
)


def severity_name(number: int) -> str:
    for floor, name in SEVERITY_NAMES:
        if number >= floor:
            return name
    return "UNSPECIFIED"


@dataclass(slots=True)
class LogEntry:
    ts_ns: int
    message: str
    severity: int = 0  # OpenTelemetry severity number, 0 = unspecified
    severity_text: str = ""
    node: str | None = None  # host name as sent
    instance: str | None = None  # VM/container name as sent
    attributes: dict[str, str] = field(default_factory=dict)
    source: str = ""  # "otlp", "syslog", "jsonl", "agent", "simulator"


@dataclass(slots=True)
class LogBatch:
    entries: list[LogEntry] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def rejected_count(self) -> int:
        return sum(r.count for r in self.rejected)


# Names clients use for severities: OpenTelemetry's short names, syslog keywords and the
# spellings common logging libraries emit. Syslog's extra levels land on the in-between
# OpenTelemetry numbers so that ordering survives (notice > info, crit > err).
_SEVERITY_BY_TEXT = {
    "trace": 1, "debug": 5, "dbg": 5, "verbose": 5, "info": 9, "information": 9,
    "informational": 9, "notice": 10, "warn": 13, "warning": 13, "err": 17, "error": 17,
    "crit": 18, "critical": 18, "alert": 19, "emerg": 21, "emergency": 21, "fatal": 21,
    "panic": 21,
}  # fmt: skip
_OTEL_SHORT_NAMES = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}


def severity_from_text(text: str) -> int:
    """OpenTelemetry severity number for a level name, 0 when the name is not known.

    Accepts OpenTelemetry's numbered short names too ("INFO2", "ERROR3").
    """
    key = text.strip().lower()
    number = _SEVERITY_BY_TEXT.get(key)
    if number is not None:
        return number
    if len(key) > 1 and key[-1] in "1234" and key[:-1] in _OTEL_SHORT_NAMES:
        return _OTEL_SHORT_NAMES[key[:-1]] + int(key[-1]) - 1
    return 0
