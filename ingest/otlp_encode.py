"""OTLP/HTTP request bodies from ``LogEntry`` rows: what the simulator's live mode sends,
exactly as an OpenTelemetry collector or SDK would."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from ingest.types import LogEntry

OTLP_PROTOBUF_HEADERS = {"Content-Type": "application/x-protobuf"}


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def encode_otlp_logs(entries: Iterable[LogEntry], scope: str = "telltale") -> bytes:
    """One ResourceLogs per (node, instance); the node becomes ``host.name`` and the
    instance ``vm.name``, as the OTLP decoder reads them back."""
    request = ExportLogsServiceRequest()
    groups: dict[tuple[str | None, str | None], object] = {}
    for entry in entries:
        key = (entry.node, entry.instance)
        scope_logs = groups.get(key)
        if scope_logs is None:
            resource_logs = request.resource_logs.add()
            if entry.node:
                resource_logs.resource.attributes.append(_kv("host.name", entry.node))
            if entry.instance:
                resource_logs.resource.attributes.append(_kv("vm.name", entry.instance))
            scope_logs = resource_logs.scope_logs.add()
            scope_logs.scope.name = scope
            groups[key] = scope_logs
        record = scope_logs.log_records.add()
        record.time_unix_nano = entry.ts_ns
        record.observed_time_unix_nano = entry.ts_ns
        record.severity_number = entry.severity
        record.severity_text = entry.severity_text
        record.body.string_value = entry.message
        for k, v in entry.attributes.items():
            record.attributes.append(_kv(k, v))
    return request.SerializeToString()
