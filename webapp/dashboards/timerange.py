"""The page's time range, read from and written to the URL so every view is shareable.

``?range=6h`` (relative to now) or ``?from=<ISO or epoch s>&to=<...>`` (absolute).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

PRESETS = (
    ("15m", "Last 15 minutes", 15 * 60),
    ("1h", "Last hour", 3600),
    ("6h", "Last 6 hours", 6 * 3600),
    ("24h", "Last 24 hours", 86400),
    ("7d", "Last 7 days", 7 * 86400),
    ("30d", "Last 30 days", 30 * 86400),
)
PRESET_SECONDS = {key: seconds for key, _, seconds in PRESETS}
DEFAULT_PRESET = "1h"
MAX_POINTS = 1000


@dataclass(frozen=True, slots=True)
class TimeRange:
    start_ms: int
    end_ms: int
    preset: str | None  # None for an absolute range

    @property
    def step_ms(self) -> int:
        return max(1000, (self.end_ms - self.start_ms) // MAX_POINTS)

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ms / 1000, tz=UTC)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.end_ms / 1000, tz=UTC)

    def query(self) -> str:
        if self.preset:
            return f"range={self.preset}"
        return f"from={self.start_ms / 1000:.3f}&to={self.end_ms / 1000:.3f}"

    @property
    def label(self) -> str:
        for key, label, _ in PRESETS:
            if key == self.preset:
                return label
        return f"{self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M} UTC"


def _parse_instant(value: str) -> int | None:
    try:
        return int(float(value) * 1000)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def from_request(request, default: str = DEFAULT_PRESET) -> TimeRange:
    now = int(time.time() * 1000)
    g = request.GET
    if g.get("from") and g.get("to"):
        start, end = _parse_instant(g["from"]), _parse_instant(g["to"])
        if start is not None and end is not None and end > start:
            return TimeRange(start, min(end, now + 3600_000), None)
    preset = g.get("range", default)
    if preset not in PRESET_SECONDS:
        preset = default
    return TimeRange(now - PRESET_SECONDS[preset] * 1000, now, preset)
