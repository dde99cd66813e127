"""Interference pages: most slowed instances now, a node's heat map, one instance's P over
time with its neighbours' blame, and what-if placement (page and JSON API)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

import numpy as np
from django.contrib.auth.decorators import login_not_required
from django.db.models import Max, OuterRef, Subquery
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from webapp.core import roles
from webapp.core.tokens import authenticate, raw_token_from_request
from webapp.dashboards import timerange
from webapp.detection import charts, versions
from webapp.detection.interference import (
    ATTRIBUTE_WORST,
    WhatIfError,
    interval_coverage,
    trained_on_simulator,
    unpredicted,
    what_if,
    what_if_widening,
)
from webapp.detection.models import InterferencePrediction, ModelVersion
from webapp.telemetry.models import Instance, Node

_SORT_FIELDS = {"p": "p", "instance": "instance__name", "node": "node__name", "width": "width"}
SORTS = {**_SORT_FIELDS, **{f"-{k}": f"-{v}" for k, v in _SORT_FIELDS.items()}}
HEATMAP_COLUMNS = 60
BAND_POINTS = 1000  # an instance's P chart shows at most this many points


def latest_round():
    """When the newest prediction round ran (every instance is predicted each minute)."""
    return InterferencePrediction.objects.aggregate(ts=Max("ts"))["ts"]


def latest_predictions(newest=None):
    """Each instance's newest prediction of the last two rounds (one a round missed still
    shows), one row per instance; ``newest`` is ``latest_round()`` where the caller has it."""
    newest = newest or latest_round()
    if newest is None:
        return InterferencePrediction.objects.none()
    own_newest = (
        InterferencePrediction.objects.filter(instance_id=OuterRef("instance_id"))
        .order_by("-ts")
        .values("ts")[:1]
    )
    return InterferencePrediction.objects.filter(
        ts__gte=newest - timedelta(seconds=90), ts=Subquery(own_newest)
    ).select_related("instance", "node", "model_version")


@roles.require_role(roles.VIEWER)
def interference(request):
    sort = request.GET.get("sort", "p")
    newest = latest_round()
    rows = list(latest_predictions(newest))
    for row in rows:
        row.width = row.p_high - row.p_low
    key = SORTS.get(sort, "p")
    reverse = key.startswith("-")
    attr = key.lstrip("-")
    rows.sort(
        key=lambda r: (
            r.instance.name
            if attr == "instance__name"
            else r.node.name
            if attr == "node__name"
            else getattr(r, attr)
        ),
        reverse=reverse,
    )
    nodes = Node.objects.filter(instances__isnull=False).distinct().order_by("name")
    promoted = versions.promoted(ModelVersion.KIND_INTERFERENCE)
    return render(
        request,
        "detection/interference.html",
        {
            "rows": rows[:200],
            "sort": sort,
            "nodes": nodes,
            "total": len(rows),
            "unpredicted": unpredicted(newest, {r.instance_id for r in rows}),
            "attribute_worst": ATTRIBUTE_WORST,
            "coverage": interval_coverage(promoted),
            "promoted": promoted,
            "simulated_only": trained_on_simulator(promoted),
            "extrapolated": sum(1 for r in rows if r.unfamiliar),
        },
    )


@roles.require_role(roles.VIEWER)
def interference_node(request, name: str):
    node = get_object_or_404(Node, name=name)
    tr = timerange.from_request(request, default="6h")
    rows = InterferencePrediction.objects.filter(node=node, ts__gte=tr.start, ts__lte=tr.end)
    width = max(1, (tr.end_ms - tr.start_ms) // HEATMAP_COLUMNS)
    cells: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, ts, p in rows.values_list("instance__name", "ts", "p"):  # no model objects
        cells[name][(int(ts.timestamp() * 1000) - tr.start_ms) // width].append(p)
    names = sorted(cells)
    columns = list(range(HEATMAP_COLUMNS))
    middles = [tr.start_ms + c * width + width // 2 for c in columns]
    z = [[(sum(v) / len(v)) if (v := cells[n].get(c)) else None for c in columns] for n in names]
    return render(
        request,
        "detection/interference_node.html",
        {
            "node": node,
            "tr": tr,
            "presets": timerange.PRESETS,
            "heatmap": charts.heatmap_figure(f"Predicted P on {node.name}", names, middles, z),
        },
    )


def band_points(rows, start_ms: int, end_ms: int, max_points: int = BAND_POINTS):
    """(ts, P, low, high) lists from (ts, p, p_low, p_high) rows in time order; over
    ``max_points`` rows, the means of equal time buckets, so a month of minutes stays a
    chart a browser draws at once."""
    data = np.array(
        [(t.timestamp() * 1000, p, lo, hi) for t, p, lo, hi in rows], dtype=float
    ).reshape(-1, 4)
    if len(data) > max_points:
        width = max(1, -(-(end_ms - start_ms) // max_points))
        buckets, which = np.unique((data[:, 0] - start_ms) // width, return_inverse=True)
        sums = np.zeros((len(buckets), 4))
        np.add.at(sums, which, data)
        data = sums / np.bincount(which)[:, None]
    return [int(t) for t in data[:, 0]], *(data[:, k].tolist() for k in (1, 2, 3))


@roles.require_role(roles.VIEWER)
def interference_instance(request, name: str):
    instance = get_object_or_404(Instance.objects.select_related("node"), name=name)
    tr = timerange.from_request(request, default="6h")
    in_range = InterferencePrediction.objects.filter(
        instance=instance, ts__gte=tr.start, ts__lte=tr.end
    )
    latest = in_range.order_by("-ts").select_related("model_version").first()
    ts, p, low, high = band_points(
        in_range.order_by("ts").values_list("ts", "p", "p_low", "p_high"),
        tr.start_ms,
        tr.end_ms,
    )
    newest_round = latest_round()
    in_round = (
        newest_round is not None
        and instance.interference_predictions.filter(ts__gte=newest_round).exists()
    )
    missing = None  # why the newest round has no prediction for it (whatever range is shown)
    if instance.node_id and not in_round:
        left_out = unpredicted(newest_round, set(), only=instance)
        missing = left_out[0]["reason"] if left_out else None
    neighbours_predicted = (
        latest is not None
        and InterferencePrediction.objects.filter(node_id=latest.node_id, ts=latest.ts)
        .exclude(instance=instance)
        .exists()
    )
    return render(
        request,
        "detection/interference_instance.html",
        {
            "instance": instance,
            "tr": tr,
            "presets": timerange.PRESETS,
            "latest": latest,
            "missing": missing,
            "neighbours_predicted": neighbours_predicted,
            "attribute_worst": ATTRIBUTE_WORST,
            "figure": charts.p_band_figure(
                f"Predicted P of {instance.name} (1 = not slowed)",
                ts,
                p,
                low,
                high,
                tr.start_ms,
                tr.end_ms,
            ),
        },
    )


@roles.require_role(roles.VIEWER)
def what_if_page(request):
    result = error = None
    instance_name = request.GET.get("instance", "")
    node_name = request.GET.get("node", "")
    if instance_name and node_name:
        try:
            result = what_if(instance_name, node_name)
        except WhatIfError as exc:
            error = str(exc)
    coverage = widening = None
    if result is not None:  # what the intervals promise, stated under an answer
        promoted = versions.promoted(ModelVersion.KIND_INTERFERENCE)
        coverage, widening = interval_coverage(promoted), what_if_widening(promoted)
    return render(
        request,
        "detection/what_if.html",
        {
            "instances": Instance.objects.filter(node__isnull=False)
            .order_by("name")
            .values_list("name", flat=True),
            "nodes": Node.objects.order_by("name").values_list("name", flat=True),
            "instance_name": instance_name,
            "node_name": node_name,
            "result": result,
            "error": error,
            "coverage": coverage,
            "widening_pp": None if widening is None else 100 * widening,
        },
    )


@csrf_exempt  # schedulers call it with a token; sessions are checked below
@login_not_required
@require_POST
def what_if_api(request):
    """``POST /api/v1/interference/what-if {"instance": NAME, "node": NAME}``: predicted P of
    the moved instance and of every instance already on the target node, with intervals."""
    if not roles.has_role(request.user, roles.VIEWER):
        token = authenticate(raw_token_from_request(request))
        if token is None:
            return JsonResponse({"error": "authentication required"}, status=401)
        if "read" not in token.scopes:
            return JsonResponse({"error": "this token lacks the 'read' scope"}, status=403)
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "the body is not JSON", "field": "body"}, status=400)
    if not isinstance(body, dict):
        return JsonResponse(
            {"error": "the body must be a JSON object", "field": "body"}, status=400
        )
    for field in ("instance", "node"):
        if not isinstance(body.get(field), str) or not body[field]:
            return JsonResponse(
                {"error": f"{field} is required (a name)", "field": field}, status=400
            )
    try:
        result = what_if(body["instance"], body["node"])
    except WhatIfError as exc:
        return JsonResponse({"error": str(exc), "field": exc.field}, status=exc.status)
    return JsonResponse(result)
