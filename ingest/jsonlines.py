"""JSON-lines log ingest: the simplest way for a script or a cron job to send logs.

Each line is one JSON object. A bad line is refused on its own (a Rejection naming the
line and the key) so that one typo does not cost the rest of a batch.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal

from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.syslog import parse_rfc3339_ns
from ingest.types import DecodeError, LogBatch, LogEntry, Rejection, severity_from_text

MESSAGE_KEYS = ("message", "msg", "log")
TIME_KEYS = ("ts", "timestamp")
SEVERITY_KEYS = ("severity", "level")
NODE_KEYS = ("node", "host")
INSTANCE_KEYS = ("instance",)
ATTRIBUTES_KEY = "attributes"
TRUNCATED_ATTRIBUTE = "telltale.truncated"
DROPPED_ATTRIBUTE = "telltale.dropped_attributes"
LINE_SIZE_FACTOR = 8

# Epoch numbers carry no unit; a magnitude below each bound means that unit. Seconds
# cover dates up to year 5138, so nothing real is misread.
_EPOCH_UNITS = ((1e11, 1_000_000_000), (1e14, 1_000_000), (1e17, 1_000), (math.inf, 1))
_MAX_TS_NS = 2**63 - 1
# JSON may spell half of a UTF-16 pair ("\ud800") on its own; Python then holds a string
# that neither UTF-8 nor the database can take, so such halves become U+FFFD.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_json_lines(body: bytes, *, now_ns: int, limits: Limits = DEFAULT_LIMITS) -> LogBatch:
    """Decode newline-delimited JSON log objects.

    Recognised keys: ``message``/``msg``/``log`` (required string), ``ts``/``timestamp``
    (RFC 3339 or epoch s/ms/µs/ns by magnitude), ``severity``/``level`` (a name or an
    OpenTelemetry number), ``node``/``host``, ``instance``, ``attributes`` (an object).
    Any other key becomes an attribute too, so nothing sent is lost. A JSON line may be
    ``LINE_SIZE_FACTOR`` times ``max_log_line_bytes`` (``\\uXXXX`` escapes take up to six
    bytes per character, plus attributes); the message itself is cut to
    ``max_log_line_bytes`` and flagged.
    """
    if len(body) > limits.max_decoded_bytes:
        raise DecodeError(
            f"body is {len(body)} bytes, over the limit of {limits.max_decoded_bytes}",
            status=413,
        )
    batch = LogBatch()
    over_limit, first_over = 0, 0
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(batch.entries) + len(batch.rejected) >= limits.max_log_lines:
            over_limit += 1
            first_over = first_over or number
            continue
        try:
            batch.entries.append(_decode_line(raw, now_ns, limits))
        except _LineError as exc:
            batch.rejected.append(Rejection(field=f"line {number}", reason=str(exc)))
    if over_limit:
        batch.rejected.append(
            Rejection(
                field=f"line {first_over}",
                reason=f"more than {limits.max_log_lines} lines in one request; "
                "this line and the ones after it were refused",
                count=over_limit,
            )
        )
    return batch


class _LineError(Exception):
    pass


def _decode_line(raw: bytes, now_ns: int, limits: Limits) -> LogEntry:
    max_line = LINE_SIZE_FACTOR * limits.max_log_line_bytes
    if len(raw) > max_line:
        raise _LineError(f"line is {len(raw)} bytes, over the limit of {max_line}")
    # Invalid UTF-8 is replaced rather than refused: the line is still worth keeping.
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        obj = json.loads(text)
    except RecursionError:
        raise _LineError(f"JSON nested deeper than {limits.max_json_depth} levels") from None
    except ValueError as exc:
        raise _LineError(f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _LineError(f"expected a JSON object, got {type(obj).__name__}")
    if _depth(obj) > limits.max_json_depth:
        raise _LineError(f"JSON nested deeper than {limits.max_json_depth} levels")
    if _SURROGATE_ESCAPE.search(raw):
        obj = scrub_surrogates(obj)
    fields = dict(obj)

    message_key = next((k for k in MESSAGE_KEYS if k in fields), None)
    if message_key is None:
        raise _LineError("missing key 'message' (or 'msg', 'log')")
    message = fields.pop(message_key)
    if not isinstance(message, str):
        raise _LineError(f"key {message_key!r} must be a string, got {_json_type(message)}")

    ts_ns = now_ns
    time_key = next((k for k in TIME_KEYS if k in fields), None)
    if time_key is not None:
        value = fields.pop(time_key)
        if value is not None:
            parsed = _timestamp_ns(value)
            if parsed is None:
                raise _LineError(
                    f"key {time_key!r} must be an RFC 3339 time or an epoch number, "
                    f"got {_short(value)}"
                )
            ts_ns = parsed

    severity, severity_text = 0, ""
    severity_key = next((k for k in SEVERITY_KEYS if k in fields), None)
    if severity_key is not None:
        severity, severity_text = _severity(fields.pop(severity_key))

    node = _pop_text(fields, NODE_KEYS)
    instance = _pop_text(fields, INSTANCE_KEYS)
    nested = fields.pop(ATTRIBUTES_KEY, None)
    attributes = {key: stringify(value) for key, value in fields.items()}
    if isinstance(nested, dict):
        # The explicit attributes object wins over same-named top-level keys.
        attributes.update((str(key), stringify(value)) for key, value in nested.items())
    elif nested is not None:
        attributes[ATTRIBUTES_KEY] = stringify(nested)

    entry = LogEntry(
        ts_ns=ts_ns,
        message=message,
        severity=severity,
        severity_text=severity_text,
        node=node,
        instance=instance,
        attributes=attributes,
        source="jsonl",
    )
    limit_log_entry(entry, limits)
    return entry


def limit_log_entry(entry: LogEntry, limits: Limits) -> None:
    """Cut an over-long message and surplus attributes, flagging both, instead of dropping
    the line: a truncated log line is still evidence, a dropped one is not."""
    encoded = entry.message.encode("utf-8", errors="surrogatepass")
    if len(encoded) > limits.max_log_line_bytes:
        # errors="ignore" drops a multi-byte character cut in half at the end.
        entry.message = encoded[: limits.max_log_line_bytes].decode("utf-8", errors="ignore")
        entry.attributes[TRUNCATED_ATTRIBUTE] = "true"
    extra = len(entry.attributes) - limits.max_attributes
    if extra > 0:
        kept = list(entry.attributes.items())[: limits.max_attributes]
        entry.attributes = dict(kept)
        entry.attributes[DROPPED_ATTRIBUTE] = str(extra)


def has_surrogate_escape(raw: bytes) -> bool:
    return _SURROGATE_ESCAPE.search(raw) is not None


def scrub_surrogates(value: object) -> object:
    """``value`` with lone UTF-16 surrogates in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {scrub_surrogates(k): scrub_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_surrogates(v) for v in value]
    return value


def stringify(value: object) -> str:
    """Attribute values are strings; structured ones keep their shape as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _timestamp_ns(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        parsed = parse_rfc3339_ns(value.strip())
        if parsed is not None:
            return parsed
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            return None
        for bound, scale in _EPOCH_UNITS:
            if value < bound:
                # Decimal keeps a float's printed digits: 1700000000.25 s is exactly .25 s.
                ns = value * scale if isinstance(value, int) else int(Decimal(repr(value)) * scale)
                return ns if ns <= _MAX_TS_NS else None
    return None


def _severity(value: object) -> tuple[int, str]:
    """(number, text as sent); unknown names keep their text with number 0."""
    if isinstance(value, bool) or value is None:
        return 0, ""
    if isinstance(value, int | float):
        number = int(value) if math.isfinite(value) else 0
        return (number, "") if 1 <= number <= 24 else (0, "")
    text = value if isinstance(value, str) else stringify(value)
    if text.strip().isascii() and text.strip().isdigit() and len(text.strip()) <= 3:
        number = int(text)
        return (number if 1 <= number <= 24 else 0), ""
    return severity_from_text(text), text


def _pop_text(fields: dict, keys: tuple[str, ...]) -> str | None:
    key = next((k for k in keys if k in fields), None)
    if key is None:
        return None
    value = fields.pop(key)
    return None if value is None or value == "" else stringify(value)


def _depth(obj: object) -> int:
    """How many objects/arrays deep ``obj`` nests (a flat object is 1)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return deepest


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _short(value: object) -> str:
    text = stringify(value) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
