"""Per-request limits that keep one hostile or broken client from exhausting memory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 16 * 1024 * 1024  # compressed body as received
    max_decoded_bytes: int = 64 * 1024 * 1024  # after decompression
    max_series: int = 100_000  # series (or data points' series) per request
    max_samples: int = 2_000_000
    max_labels: int = 64  # labels per series, __name__ included
    max_label_name_length: int = 256
    max_label_value_length: int = 4096
    max_log_lines: int = 100_000
    max_log_line_bytes: int = 64 * 1024
    max_attributes: int = 128
    max_json_depth: int = 32
    # accepted sample timestamp window relative to "now" (ms)
    max_age_ms: int = 7 * 24 * 3600 * 1000
    max_future_ms: int = 10 * 60 * 1000


DEFAULT_LIMITS = Limits()
