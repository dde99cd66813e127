"""Prometheus HTTP API (the subset Grafana's Prometheus data source uses) over Telltale.

Read by logged-in users or with a token holding the ``read`` scope (Bearer, or Basic
with the token as password, as Grafana sends it).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from functools import wraps

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from webapp.core import roles
from webapp.core.models import IngestToken
from webapp.core.tokens import authenticate, raw_token_from_request
from webapp.telemetry import query
from webapp.telemetry.query import QueryError, format_value

DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
DURATION_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
NUMBER_RE = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
SIMPLE_ARITH_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([-+*/])\s*(\d+(?:\.\d+)?)\s*$")


def error(message: str, kind: str = "bad_data", status: int = 400) -> JsonResponse:
    return JsonResponse({"status": "error", "errorType": kind, "error": message}, status=status)


def success(data, result_type: str | None = None) -> JsonResponse:
    if result_type is not None:
        data = {"resultType": result_type, "result": data}
    return JsonResponse({"status": "success", "data": data})


def read_api(view):
    """Session users with a role, or a token with the read scope."""

    @csrf_exempt
    @login_not_required
    @require_http_methods(["GET", "POST"])
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not roles.has_role(request.user, roles.VIEWER):
            token = authenticate(raw_token_from_request(request))
            if token is None:
                return JsonResponse(
                    {
                        "status": "error",
                        "errorType": "unauthorized",
                        "error": "authentication required",
                    },
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="telltale"'},
                )
            if IngestToken.SCOPE_READ not in token.scopes:
                return error("this token lacks the 'read' scope", "forbidden", 403)
        try:
            return view(request, *args, **kwargs)
        except QueryError as exc:
            return error(str(exc))

    return wrapped


def params(request):
    return request.POST if request.method == "POST" else request.GET


def parse_time(value: str | None, name: str, default_ms: int | None = None) -> int:
    if value is None or value == "":
        if default_ms is None:
            raise QueryError(f"missing parameter {name!r}")
        return default_ms
    try:
        seconds = float(value)
        if math.isfinite(seconds):
            return round(seconds * 1000)
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise QueryError(
            f'invalid parameter "{name}": cannot parse "{value}" to a valid timestamp'
        ) from None


def parse_duration_ms(value: str | None, name: str) -> int:
    if not value:
        raise QueryError(f"missing parameter {name!r}")
    try:
        seconds = float(value)
        if math.isfinite(seconds) and seconds > 0:
            return max(1, round(seconds * 1000))
    except ValueError:
        pass
    match = DURATION_RE.match(value)
    if not match or not any(match.groups()):
        raise QueryError(f'invalid parameter "{name}": cannot parse "{value}" to a valid duration')
    return sum(int(g) * unit for g, unit in zip(match.groups(), DURATION_MS, strict=True) if g)


def _scalar(text: str) -> float | None:
    """Grafana tests a data source with ``1+1``; answer plain arithmetic on numbers."""
    if NUMBER_RE.match(text):
        return float(text)
    m = SIMPLE_ARITH_RE.match(text)
    if m:
        a, op, b = float(m.group(1)), m.group(2), float(m.group(3))
        if op == "/":
            return a / b if b else math.inf if a > 0 else math.nan
        return {"+": a + b, "-": a - b, "*": a * b}[op]
    return None


def _metric(series) -> dict:
    return series.all_labels


@read_api
def query_range(request):
    p = params(request)
    expr = p.get("query", "")
    start = parse_time(p.get("start"), "start")
    end = parse_time(p.get("end"), "end")
    step = parse_duration_ms(p.get("step"), "step")
    scalar = _scalar(expr)
    if scalar is not None:
        steps = range(start, end + 1, step)
        return success(
            [{"metric": {}, "values": [[t / 1000, format_value(scalar)] for t in steps]}], "matrix"
        )
    series = query.select(expr)
    results = query.instant_vectors(series, start, end, step)
    data = [
        {
            "metric": _metric(r.series),
            "values": [
                [t / 1000, format_value(v)]
                for t, v in zip(r.ts_ms.tolist(), r.values.tolist(), strict=True)
            ],
        }
        for r in results
        if len(r.ts_ms)
    ]
    return success(data, "matrix")


@read_api
def instant_query(request):
    p = params(request)
    expr = p.get("query", "")
    at = parse_time(p.get("time"), "time", int(time.time() * 1000))
    scalar = _scalar(expr)
    if scalar is not None:
        return success([at / 1000, format_value(scalar)], "scalar")
    series = query.select(expr)
    results = query.instant_vectors(series, at, at, 1000)
    data = [
        {"metric": _metric(r.series), "value": [at / 1000, format_value(float(r.values[-1]))]}
        for r in results
        if len(r.values)
    ]
    return success(data, "vector")


def _matched_series(request) -> list | None:
    p = params(request)
    selectors = p.getlist("match[]")
    if not selectors:
        return None
    found = {}
    for text in selectors:
        for s in query.select(text):
            found[s.id] = s
    return list(found.values())


@read_api
def series(request):
    matched = _matched_series(request)
    if matched is None:
        return error("no match[] parameter provided")
    return success([_metric(s) for s in matched])


@read_api
def labels(request):
    return success(query.label_names(_matched_series(request)))


@read_api
def label_values(request, name: str):
    return success(query.label_values(name, _matched_series(request)))


@read_api
def buildinfo(request):
    return success(
        {
            "version": "2.53.0",
            "revision": "telltale",
            "branch": "telltale",
            "buildUser": "telltale",
            "buildDate": "20261129",
            "goVersion": "n/a",
        }
    )


@read_api
def metadata(request):
    return success({})
