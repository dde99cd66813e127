"""Telltale's own JSON API over telemetry: series, aggregated ranges and log search."""

from __future__ import annotations

import time

import numpy as np
from django.views.decorators.http import require_GET

from ingest.types import severity_name
from webapp.telemetry import query
from webapp.telemetry.models import LogRecord
from webapp.telemetry.promapi import error, parse_duration_ms, parse_time, read_api, success
from webapp.telemetry.query import QueryError, to_datetime

DEFAULT_RANGE_MS = 3_600_000
SEVERITY_FLOORS = {
    "trace": 1,
    "debug": 5,
    "info": 9,
    "warn": 13,
    "warning": 13,
    "error": 17,
    "fatal": 21,
}


@require_GET
@read_api
def series_list(request):
    match = request.GET.get("match", "")
    limit = _int(request.GET.get("limit"), "limit", 1000, 1, 10_000)
    found = query.select(match, limit=limit)
    return success(
        [
            {
                "id": str(s.id),
                "metric": s.metric,
                "labels": s.labels,
                "node_id": s.node_id,
                "instance_id": s.instance_id,
            }
            for s in found
        ]
    )


@require_GET
@read_api
def range_data(request):
    g = request.GET
    now = int(time.time() * 1000)
    end = parse_time(g.get("end"), "end", now)
    start = parse_time(g.get("start"), "start", end - DEFAULT_RANGE_MS)
    step = parse_duration_ms(g.get("step") or str(max(1, (end - start) // 1000_000)), "step")
    agg = g.get("agg", "avg")
    found = query.select(g.get("match", ""), limit=_int(g.get("limit"), "limit", 200, 1, 2000))
    results, how = query.range_query(found, start, end, step, agg)
    return success(
        {
            "resolution": how["resolution"],
            "start": how["start_ms"] / 1000,
            "step": how["step_ms"] / 1000,
            "series": [
                {
                    "metric": r.series.metric,
                    "labels": r.series.labels,
                    "points": _points(r.ts_ms, r.values),
                }
                for r in results
            ],
        }
    )


@require_GET
@read_api
def log_search(request):
    g = request.GET
    now = int(time.time() * 1000)
    end = parse_time(g.get("end"), "end", now)
    start = parse_time(g.get("start"), "start", end - DEFAULT_RANGE_MS)
    if end <= start:
        return error("end must be after start")
    severity = g.get("severity", "").strip().lower()
    if severity and severity not in SEVERITY_FLOORS:
        return error(f"severity must be one of {', '.join(SEVERITY_FLOORS)}")
    records = query.search_logs(
        start=to_datetime(start),
        end=to_datetime(end),
        node_ids=_ids(g.getlist("node"), "node"),
        instance_ids=_ids(g.getlist("instance"), "instance"),
        min_severity=SEVERITY_FLOORS.get(severity),
        template_ids=_ids(g.getlist("template"), "template"),
        text=g.get("q") or None,
        limit=_int(g.get("limit"), "limit", 200, 1, 5000),
        before_id=_int(g.get("before"), "before", None, 1, None),
    )
    return success([log_json(r) for r in records])


def _points(ts_ms: np.ndarray, values: np.ndarray) -> list[list]:
    """[[seconds, value], ...] with JSON null for NaN; built in bulk, charts ship many."""
    seconds = (ts_ms / 1000).tolist()
    plain = values.tolist()
    if np.isnan(values).any():
        plain = [None if v != v else v for v in plain]
    return [[t, v] for t, v in zip(seconds, plain, strict=True)]


def log_json(r: LogRecord) -> dict:
    return {
        "id": r.id,
        "ts": r.ts.isoformat(),
        "node": r.node.name if r.node_id else None,
        "instance": r.instance.name if r.instance_id else None,
        "severity": severity_name(r.severity) if r.severity else (r.severity_text or ""),
        "message": r.message,
        "template_id": str(r.template_id) if r.template_id else None,
        "template": r.template.template if r.template_id else None,
        "params": r.params,
        "attributes": r.attributes,
        "source": r.source,
    }


def _int(raw, name, default, lo, hi):
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name} must be an integer") from None
    if value < lo or (hi is not None and value > hi):
        raise QueryError(f"{name} must be between {lo} and {hi}")
    return value


def _ids(raw: list[str], name: str) -> list[int] | None:
    if not raw:
        return None
    try:
        return [int(v) for v in raw]
    except ValueError:
        raise QueryError(f"{name} must be numeric ids") from None
