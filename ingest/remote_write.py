"""Prometheus remote_write 1.0: snappy-compressed ``prometheus.WriteRequest`` bodies.

Spec: https://prometheus.io/docs/specs/remote_write_spec/. Problems with single series
or samples become ``Rejection`` rows and the rest of the request is kept, so one bad
exporter behind a Prometheus does not lose the whole batch; only an unusable payload
raises ``DecodeError``. Exemplars and metadata are accepted and ignored, as Prometheus
does without exemplar storage: nothing downstream stores them.

Real senders put thousands of series with one or a few samples each in a request, so
the per-series and per-sample costs are what matter. The body is parsed with a
"raw" view of the schema in which labels and samples stay bytes: samples are then
decoded in bulk with numpy (with an exact per-sample fallback for unusual encodings),
and the validated, sorted labels are cached by their raw bytes because the same
series arrive again in every request.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from functools import lru_cache

import cramjam
import numpy as np
from cramjam import snappy
from google.protobuf.message import DecodeError as ProtobufDecodeError

from ingest.limits import DEFAULT_LIMITS, Limits
from ingest.protos import prometheus as pb
from ingest.types import DecodeError, Labels, MetricBatch, Rejection, SeriesSamples

REMOTE_WRITE_HEADERS: dict[str, str] = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "telltale-remote-write/1.0",
}

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# A client is told about this many problems one by one; the rest are summed up in one
# row so that a garbage payload cannot produce a response larger than itself.
MAX_LISTED_REJECTIONS = 100
# Memory for validated label sets, per limits and process. Budgeted in (estimated) bytes,
# not entries, because one hostile series can carry 64 labels of 4 KiB each; a typical
# series of six short labels takes about 1 KiB, so some 60 000 active series fit.
LABEL_CACHE_BYTES = 64 * 1024 * 1024


def cap_rejections(
    rejected: list[Rejection], limit: int = MAX_LISTED_REJECTIONS
) -> list[Rejection]:
    """Keep the first ``limit`` rejections and fold the rest into one summary row."""
    if len(rejected) <= limit:
        return rejected
    rest = rejected[limit:]
    summary = Rejection(
        field="body",
        reason=f"{len(rest)} further problems not listed individually",
        count=sum(r.count for r in rest),
    )
    return [*rejected[:limit], summary]


def short(text: str, limit: int = 64) -> str:
    """Quote client-supplied text for an error message without echoing megabytes back."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def snappy_uncompressed_length(body: bytes) -> int:
    """Read the varint length preamble of a snappy block (at most 32 bits, 5 bytes)."""
    result = 0
    for i in range(min(len(body), 5)):
        byte = body[i]
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if result >= 1 << 32:
                break
            return result
    raise DecodeError("body is not snappy block data: invalid uncompressed-length preamble")


def decode_remote_write(
    body: bytes, *, now_ms: int, limits: Limits = DEFAULT_LIMITS
) -> MetricBatch:
    """Decode and validate one remote_write request body."""
    if len(body) > limits.max_body_bytes:
        raise DecodeError(
            f"body is {len(body)} bytes, more than the limit of {limits.max_body_bytes}",
            status=413,
        )
    size = snappy_uncompressed_length(body)
    if size > limits.max_decoded_bytes:
        # Refused from the preamble alone: a tiny body can claim gigabytes.
        raise DecodeError(
            f"body decompresses to {size} bytes, more than the limit of {limits.max_decoded_bytes}",
            status=413,
        )
    try:
        raw = bytes(snappy.decompress_raw(body))
    except (cramjam.DecompressionError, ValueError, TypeError, OverflowError) as exc:
        raise DecodeError(f"body is not valid snappy block data: {exc}") from None
    try:
        request = pb.RawWriteRequest.FromString(raw)
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(f"body is not a valid protobuf WriteRequest: {exc}") from None

    timeseries = request.timeseries
    if len(timeseries) > limits.max_series:
        raise DecodeError(
            f"request has {len(timeseries)} series, more than the limit of {limits.max_series}",
            field="timeseries",
            status=413,
        )
    parse_labels = _label_parser(limits)
    rejected: list[Rejection] = []
    kept_index: list[int] = []
    kept_labels: list[Labels] = []
    counts: list[int] = []
    flat: list[bytes] = []
    total = 0
    for i, ts in enumerate(timeseries):
        # Slicing copies a repeated field in C; iterating it costs more per element.
        samples = ts.samples[:]
        n = len(samples)
        if ts.histograms:
            rejected.append(
                Rejection(
                    f"timeseries[{i}].histograms",
                    "native histograms are not supported; send classic histograms "
                    "(_bucket, _sum and _count series) instead",
                    len(ts.histograms),
                )
            )
        if not n:
            continue
        total += n
        if total > limits.max_samples:
            raise DecodeError(
                f"request has more than the limit of {limits.max_samples} samples",
                field="timeseries",
                status=413,
            )
        try:
            labels, where, reason = parse_labels(tuple(ts.labels[:]))
        except _CorruptLabel as exc:
            raise DecodeError(
                f"timeseries[{i}].labels[{exc.index}] is not a valid protobuf Label",
                field=f"timeseries[{i}].labels[{exc.index}]",
            ) from None
        if labels is None:
            rejected.append(Rejection(f"timeseries[{i}]{where}", reason, n))
            continue
        kept_index.append(i)
        kept_labels.append(labels)
        counts.append(n)
        flat += samples

    batch = MetricBatch(rejected=rejected)
    if flat:
        _build_series(batch, kept_index, kept_labels, flat, counts, now_ms, limits)
    batch.rejected = cap_rejections(batch.rejected)
    return batch


def encode_remote_write(series: Iterable[SeriesSamples]) -> bytes:
    """Encode series as a snappy-compressed WriteRequest (labels sorted, as the spec asks)."""
    request = pb.WriteRequest()
    label_cls, sample_cls = pb.Label, pb.Sample
    for s in series:
        ts = request.timeseries.add()
        ts.labels.extend([label_cls(name=k, value=v) for k, v in sorted(s.labels)])
        ts.samples.extend(
            [
                sample_cls(value=v, timestamp=t)
                for t, v in zip(s.timestamps_ms, s.values, strict=True)
            ]
        )
    return bytes(snappy.compress_raw(request.SerializeToString()))


class _CorruptLabel(Exception):
    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


LabelResult = tuple[Labels | None, str, str]  # (labels, where it failed, why)


@lru_cache(maxsize=8)
def _label_parser(limits: Limits) -> Callable[[tuple[bytes, ...]], LabelResult]:
    """One cached label validator per ``Limits`` (the result depends on them).

    A plain dict that is emptied when full costs less per lookup than an LRU, and an
    LRU smaller than the working set would miss on every lookup anyway. Dict operations
    are atomic under the GIL, so threads may share it (the byte count is an estimate).
    """
    cache: dict[tuple[bytes, ...], LabelResult] = {}
    used = 0

    def parse(raw_labels: tuple[bytes, ...]) -> LabelResult:
        nonlocal used
        result = cache.get(raw_labels)
        if result is None:
            result = _validate_labels(raw_labels, limits)
            # key bytes + decoded strings + object overheads
            size = 2 * sum(map(len, raw_labels)) + 160 * len(raw_labels) + 100
            if used + size > LABEL_CACHE_BYTES:
                cache.clear()
                used = 0
            cache[raw_labels] = result
            used += size
        return result

    return parse


def _validate_labels(raw_labels: tuple[bytes, ...], limits: Limits) -> LabelResult:
    seen: dict[str, int] = {}
    kept: list[tuple[str, str]] = []
    metric, metric_index = "", -1
    for j, raw in enumerate(raw_labels):
        try:
            label = pb.RawLabel.FromString(raw)
        except (ProtobufDecodeError, RuntimeError, ValueError):
            raise _CorruptLabel(j) from None
        try:
            name = label.name.decode("utf-8")
            value = label.value.decode("utf-8")
        except UnicodeDecodeError:
            return None, f".labels[{j}]", "label name or value is not valid UTF-8"
        if len(name) > limits.max_label_name_length:
            return (
                None,
                f".labels[{j}].name",
                (
                    f"label name is {len(name)} characters long, more than the limit of "
                    f"{limits.max_label_name_length}"
                ),
            )
        if not LABEL_NAME_RE.fullmatch(name):
            return (
                None,
                f".labels[{j}].name",
                f"invalid label name {short(name)}: must match [a-zA-Z_][a-zA-Z0-9_]*",
            )
        if name in seen:
            return (
                None,
                f".labels[{j}].name",
                f"duplicate label name {short(name)} (also labels[{seen[name]}])",
            )
        seen[name] = j
        if len(value) > limits.max_label_value_length:
            return (
                None,
                f".labels[{j}].value",
                (
                    f"value of label {short(name)} is {len(value)} characters long, more than "
                    f"the limit of {limits.max_label_value_length}"
                ),
            )
        if not value:
            continue  # Prometheus treats an empty label value as an absent label
        if name == "__name__":
            metric, metric_index = value, j
        # Interned: the same names and values recur across series, here and in the writer.
        kept.append((sys.intern(name), sys.intern(value)))
    if metric_index < 0:
        return None, ".labels", "missing metric name: no non-empty __name__ label"
    if not METRIC_NAME_RE.fullmatch(metric):
        return (
            None,
            f".labels[{metric_index}].value",
            f"invalid metric name {short(metric)}: must match [a-zA-Z_:][a-zA-Z0-9_:]*",
        )
    if len(kept) > limits.max_labels:
        return (
            None,
            ".labels",
            f"series has {len(kept)} labels, more than the limit of {limits.max_labels}",
        )
    kept.sort()
    return tuple(kept), "", ""


# Nearly every Sample is "09 <8-byte double> 10 <varint ms>", 16 bytes for timestamps
# between 1971 and 2109, or "10 <varint ms>", 7 bytes, when the value is 0 and proto3
# leaves it out. Both are decoded for the whole request at once by reading 8-byte words at
# arbitrary offsets; any other encoding goes through the exact protobuf parser.
_TS_WORD_MASK = np.uint64(0x0080808080808000)  # continuation bits of the 6 varint bytes
_TS_WORD_CONTINUED = np.uint64(0x0000808080808000)  # set on the first five, clear on the last
_BYTE = np.uint64(0xFF)
_LOW7 = np.uint64(0x7F)
_SHIFTS = [(np.uint64(8 * (j + 1)), np.uint64(7 * j)) for j in range(6)]


def _decode_samples(flat: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode raw Sample messages; returns timestamps, values and the indices left undecoded."""
    n = len(flat)
    lengths = np.array(list(map(len, flat)), dtype=np.int64)
    buf = b"".join(flat) + bytes(8)  # padding so that every 8-byte word below exists
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    first_byte = np.frombuffer(buf, dtype=np.uint8)[starts]
    words = np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))

    timestamps = np.zeros(n, dtype=np.int64)
    values = np.zeros(n, dtype=np.float64)
    with_value = (lengths == 16) & (first_byte == 0x09)
    zero_value = lengths == 7
    fast = np.flatnonzero(with_value | zero_value)
    word = words[starts[fast] + 9 * with_value[fast]]  # "10 <varint>" and one spare byte
    ok = ((word & _BYTE) == 0x10) & ((word & _TS_WORD_MASK) == _TS_WORD_CONTINUED)
    ts = np.zeros(len(fast), dtype=np.uint64)
    for byte_shift, bit_shift in _SHIFTS:
        ts |= ((word >> byte_shift) & _LOW7) << bit_shift
    timestamps[fast] = ts.view(np.int64)
    idx = np.flatnonzero(with_value)
    # A view of the bytes, not arithmetic: NaN payloads such as the stale marker stay intact.
    values[idx] = words[starts[idx] + 1].view(np.float64)

    undecoded = np.ones(n, dtype=bool)
    undecoded[fast[ok]] = False
    return timestamps, values, np.flatnonzero(undecoded)


def _build_series(
    batch: MetricBatch,
    kept_index: list[int],
    kept_labels: list[Labels],
    flat: list[bytes],
    counts: list[int],
    now_ms: int,
    limits: Limits,
) -> None:
    timestamps, values, undecoded = _decode_samples(flat)
    bounds = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    for pos in undecoded.tolist():
        try:
            sample = pb.Sample.FromString(flat[pos])
        except (ProtobufDecodeError, RuntimeError, ValueError):
            s = int(np.searchsorted(bounds, pos, "right")) - 1
            where = f"timeseries[{kept_index[s]}].samples[{pos - int(bounds[s])}]"
            raise DecodeError(f"{where} is not a valid protobuf Sample", field=where) from None
        timestamps[pos] = sample.timestamp
        values[pos] = sample.value

    low, high = now_ms - limits.max_age_ms, now_ms + limits.max_future_ms
    # Series whose timestamps are all in the window and strictly increasing are taken as
    # they are; only the others are looked at sample by sample.
    flagged = (timestamps < low) | (timestamps > high)
    not_increasing = np.diff(timestamps) <= 0
    not_increasing[bounds[1:-1] - 1] = False  # a series boundary is not a comparison
    flagged[1:] |= not_increasing
    slow = set((np.searchsorted(bounds, np.flatnonzero(flagged), "right") - 1).tolist())

    ts_list, value_list, offsets = timestamps.tolist(), values.tolist(), bounds.tolist()
    if not slow and len(set(kept_labels)) == len(kept_labels):
        # The usual request: nothing to filter, no label set twice.
        if len(ts_list) == len(kept_labels):
            batch.series = [
                SeriesSamples(labels, [t], [v])
                for labels, t, v in zip(kept_labels, ts_list, value_list, strict=True)
            ]
        else:
            batch.series = [
                SeriesSamples(labels, ts_list[a:b], value_list[a:b])
                for labels, a, b in zip(kept_labels, offsets, offsets[1:], strict=False)
            ]
        return
    by_labels: dict[Labels, SeriesSamples] = {}
    for s, labels in enumerate(kept_labels):
        a, b = offsets[s], offsets[s + 1]
        ts_part, value_part = ts_list[a:b], value_list[a:b]
        previous = by_labels.get(labels)
        if previous is not None or s in slow:
            seen = set(previous.timestamps_ms) if previous is not None else set()
            ts_part, value_part = _filter_samples(
                batch.rejected, kept_index[s], ts_part, value_part, seen, low, high, limits
            )
        if previous is not None:
            # The same labels sent twice in one request are one series.
            previous.timestamps_ms.extend(ts_part)
            previous.values.extend(value_part)
        elif ts_part:
            series = SeriesSamples(labels, ts_part, value_part)
            by_labels[labels] = series
            batch.series.append(series)


def _filter_samples(
    rejected: list[Rejection],
    index: int,
    timestamps: list[int],
    values: list[float],
    seen: set[int],
    low: int,
    high: int,
    limits: Limits,
) -> tuple[list[int], list[float]]:
    """Drop out-of-window and repeated timestamps (first one wins); record why."""
    keep_ts: list[int] = []
    keep_values: list[float] = []
    too_old: list[int] = []
    too_new: list[int] = []
    duplicate: list[int] = []
    for j, (t, v) in enumerate(zip(timestamps, values, strict=True)):
        if t < low:
            too_old.append(j)
        elif t > high:
            too_new.append(j)
        elif t in seen:
            duplicate.append(j)
        else:
            seen.add(t)
            keep_ts.append(t)
            keep_values.append(v)
    field = f"timeseries[{index}].samples"
    if too_old:
        rejected.append(
            Rejection(
                field,
                f"{_count(too_old)} older than the accepted window of "
                f"{limits.max_age_ms // 1000} s before now (first: samples[{too_old[0]}])",
                len(too_old),
            )
        )
    if too_new:
        rejected.append(
            Rejection(
                field,
                f"{_count(too_new)} more than {limits.max_future_ms // 1000} s in the future "
                f"(first: samples[{too_new[0]}])",
                len(too_new),
            )
        )
    if duplicate:
        rejected.append(
            Rejection(
                field,
                f"{_count(duplicate)} with a timestamp already seen for this series; the first "
                f"was kept (first repeat: samples[{duplicate[0]}])",
                len(duplicate),
            )
        )
    return keep_ts, keep_values


def _count(indices: list[int]) -> str:
    return "1 sample" if len(indices) == 1 else f"{len(indices)} samples"
