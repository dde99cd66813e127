"""Prometheus text exposition 0.0.4 and OpenMetrics 1.0 text, as scraped from exporters.

Formats: https://prometheus.io/docs/instrumenting/exposition_formats/ and
https://github.com/prometheus/OpenMetrics/blob/main/specification/OpenMetrics.md.

A hand parser, one regular expression per line, is several times faster than
prometheus_client's and lets every bad line become a ``Rejection`` (``line N``) while the
good lines of the same scrape are kept. Semantics follow Prometheus' scraper: target
labels are attached with ``exported_`` renaming unless ``honor_labels``, empty label
values mean "no label", OpenMetrics ``_created`` series are dropped, exemplars ignored,
and a series exposed twice keeps its first sample.
"""

from __future__ import annotations

import re

from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.remote_write import LABEL_NAME_RE, cap_rejections, short
from ingest.types import NORMAL_NAN, DecodeError, Labels, MetricBatch, Rejection, SeriesSamples

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[ \t]*[a-zA-Z_][a-zA-Z0-9_]*[ \t]*=[ \t]*"(?:[^"\\\n]|\\.)*"[ \t]*'
# name, optional {label block}, value, optional timestamp, optional "# exemplar".
# Quoted values are matched as units so that "}" or "#" inside them end nothing.
_SAMPLE_RE = re.compile(
    rf"({_NAME})"
    r'(?:[ \t]*\{((?:[^"}]|"(?:[^"\\\n]|\\.)*")*)\})?'
    r"[ \t]+([^ \t]+)"
    r"(?:[ \t]+([^ \t#][^ \t]*))?"
    r"[ \t]*(?:#(.*))?"
)
_LABEL_BLOCK_RE = re.compile(rf"(?:{_LABEL},)*(?:{_LABEL})?")
_LABEL_PAIR_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"')
_NAME_RE = re.compile(_NAME)
_ESCAPE_RE = re.compile(r"\\(.)")
_INT_RE = re.compile(r"-?[0-9]+")
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}

_SPECIAL_VALUES = {
    "NaN": NORMAL_NAN,  # Go's math.NaN(), which is what Prometheus stores for "NaN"
    "+Inf": float("inf"),
    "Inf": float("inf"),
    "-Inf": float("-inf"),
}
_TEXT_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_OPENMETRICS_TYPES = frozenset(
    {"counter", "gauge", "histogram", "gaugehistogram", "stateset", "info", "summary", "unknown"}
)
# Families whose "<family>_created" sample Prometheus turns into a created timestamp
# instead of a series.
_CREATED_TYPES = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


def parse_exposition(
    data: bytes,
    *,
    content_type: str,
    scrape_ts_ms: int,
    target_labels: dict[str, str] | None = None,
    honor_labels: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> MetricBatch:
    """Parse one scrape; every sample becomes a one-sample series."""
    openmetrics = _is_openmetrics(content_type)
    if len(data) > limits.max_decoded_bytes:
        raise DecodeError(
            f"exposition is {len(data)} bytes, more than the limit of {limits.max_decoded_bytes}",
            status=413,
        )
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"exposition is not valid UTF-8 (byte {exc.start})") from None
    targets = _check_target_labels(target_labels or {}, limits)
    low, high = scrape_ts_ms - limits.max_age_ms, scrape_ts_ms + limits.max_future_ms
    max_series = min(limits.max_series, limits.max_samples)

    rejected: list[Rejection] = []
    out: list[SeriesSamples] = []
    first_line: dict[Labels, int] = {}
    family, family_type = "", ""
    eof_line = 0
    after_eof = 0
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()  # the newline that ends the last line
    for lineno, line in enumerate(lines, 1):
        if line.endswith("\r"):
            line = line[:-1]
        if line[:1] in (" ", "\t"):
            line = line.lstrip(" \t")
        if not line:
            continue
        if eof_line:
            after_eof += 1
            continue
        if line[0] == "#":
            if openmetrics and line == "# EOF":
                eof_line = lineno
            elif line.startswith("# TYPE") and line[6:7] in ("", " ", "\t"):
                family, family_type, problem = _type_line(line, openmetrics)
                if problem:
                    rejected.append(Rejection(f"line {lineno}", problem, 0))
            continue  # HELP, UNIT and plain comments carry nothing we store

        match = _SAMPLE_RE.fullmatch(line)
        if match is None:
            rejected.append(Rejection(f"line {lineno}", _diagnose(line)))
            continue
        name, block, value_text, ts_text, exemplar = match.groups()
        if (
            openmetrics
            and family_type in _CREATED_TYPES
            and name.endswith("_created")
            and name[:-8] == family
        ):
            continue
        if exemplar is not None and not openmetrics:
            rejected.append(
                Rejection(
                    f"line {lineno}",
                    "unexpected text after the sample (exemplars exist only in OpenMetrics)",
                )
            )
            continue

        value = _SPECIAL_VALUES.get(value_text)
        if value is None:
            value = _parse_float(value_text)
            if value is None:
                rejected.append(
                    Rejection(f"line {lineno}", f"invalid sample value {short(value_text)}")
                )
                continue
            if value != value:
                value = NORMAL_NAN
        if ts_text is None:
            ts = scrape_ts_ms
        else:
            ts = _parse_timestamp(ts_text, openmetrics)
            if ts is None:
                unit = "seconds" if openmetrics else "integer milliseconds"
                rejected.append(
                    Rejection(f"line {lineno}", f"invalid timestamp {short(ts_text)}: {unit}")
                )
                continue
            if ts < low or ts > high:
                rejected.append(
                    Rejection(
                        f"line {lineno}",
                        f"timestamp {ts} ms is outside the accepted window "
                        f"({limits.max_age_ms // 1000} s before to "
                        f"{limits.max_future_ms // 1000} s after the scrape)",
                    )
                )
                continue

        labels, problem = _labels(name, block, targets, honor_labels, limits)
        if labels is None:
            rejected.append(Rejection(f"line {lineno}", problem))
            continue
        previous = first_line.get(labels)
        if previous is not None:
            rejected.append(
                Rejection(f"line {lineno}", f"duplicate series: same labels as line {previous}")
            )
            continue
        if len(out) >= max_series:
            raise DecodeError(f"scrape has more than the limit of {max_series} samples", status=413)
        first_line[labels] = lineno
        out.append(SeriesSamples(labels, [ts], [value]))

    if after_eof:
        rejected.append(
            Rejection(f"line {eof_line}", f"{after_eof} lines after '# EOF' ignored", after_eof)
        )
    elif openmetrics and not eof_line:
        rejected.append(
            Rejection("body", "OpenMetrics exposition does not end with '# EOF'; truncated?", 0)
        )
    return MetricBatch(series=out, rejected=cap_rejections(rejected))


def _is_openmetrics(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/openmetrics-text":
        return True
    if "protobuf" in media_type:
        raise DecodeError(
            f"exposition content type {short(content_type)} is not supported; "
            "scrape with Accept: text/plain or application/openmetrics-text",
            field="content_type",
            status=415,
        )
    return False  # text/plain, empty or unknown: Prometheus falls back to the text format


def _check_target_labels(target_labels: dict[str, str], limits: Limits) -> list[tuple[str, str]]:
    for name, value in target_labels.items():
        if (
            name == "__name__"
            or not LABEL_NAME_RE.fullmatch(name)
            or len(name) > limits.max_label_name_length
            or len(value) > limits.max_label_value_length
        ):
            raise DecodeError(f"invalid target label {short(name)}", field="target_labels")
    return sorted(target_labels.items())


def _type_line(line: str, openmetrics: bool) -> tuple[str, str, str]:
    """Return (family, type, problem) for a ``# TYPE`` line."""
    parts = line.split(None, 3)
    if len(parts) != 4 or not _NAME_RE.fullmatch(parts[2]):
        return "", "", "malformed TYPE line: expected '# TYPE <metric name> <type>'"
    family, kind = parts[2], parts[3].strip()
    if kind not in (_OPENMETRICS_TYPES if openmetrics else _TEXT_TYPES):
        return family, "", f"unknown metric type {short(kind)}"
    return family, kind, ""


def _parse_float(text: str) -> float | None:
    if "_" in text:  # Python accepts 1_000, the formats do not
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _parse_timestamp(text: str, openmetrics: bool) -> int | None:
    if not openmetrics:
        return int(text) if _INT_RE.fullmatch(text) else None
    seconds = _parse_float(text)
    if seconds is None or seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return round(seconds * 1000)


def _labels(
    name: str,
    block: str | None,
    targets: list[tuple[str, str]],
    honor_labels: bool,
    limits: Limits,
) -> tuple[Labels | None, str]:
    """Build the sorted label set of one sample, or say why it cannot be stored."""
    labels = {"__name__": name}
    if block:
        if not _LABEL_BLOCK_RE.fullmatch(block):
            return None, 'malformed label set: expected name="value" pairs separated by commas'
        empty: set[str] = set()
        for label, value in _LABEL_PAIR_RE.findall(block):
            if label in labels or label in empty:
                return None, f"duplicate label name {short(label)}"
            if len(label) > limits.max_label_name_length:
                return None, (
                    f"label name is {len(label)} characters long, more than the limit of "
                    f"{limits.max_label_name_length}"
                )
            if "\\" in value:
                value = _ESCAPE_RE.sub(_unescape, value)
            if len(value) > limits.max_label_value_length:
                return None, (
                    f"value of label {short(label)} is {len(value)} characters long, more "
                    f"than the limit of {limits.max_label_value_length}"
                )
            if value:
                labels[label] = value
            else:
                empty.add(label)  # Prometheus treats an empty value as an absent label
    if targets:
        _attach_targets(labels, targets, honor_labels)
    if len(labels) > limits.max_labels:
        return None, f"series has {len(labels)} labels, more than the limit of {limits.max_labels}"
    return tuple(sorted(labels.items())), ""


def _attach_targets(
    labels: dict[str, str], targets: list[tuple[str, str]], honor_labels: bool
) -> None:
    """Prometheus' rules: the target wins and the exposed label becomes exported_<name>."""
    if honor_labels:
        for name, value in targets:
            if name not in labels and value:
                labels[name] = value
        return
    conflicts = []
    for name, value in targets:
        exposed = labels.get(name)
        if exposed is not None:
            conflicts.append((name, exposed))
        if value:
            labels[name] = value
        else:
            labels.pop(name, None)
    # Shortest names first, each to the first free exported_...exported_<name>.
    for name, exposed in sorted(conflicts, key=lambda item: len(item[0])):
        new_name = "exported_" + name
        while new_name in labels:
            new_name = "exported_" + new_name
        labels[new_name] = exposed


def _unescape(match: re.Match[str]) -> str:
    char = match.group(1)
    return _UNESCAPE.get(char, "\\" + char)  # unknown escapes stay as written, as in Prometheus


def _diagnose(line: str) -> str:
    name = _NAME_RE.match(line)
    if name is None:
        return f"expected a metric name at the start of the line, found {short(line[:20])}"
    rest = line[name.end() :].lstrip(" \t")
    if rest.startswith("{"):
        return 'malformed label set: expected name="value" pairs separated by commas, then }'
    if not rest:
        return f"sample {short(name.group())} has no value"
    return "expected '<name>{<labels>} <value> [<timestamp>]'"
