"""HTTP receivers: authenticate, read the body within limits, decode, hand to the writer.

Answers follow each protocol's retry rules: 4xx means "do not send this again" (the
message names the problem; valid parts of the request are stored — partial success),
503 means "the store is down, retry", and 2xx is sent only after the data is committed.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import time
import zlib
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ingest import admission, quotas
from ingest.jsonlines import DROPPED_ATTRIBUTE, TRUNCATED_ATTRIBUTE, decode_json_lines
from ingest.limits import Limits
from ingest.otlp import (
    decode_otlp_logs,
    decode_otlp_metrics,
    media_type,
    otlp_partial_success_response,
)
from ingest.remote_write import decode_remote_write
from ingest.truth import decode_truth
from ingest.types import DecodeError, LogBatch, MetricBatch, Rejection
from webapp.core import selfmetrics
from webapp.core.models import IngestToken
from webapp.core.tokens import AuthenticatedToken, authenticate, raw_token_from_request
from webapp.telemetry import writer

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
MAX_REJECTIONS_SHOWN = 20


def current_limits() -> Limits:
    return Limits(
        max_body_bytes=settings.TELLTALE_INGEST_MAX_BODY_BYTES,
        max_decoded_bytes=settings.TELLTALE_INGEST_MAX_DECODED_BYTES,
        max_series=settings.TELLTALE_INGEST_MAX_SERIES_PER_REQUEST,
        max_samples=settings.TELLTALE_INGEST_MAX_SAMPLES_PER_REQUEST,
        max_labels=settings.TELLTALE_INGEST_MAX_LABELS_PER_SERIES,
        max_label_name_length=settings.TELLTALE_INGEST_MAX_LABEL_NAME_LENGTH,
        max_label_value_length=settings.TELLTALE_INGEST_MAX_LABEL_VALUE_LENGTH,
        max_log_lines=settings.TELLTALE_INGEST_MAX_LOG_LINES_PER_REQUEST,
        max_log_line_bytes=settings.TELLTALE_INGEST_MAX_LOG_LINE_BYTES,
        max_age_ms=settings.TELLTALE_INGEST_MAX_AGE_SECONDS * 1000,
        max_future_ms=settings.TELLTALE_INGEST_MAX_FUTURE_SECONDS * 1000,
    )


class Refused(Exception):
    def __init__(self, status: int, message: str, field: str = "body", headers=None):
        super().__init__(message)
        self.status = status
        self.field = field
        self.headers = headers or {}


def _authenticate(request, scope: str) -> AuthenticatedToken:
    raw = raw_token_from_request(request)
    if raw is None:
        raise Refused(
            401,
            "missing ingest token: send 'Authorization: Bearer <token>'",
            "Authorization",
            {"WWW-Authenticate": 'Bearer realm="telltale"'},
        )
    token = authenticate(raw)
    if token is None:
        raise Refused(
            401, "unknown or revoked ingest token", "Authorization", {"WWW-Authenticate": "Bearer"}
        )
    if scope not in token.scopes:
        raise Refused(403, f"this token lacks the {scope!r} scope", "Authorization")
    return token


def _check_rate(token: AuthenticatedToken) -> None:
    """Refuse before reading the body: a token over its rate costs us no decoding."""
    try:
        quotas.check_rate(token)
    except quotas.RateLimited as exc:
        raise Refused(429, str(exc), "rate_limit", {"Retry-After": str(exc.retry_after)}) from None


def _admit_metrics(token: AuthenticatedToken, batch: MetricBatch) -> None:
    quotas.charge(token, batch.sample_count + batch.rejected_count)
    fresh = admission.fresh_series(batch)
    if fresh:  # the steady state of a stream has none: nothing more to look at
        fresh = admission.drop_unstorable_series(batch, fresh)
        quotas.enforce_new_series_limit(token, batch, fresh=fresh)


def _admit_logs(token: AuthenticatedToken, batch: LogBatch) -> None:
    quotas.charge(token, len(batch.entries) + batch.rejected_count)
    admission.drop_unstorable_log_entries(batch)


def _truncated(batch: LogBatch, limits: Limits) -> str:
    """Lines cut to the size limits are stored flagged; the client is told, not left guessing."""
    cut = sum(1 for e in batch.entries if TRUNCATED_ATTRIBUTE in e.attributes)
    thinned = sum(1 for e in batch.entries if DROPPED_ATTRIBUTE in e.attributes)
    notes = []
    if cut:
        notes.append(
            f"{cut} log messages longer than {limits.max_log_line_bytes} bytes "
            "(TELLTALE_INGEST_MAX_LOG_LINE_BYTES) were stored cut to that size, "
            f"flagged {TRUNCATED_ATTRIBUTE}=true"
        )
    if thinned:
        notes.append(
            f"{thinned} log lines had more than {limits.max_attributes} attributes; the first "
            f"{limits.max_attributes} were stored, the number of others in {DROPPED_ATTRIBUTE}"
        )
    return "; ".join(notes)


def _read_body(request, limits: Limits) -> bytes:
    length = request.headers.get("Content-Length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise Refused(400, "Content-Length is not a number", "Content-Length") from None
        if declared > limits.max_body_bytes:
            raise Refused(
                413,
                f"body of {declared} bytes exceeds the limit of {limits.max_body_bytes} bytes",
                "Content-Length",
            )
    body = request.read(limits.max_body_bytes + 1)
    if len(body) > limits.max_body_bytes:
        raise Refused(413, f"body exceeds the limit of {limits.max_body_bytes} bytes")
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("gzip", "deflate"):
        body = _inflate(body, encoding, limits.max_decoded_bytes)
    elif encoding not in ("", "identity", "snappy"):
        raise Refused(415, f"unsupported Content-Encoding {encoding!r}", "Content-Encoding")
    return body


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes. A gzip body may hold several members (RFC 1952:
    concatenated files, as some streaming clients send); each is read, so none is dropped.
    A cut-off stream or bytes after the end are refused rather than half-stored."""
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    out = bytearray()
    data = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            # len(out) <= limit here, so the budget is at least 1 (0 would mean unlimited).
            out += inflater.decompress(data, limit + 1 - len(out))
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise Refused(400, f"body is not valid {encoding}: {exc}", "Content-Encoding") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise Refused(
                413,
                f"decompressed body exceeds the limit of {limit} bytes "
                "(TELLTALE_INGEST_MAX_DECODED_BYTES)",
            )
        if not inflater.eof:
            raise Refused(400, f"body is truncated {encoding} data", "Content-Encoding")
        data = inflater.unused_data
        if not data.strip(b"\0"):  # gzip tolerates zero padding after the last member
            return bytes(out)
        if encoding != "gzip":
            raise Refused(
                400, f"{len(data)} bytes after the end of the {encoding} data", "Content-Encoding"
            )


def _rejections(items: list[Rejection]) -> list[dict]:
    return [r.as_dict() for r in items[:MAX_REJECTIONS_SHOWN]]


def _store_unavailable(source: str, exc: Exception) -> HttpResponse:
    log.warning("%s: store unavailable: %s", source, exc)
    selfmetrics.INGEST_REQUESTS.labels(source, "503").inc()
    return JsonResponse(
        {"error": "the telemetry store is unavailable; retry later", "field": "store"},
        status=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _receiver(source: str, scope: str, handle: Callable):
    """Wrap a handler with token auth, body limits and the retry-friendly error mapping."""

    @csrf_exempt
    @login_not_required
    @require_POST
    def view(request):
        try:
            token = _authenticate(request, scope)
            _check_rate(token)
            limits = current_limits()
            body = _read_body(request, limits)
            response = handle(request, body, token, limits)
        except Refused as exc:
            selfmetrics.INGEST_REQUESTS.labels(source, str(exc.status)).inc()
            return JsonResponse(
                {"error": str(exc), "field": exc.field}, status=exc.status, headers=exc.headers
            )
        except DecodeError as exc:
            selfmetrics.INGEST_REQUESTS.labels(source, str(exc.status)).inc()
            return JsonResponse(exc.as_dict(), status=exc.status)
        except (OperationalError, InterfaceError) as exc:
            return _store_unavailable(source, exc)
        selfmetrics.INGEST_REQUESTS.labels(source, str(response.status_code)).inc()
        return response

    view.ingest_scope = scope
    return view


# --- Prometheus remote_write -------------------------------------------------------------
def _remote_write(request, body, token, limits):
    content_type = request.headers.get("Content-Type", "")
    if content_type and not content_type.startswith("application/x-protobuf"):
        raise Refused(
            415,
            f"Content-Type must be application/x-protobuf, not {content_type!r}",
            "Content-Type",
        )
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding != "snappy":
        raise Refused(400, "remote_write bodies must be snappy-compressed", "Content-Encoding")
    batch: MetricBatch = decode_remote_write(body, now_ms=int(time.time() * 1000), limits=limits)
    _admit_metrics(token, batch)
    result = writer.write_metrics(batch, source="remote_write", client=token.name)
    if batch.rejected:
        # As Prometheus: the valid samples are stored, the client must not retry the rest.
        return JsonResponse(
            {
                "error": f"{batch.rejected_count} samples rejected, {result.accepted} accepted",
                "accepted": result.accepted,
                "rejected": _rejections(batch.rejected),
            },
            status=400,
        )
    return HttpResponse(status=204)


remote_write = _receiver("remote_write", IngestToken.SCOPE_METRICS_WRITE, _remote_write)


# --- OTLP/HTTP ---------------------------------------------------------------------------
def _otlp(kind: str):
    def handle(request, body, token, limits):
        content_type = request.headers.get("Content-Type", "application/x-protobuf")
        if kind == "metrics":
            batch = decode_otlp_metrics(
                body, content_type=content_type, now_ms=int(time.time() * 1000), limits=limits
            )
            _admit_metrics(token, batch)
            writer.write_metrics(batch, source="otlp", client=token.name)
        else:
            batch = decode_otlp_logs(
                body, content_type=content_type, now_ns=time.time_ns(), limits=limits
            )
            _admit_logs(token, batch)
            writer.write_logs(
                batch, source="otlp", client=token.name, batch_digest=_digest(token, body)
            )
        rejected = batch.rejected_count
        notes = [f"{r.field}: {r.reason}" for r in batch.rejected[:MAX_REJECTIONS_SHOWN]]
        if kind == "logs" and (cut := _truncated(batch, limits)):
            notes.append(cut)
        message = "; ".join(notes)
        payload = otlp_partial_success_response(kind, rejected, message, content_type)
        return HttpResponse(payload, status=200, content_type=media_type(content_type))

    return handle


otlp_metrics = _receiver("otlp", IngestToken.SCOPE_METRICS_WRITE, _otlp("metrics"))
otlp_logs = _receiver("otlp", IngestToken.SCOPE_LOGS_WRITE, _otlp("logs"))


# --- JSON lines logs ---------------------------------------------------------------------
def _jsonl(request, body, token, limits):
    batch: LogBatch = decode_json_lines(body, now_ns=time.time_ns(), limits=limits)
    _admit_logs(token, batch)
    source = request.headers.get("X-Telltale-Source", "").strip()[:32]
    source = "".join(ch for ch in source if ch.isprintable())
    if source:  # e.g. the host agent names itself so its lines can be told apart
        for entry in batch.entries:
            entry.source = source
    source = source or "jsonl"
    result = writer.write_logs(
        batch, source=source, client=token.name, batch_digest=_digest(token, body)
    )
    payload = {"accepted": result.accepted, "stored": result.stored}
    if cut := _truncated(batch, limits):
        payload["truncated"] = cut
    if batch.rejected:
        payload["rejected"] = _rejections(batch.rejected)
        payload["error"] = f"{batch.rejected_count} lines rejected, {result.accepted} accepted"
        return JsonResponse(payload, status=400)
    return JsonResponse(payload, status=200)


jsonl_logs = _receiver("jsonl", IngestToken.SCOPE_LOGS_WRITE, _jsonl)


# --- simulator ground truth --------------------------------------------------------------
def _truth(request, body, token, limits):
    from webapp.telemetry.services import record_ground_truth

    truth = decode_truth(body)
    stored = record_ground_truth(truth["run"], truth["nodes"], truth["instances"], truth["cases"])
    return JsonResponse(stored, status=200)


simulator_truth = _receiver("simulator", IngestToken.SCOPE_METRICS_WRITE, _truth)


def _digest(token: AuthenticatedToken, body: bytes) -> bytes:
    """Same token + same body = same log rows, so a retried request is stored once."""
    return hashlib.blake2b(token.name.encode() + b"\0" + body, digest_size=16).digest()
