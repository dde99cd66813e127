"""OTLP/HTTP metrics and logs decoders (protobuf and JSON encodings).

Metrics are translated the way Prometheus' own OTLP receiver does, so the same dashboards
and alert rules work whichever way a series arrived: Prometheus-charset names, ``_total``
on monotonic counters, classic ``_bucket``/``_sum``/``_count`` histograms, staleness for
data points flagged as having no recorded value. Unlike Prometheus, resource attributes
become labels directly (there is no ``target_info`` join in Telltale's queries), and
names get no unit suffix.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from decimal import Decimal

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from ingest.jsonlines import (
    has_surrogate_escape,
    limit_log_entry,
    scrub_surrogates,
    stringify,
)
from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.types import (
    STALE_NAN,
    DecodeError,
    Labels,
    LogBatch,
    LogEntry,
    MetricBatch,
    Rejection,
    SeriesSamples,
    severity_from_text,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
NODE_ATTRIBUTES = ("host.name", "host.id")
INSTANCE_ATTRIBUTES = ("vm.name", "service.instance.id", "k8s.pod.name")

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_ID_KEYS = frozenset({"traceId", "spanId", "trace_id", "span_id"})
_NS_PER_MS = 1_000_000
_MAX_INT64 = 2**63 - 1
_TEMPORALITY_NAMES = {
    metrics_pb2.AGGREGATION_TEMPORALITY_UNSPECIFIED: "unspecified",
    metrics_pb2.AGGREGATION_TEMPORALITY_DELTA: "delta",
}


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _load(body: bytes, content_type: str, message: Message, limits: Limits) -> Message:
    kind = media_type(content_type)
    if kind not in (PROTOBUF, JSON):
        raise DecodeError(
            f"unsupported content type {content_type!r}: OTLP/HTTP takes {PROTOBUF} or {JSON}",
            field="Content-Type",
            status=415,
        )
    if len(body) > limits.max_decoded_bytes:
        raise DecodeError(
            f"body is {len(body)} bytes, over the limit of {limits.max_decoded_bytes}",
            status=413,
        )
    name = type(message).__name__
    if kind == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (ProtobufDecodeError, ValueError, RecursionError) as exc:
            raise DecodeError(f"not a valid protobuf {name}: {exc}") from None
        return message
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError(f"expected a JSON object ({name}), got {type(document).__name__}")
    if has_surrogate_escape(body):
        # The protobuf runtime fails on such strings with a SystemError, not a ParseError.
        try:
            document = scrub_surrogates(document)
        except RecursionError:
            raise DecodeError(f"not a valid OTLP JSON {name}: nested too deeply") from None
    _hex_ids_to_base64(document)
    try:
        # The OTLP spec tells receivers to ignore unknown fields, for forward compatibility.
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(f"not a valid OTLP JSON {name}: {exc}") from None
    return message


def _hex_ids_to_base64(document: dict) -> None:
    """OTLP JSON writes trace and span ids as hex where proto3 JSON expects base64.

    Only the messages that carry ids are visited (log records, exemplars), which keeps
    this cheap on large requests. An id that is not hex but valid base64 (some senders
    use the proto3 default) is left alone; one that is neither is dropped rather than
    failing the whole request.
    """
    logs = _children([document], "resourceLogs", "scopeLogs", "logRecords")
    metrics = _children([document], "resourceMetrics", "scopeMetrics", "metrics")
    kinds = (value for metric in metrics for value in metric.values() if isinstance(value, dict))
    exemplars = _children(kinds, "dataPoints", "exemplars")
    for holder in (*logs, *exemplars):
        for key in _ID_KEYS.intersection(holder):
            value = holder[key]
            if not isinstance(value, str):
                continue
            try:
                holder[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                try:
                    base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    del holder[key]


def _children(items, *path: str) -> list[dict]:
    """The dicts found by following ``path`` (camelCase or snake_case keys, as proto3 JSON
    parsers accept both) through lists; anything of the wrong shape is skipped, for
    json_format to report."""
    current = list(items)
    for key in path:
        snake = re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), key)
        found: list = []
        for item in current:
            if isinstance(item, dict):
                for name in {key, snake}:
                    value = item.get(name)
                    found.extend(value if isinstance(value, list) else [value])
        current = [item for item in found if isinstance(item, dict)]
    return current


def format_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``, which Prometheus uses for le/quantile
    label values: shortest round-trip digits, never an exponent, no trailing ".0"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def any_value_text(value: AnyValue) -> str:
    """An attribute or body as text: strings as they are, structures as compact JSON."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return ""
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return format_float(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return stringify(_any_value_python(value))


def _any_value_python(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value_python(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "double_value" and not math.isfinite(value.double_value):
        return format_float(value.double_value)
    return getattr(value, kind) if kind else None


def sanitize_metric_name(name: str) -> str:
    name = _INVALID_METRIC_CHARS.sub("_", name)
    return "_" + name if name[:1].isdigit() else name


@functools.lru_cache(maxsize=4096)
def sanitize_label_name(name: str) -> str:
    """Prometheus' NormalizeLabel: invalid characters become ``_``; a leading digit or a
    single leading underscore gets a ``key`` prefix (``__`` stays reserved)."""
    name = _INVALID_LABEL_CHARS.sub("_", name)
    if name[:1].isdigit():
        return "key_" + name
    if name.startswith("_") and not name.startswith("__"):
        return "key" + name
    return name


def _attribute_labels(attributes) -> dict[str, str]:
    """Attributes as labels. Keys that sanitise to the same name (``a.b``, ``a_b``) are
    joined with ``;`` in key order, as Prometheus does, rather than one silently winning."""
    labels: dict[str, str] = {}
    collided = False
    for kv in attributes:
        value = any_value_text(kv.value)
        if not kv.key or not value:
            continue  # an empty label value means "no label" in Prometheus
        name = sanitize_label_name(kv.key)
        collided = collided or name in labels
        labels[name] = value
    if not collided:
        return labels
    labels.clear()
    for kv in sorted(attributes, key=lambda kv: kv.key):
        value = any_value_text(kv.value)
        if kv.key and value:
            name = sanitize_label_name(kv.key)
            labels[name] = f"{labels[name]};{value}" if name in labels else value
    return labels


def _resource_labels(attributes) -> dict[str, str]:
    """Resource attributes plus Prometheus' ``job``/``instance`` from service.*."""
    labels = _attribute_labels(attributes)
    raw = {kv.key: any_value_text(kv.value) for kv in attributes}
    if raw.get("service.name"):
        namespace = raw.get("service.namespace")
        labels["job"] = f"{namespace}/{raw['service.name']}" if namespace else raw["service.name"]
    if raw.get("service.instance.id"):
        labels["instance"] = raw["service.instance.id"]
    return labels


class _MetricsBuilder:
    def __init__(self, now_ms: int, limits: Limits):
        self.limits = limits
        self.oldest_ms = now_ms - limits.max_age_ms
        self.newest_ms = now_ms + limits.max_future_ms
        self.series: dict[Labels, SeriesSamples] = {}
        self.samples = 0
        self.rejections: dict[tuple[str, str], int] = {}

    def reject(self, where: str, reason: str, count: int = 1) -> None:
        # Aggregated per place and reason: a million bad points make one row, not a million.
        self.rejections[(where, reason)] = self.rejections.get((where, reason), 0) + count

    def add_metric(self, metric, resource: dict[str, str], where: str) -> None:
        kind = metric.WhichOneof("data")
        name = sanitize_metric_name(metric.name)
        if kind is None:
            self.reject(where, f"metric {metric.name!r} has no data")
            return
        data = getattr(metric, kind)
        points = data.data_points
        if not points:
            return
        if not name:
            self.reject(where, "metric has no name", len(points))
            return
        temporality = getattr(data, "aggregation_temporality", CUMULATIVE)
        if temporality != CUMULATIVE:
            label = _TEMPORALITY_NAMES.get(temporality, str(temporality))
            self.reject(
                where,
                f"metric {name!r}: {label} temporality is not supported, "
                "only cumulative (configure the exporter or a cumulative converter)",
                len(points),
            )
            return
        if kind == "sum" and data.is_monotonic and not name.endswith("_total"):
            name += "_total"
        if len(name) + len("_bucket") > self.limits.max_label_value_length:
            self.reject(where, "metric name too long", len(points))
            return
        # Room for __name__, and for le/quantile where the type has one.
        reserved = 2 if kind in ("histogram", "summary") else 1
        for point in points:
            base = self.point_labels(point, resource, where, reserved)
            if base is None:
                continue
            ts_ms = self.timestamp_ms(point, name, where)
            if ts_ms is None:
                continue
            stale = bool(point.flags & NO_RECORDED_VALUE)
            samples = getattr(self, f"_{kind}_samples")(point, name, stale, where)
            if samples is not None:
                self.append(samples, base, ts_ms, where)

    def point_labels(self, point, resource: dict, where: str, reserved: int) -> dict | None:
        """Resource labels (checked once, by the caller) overlaid with the point's own."""
        own = _attribute_labels(point.attributes)
        labels = resource | own
        problem = self.label_problem(own)
        if problem is None and len(labels) + reserved > self.limits.max_labels:
            problem = f"more than {self.limits.max_labels} labels per series"
        if problem is not None:
            self.reject(where, problem)
            return None
        return labels

    def label_problem(self, labels: dict[str, str]) -> str | None:
        limits = self.limits
        for name, value in labels.items():
            if len(name) > limits.max_label_name_length:
                return f"label name longer than {limits.max_label_name_length}"
            if len(value) > limits.max_label_value_length:
                return f"label value longer than {limits.max_label_value_length}"
        return None

    def timestamp_ms(self, point, name: str, where: str) -> int | None:
        ts_ms = point.time_unix_nano // _NS_PER_MS
        if ts_ms < self.oldest_ms:
            self.reject(where, f"metric {name!r}: timestamp older than the accepted window")
            return None
        if ts_ms > self.newest_ms:
            self.reject(where, f"metric {name!r}: timestamp too far in the future")
            return None
        return ts_ms

    def _gauge_samples(self, point, name: str, stale: bool, where: str) -> list | None:
        kind = point.WhichOneof("value")
        if kind is None and not stale:
            self.reject(where, f"metric {name!r}: data point has no value")
            return None
        value = STALE_NAN if stale else float(getattr(point, kind))
        return [(name, None, value)]

    _sum_samples = _gauge_samples

    def _histogram_samples(self, point, name: str, stale: bool, where: str) -> list | None:
        counts, bounds = point.bucket_counts, point.explicit_bounds
        if counts and len(counts) != len(bounds) + 1:
            self.reject(
                where, f"metric {name!r}: bucket_counts must have one more entry than bounds"
            )
            return None
        samples, cumulative = [], 0
        for bound, count in zip(bounds, counts, strict=False):
            cumulative += count
            value = STALE_NAN if stale else float(cumulative)
            samples.append((name + "_bucket", ("le", format_float(bound)), value))
        # Prometheus takes the +Inf bucket from count, so it is right even without buckets.
        samples.append((name + "_bucket", ("le", "+Inf"), STALE_NAN if stale else point.count))
        return samples + self._sum_count(point, name, stale, point.HasField("sum"))

    def _exponential_histogram_samples(self, point, name: str, stale: bool, where: str) -> list:
        """Only ``_sum`` and ``_count``: exponential buckets would need native histograms,
        which Telltale's narrow sample rows do not store."""
        return self._sum_count(point, name, stale, point.HasField("sum"))

    def _summary_samples(self, point, name: str, stale: bool, where: str) -> list:
        samples = [
            (name, ("quantile", format_float(q.quantile)), STALE_NAN if stale else q.value)
            for q in point.quantile_values
        ]
        return samples + self._sum_count(point, name, stale, True)

    @staticmethod
    def _sum_count(point, name: str, stale: bool, has_sum: bool) -> list:
        samples = [(name + "_count", None, STALE_NAN if stale else float(point.count))]
        if has_sum:
            samples.append((name + "_sum", None, STALE_NAN if stale else point.sum))
        return samples

    def append(self, samples: list, base: dict[str, str], ts_ms: int, where: str) -> None:
        limits = self.limits
        if self.samples + len(samples) > limits.max_samples:
            self.reject(where, f"more than {limits.max_samples} samples in one request")
            return
        keys = []
        for name, extra, _ in samples:
            labels = dict(base)
            if extra is not None:
                if len(extra[1]) > limits.max_label_value_length:
                    # le/quantile values are numbers printed in full: 1e300 has 301 digits
                    reason = f"{extra[0]} label value longer than {limits.max_label_value_length}"
                    self.reject(where, reason)
                    return
                labels[extra[0]] = extra[1]
            labels["__name__"] = name
            keys.append(tuple(sorted(labels.items())))
        new = sum(1 for key in set(keys) if key not in self.series)
        if len(self.series) + new > limits.max_series:
            self.reject(where, f"more than {limits.max_series} series in one request")
            return
        for key, (_, _, value) in zip(keys, samples, strict=True):
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = SeriesSamples(key, [], [])
            series.timestamps_ms.append(ts_ms)
            series.values.append(float(value))
        self.samples += len(samples)

    def batch(self) -> MetricBatch:
        rejected = [Rejection(w, r, n) for (w, r), n in self.rejections.items()]
        return MetricBatch(series=list(self.series.values()), rejected=rejected)


def decode_otlp_metrics(
    body: bytes, *, content_type: str, now_ms: int, limits: Limits = DEFAULT_LIMITS
) -> MetricBatch:
    """Decode an OTLP ExportMetricsServiceRequest into series.

    Delta sums and histograms are refused with a Rejection (Telltale stores cumulative
    series; silently storing deltas as counters would corrupt rate()). Rejection counts
    are data points, which is what OTLP's partial success reports.

    Label precedence, lowest first: resource attributes, ``job``/``instance`` derived from
    service.*, data-point attributes, then ``__name__`` and ``le``/``quantile``.
    """
    request = _load(body, content_type, ExportMetricsServiceRequest(), limits)
    builder = _MetricsBuilder(now_ms, limits)
    for ri, resource_metrics in enumerate(request.resource_metrics):
        resource = _resource_labels(resource_metrics.resource.attributes)
        problem = builder.label_problem(resource)
        for si, scope_metrics in enumerate(resource_metrics.scope_metrics):
            for mi, metric in enumerate(scope_metrics.metrics):
                where = f"resource_metrics[{ri}].scope_metrics[{si}].metrics[{mi}]"
                if problem is None:
                    builder.add_metric(metric, resource, where)
                elif kind := metric.WhichOneof("data"):
                    builder.reject(where, problem, len(getattr(metric, kind).data_points))
    return builder.batch()


def decode_otlp_logs(
    body: bytes, *, content_type: str, now_ns: int, limits: Limits = DEFAULT_LIMITS
) -> LogBatch:
    """Decode an OTLP ExportLogsServiceRequest into one LogEntry per LogRecord.

    Record attributes win over resource attributes of the same name and are kept first
    when ``max_attributes`` cuts the rest (they say more about the line).
    """
    request = _load(body, content_type, ExportLogsServiceRequest(), limits)
    batch = LogBatch()
    over_limit = 0
    for resource_logs in request.resource_logs:
        resource = {kv.key: any_value_text(kv.value) for kv in resource_logs.resource.attributes}
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if len(batch.entries) >= limits.max_log_lines:
                    over_limit += 1
                    continue
                batch.entries.append(_log_entry(record, resource, now_ns, limits))
    if over_limit:
        reason = f"more than {limits.max_log_lines} log records in one request"
        batch.rejected.append(Rejection("resource_logs", reason, over_limit))
    return batch


def _log_entry(record, resource: dict[str, str], now_ns: int, limits: Limits) -> LogEntry:
    attributes = {kv.key: any_value_text(kv.value) for kv in record.attributes}
    if record.event_name:
        attributes.setdefault("event.name", record.event_name)
    for key, value in resource.items():
        attributes.setdefault(key, value)
    severity = record.severity_number if 1 <= record.severity_number <= 24 else 0
    if severity == 0 and record.severity_text:
        severity = severity_from_text(record.severity_text)
    entry = LogEntry(
        ts_ns=_valid_ns(record.time_unix_nano)
        or _valid_ns(record.observed_time_unix_nano)
        or now_ns,
        message=any_value_text(record.body),
        severity=severity,
        severity_text=record.severity_text,
        node=_first(attributes, NODE_ATTRIBUTES, resource),
        instance=_first(attributes, INSTANCE_ATTRIBUTES, resource),
        attributes=attributes,
        source="otlp",
    )
    limit_log_entry(entry, limits)
    # Ids go in after the cut so that correlation with traces always survives it.
    if any(record.trace_id):
        entry.attributes["trace_id"] = record.trace_id.hex()
    if any(record.span_id):
        entry.attributes["span_id"] = record.span_id.hex()
    return entry


def _valid_ns(ts_ns: int) -> int:
    # fixed64 on the wire, but no signed 64-bit column holds a time past 2262: treat such
    # a value as unset so that the fallback time applies.
    return ts_ns if ts_ns <= _MAX_INT64 else 0


def _first(attributes: dict[str, str], keys: tuple[str, ...], resource: dict) -> str | None:
    """The first of ``keys`` set on the resource, else on the record."""
    for source in (resource, attributes):
        for key in keys:
            if source.get(key):
                return source[key]
    return None


def otlp_partial_success_response(
    kind: str, rejected: int, message: str, content_type: str
) -> bytes:
    """The body of a 200 answer to an OTLP export, in the request's encoding.

    ``partial_success`` is set when something was rejected, and also for a message alone,
    which the spec allows as a warning to the sender.
    """
    if kind == "metrics":
        response: Message = ExportMetricsServiceResponse()
        if rejected > 0 or message:
            response.partial_success.rejected_data_points = rejected
            response.partial_success.error_message = message
    elif kind == "logs":
        response = ExportLogsServiceResponse()
        if rejected > 0 or message:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = message
    else:
        raise ValueError(f"kind must be 'metrics' or 'logs', not {kind!r}")
    if media_type(content_type) == JSON:
        return json_format.MessageToJson(response, indent=None).encode()
    return response.SerializeToString()
