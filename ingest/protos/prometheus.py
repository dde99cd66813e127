"""Prometheus remote_write 1.0 messages (``prometheus.WriteRequest`` and friends).

The classes are built from a hand-written ``FileDescriptorProto`` because no protoc
is available at build time, and registered in a private ``DescriptorPool`` so that a
different ``prometheus/types.proto`` loaded by some other library into the default
pool can never clash with these names. Field numbers follow
prometheus/prompb/types.proto and remote.proto; native histograms are described in
full so that a request carrying them parses and can be refused explicitly.

A second, wire-compatible view (package ``prometheus.raw``) declares the nested
labels, samples, exemplars and histograms as ``bytes``: the decoder then gets each
sample's few raw bytes without building a Python object per sample, decodes them in
bulk with numpy, and uses the raw label bytes as a cache key.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

# (name, number, type, label, type_name or "", oneof index or None)
_MESSAGES: dict[str, list[tuple[str, int, int, int, str, int | None]]] = {
    "Label": [
        ("name", 1, _F.TYPE_STRING, _OPTIONAL, "", None),
        ("value", 2, _F.TYPE_STRING, _OPTIONAL, "", None),
    ],
    "Sample": [
        ("value", 1, _F.TYPE_DOUBLE, _OPTIONAL, "", None),
        ("timestamp", 2, _F.TYPE_INT64, _OPTIONAL, "", None),
    ],
    "Exemplar": [
        ("labels", 1, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.Label", None),
        ("value", 2, _F.TYPE_DOUBLE, _OPTIONAL, "", None),
        ("timestamp", 3, _F.TYPE_INT64, _OPTIONAL, "", None),
    ],
    "BucketSpan": [
        ("offset", 1, _F.TYPE_SINT32, _OPTIONAL, "", None),
        ("length", 2, _F.TYPE_UINT32, _OPTIONAL, "", None),
    ],
    "Histogram": [
        ("count_int", 1, _F.TYPE_UINT64, _OPTIONAL, "", 0),
        ("count_float", 2, _F.TYPE_DOUBLE, _OPTIONAL, "", 0),
        ("sum", 3, _F.TYPE_DOUBLE, _OPTIONAL, "", None),
        ("schema", 4, _F.TYPE_SINT32, _OPTIONAL, "", None),
        ("zero_threshold", 5, _F.TYPE_DOUBLE, _OPTIONAL, "", None),
        ("zero_count_int", 6, _F.TYPE_UINT64, _OPTIONAL, "", 1),
        ("zero_count_float", 7, _F.TYPE_DOUBLE, _OPTIONAL, "", 1),
        ("negative_spans", 8, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.BucketSpan", None),
        ("negative_deltas", 9, _F.TYPE_SINT64, _REPEATED, "", None),
        ("negative_counts", 10, _F.TYPE_DOUBLE, _REPEATED, "", None),
        ("positive_spans", 11, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.BucketSpan", None),
        ("positive_deltas", 12, _F.TYPE_SINT64, _REPEATED, "", None),
        ("positive_counts", 13, _F.TYPE_DOUBLE, _REPEATED, "", None),
        ("reset_hint", 14, _F.TYPE_ENUM, _OPTIONAL, ".prometheus.Histogram.ResetHint", None),
        ("timestamp", 15, _F.TYPE_INT64, _OPTIONAL, "", None),
        ("custom_values", 16, _F.TYPE_DOUBLE, _REPEATED, "", None),
    ],
    "TimeSeries": [
        ("labels", 1, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.Label", None),
        ("samples", 2, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.Sample", None),
        ("exemplars", 3, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.Exemplar", None),
        ("histograms", 4, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.Histogram", None),
    ],
    "MetricMetadata": [
        ("type", 1, _F.TYPE_ENUM, _OPTIONAL, ".prometheus.MetricMetadata.MetricType", None),
        ("metric_family_name", 2, _F.TYPE_STRING, _OPTIONAL, "", None),
        ("help", 4, _F.TYPE_STRING, _OPTIONAL, "", None),
        ("unit", 5, _F.TYPE_STRING, _OPTIONAL, "", None),
    ],
    "WriteRequest": [
        ("timeseries", 1, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.TimeSeries", None),
        ("metadata", 3, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.MetricMetadata", None),
    ],
}

_ENUMS: dict[str, tuple[str, list[str]]] = {
    "Histogram": ("ResetHint", ["UNKNOWN", "YES", "NO", "GAUGE"]),
    "MetricMetadata": (
        "MetricType",
        [
            "UNKNOWN",
            "COUNTER",
            "GAUGE",
            "HISTOGRAM",
            "GAUGEHISTOGRAM",
            "SUMMARY",
            "INFO",
            "STATESET",
        ],
    ),
}

_ONEOFS: dict[str, list[str]] = {"Histogram": ["count", "zero_count"]}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="telltale/prometheus/remote.proto", package="prometheus", syntax="proto3"
    )
    for msg_name, fields in _MESSAGES.items():
        msg = fdp.message_type.add(name=msg_name)
        for oneof in _ONEOFS.get(msg_name, []):
            msg.oneof_decl.add(name=oneof)
        if msg_name in _ENUMS:
            enum_name, values = _ENUMS[msg_name]
            enum = msg.enum_type.add(name=enum_name)
            for number, value_name in enumerate(values):
                # proto3 enum values share the enclosing scope, so prefix them as protoc would
                enum.value.add(name=f"{enum_name.upper()}_{value_name}", number=number)
        for name, number, ftype, label, type_name, oneof_index in fields:
            field = msg.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
            if oneof_index is not None:
                field.oneof_index = oneof_index
    return fdp


def _raw_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="telltale/prometheus/remote_raw.proto", package="prometheus.raw", syntax="proto3"
    )
    raw: dict[str, list[tuple[str, int, int, int, str]]] = {
        "Label": [
            ("name", 1, _F.TYPE_BYTES, _OPTIONAL, ""),
            ("value", 2, _F.TYPE_BYTES, _OPTIONAL, ""),
        ],
        "TimeSeries": [
            ("labels", 1, _F.TYPE_BYTES, _REPEATED, ""),
            ("samples", 2, _F.TYPE_BYTES, _REPEATED, ""),
            ("exemplars", 3, _F.TYPE_BYTES, _REPEATED, ""),
            ("histograms", 4, _F.TYPE_BYTES, _REPEATED, ""),
        ],
        "WriteRequest": [
            ("timeseries", 1, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.raw.TimeSeries"),
            ("metadata", 3, _F.TYPE_BYTES, _REPEATED, ""),
        ],
    }
    for msg_name, fields in raw.items():
        msg = fdp.message_type.add(name=msg_name)
        for name, number, ftype, label, type_name in fields:
            field = msg.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
    return fdp


POOL = descriptor_pool.DescriptorPool()
POOL.Add(_file_descriptor())
POOL.Add(_raw_file_descriptor())


def _message(name: str, package: str = "prometheus") -> type:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{package}.{name}"))


WriteRequest = _message("WriteRequest")
TimeSeries = _message("TimeSeries")
Label = _message("Label")
Sample = _message("Sample")
Exemplar = _message("Exemplar")
Histogram = _message("Histogram")
BucketSpan = _message("BucketSpan")
MetricMetadata = _message("MetricMetadata")

# Raw views: same wire format, nested messages left as bytes.
RawWriteRequest = _message("WriteRequest", "prometheus.raw")
RawLabel = _message("Label", "prometheus.raw")
