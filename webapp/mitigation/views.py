from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from webapp.core import roles
from webapp.core.csrf import session_csrf_failed
from webapp.core.models import IngestToken
from webapp.core.tokens import authenticate, raw_token_from_request
from webapp.mitigation import charts, history, services
from webapp.mitigation.forms import MAX_IMPORT_BYTES, HistoryImportForm
from webapp.mitigation.models import MitigationAction, UnhealthyEvent
from webapp.telemetry.models import Node


@roles.require_role(roles.VIEWER)
def mitigation(request):
    show = request.GET.get("show", "open")
    qs = UnhealthyEvent.objects.select_related("node").prefetch_related("recommendations__action")
    if show == "open":
        qs = qs.exclude(status=UnhealthyEvent.CLOSED)
    page = Paginator(qs.order_by("-start"), 50).get_page(request.GET.get("page"))
    for event in page:
        event.latest = next(iter(event.recommendations.all()), None)
    return render(
        request,
        "mitigation/events.html",
        {"page": page, "show": show, "can_import": roles.has_role(request.user, roles.ADMIN)},
    )


@roles.require_role(roles.VIEWER)
def event_detail(request, event_id: int):
    event = get_object_or_404(UnhealthyEvent.objects.select_related("node"), pk=event_id)
    recommendation = event.recommendations.select_related(
        "action", "legacy_action", "model_version"
    ).first()
    outcome = getattr(event, "outcome", None)
    actions = list(MitigationAction.objects.all())
    names = {a.key: a.name for a in actions}
    figure = (
        charts.estimates_figure(
            recommendation.estimates,
            recommendation.action.key,
            recommendation.legacy_action.key,
            names,
        )
        if recommendation and recommendation.estimates
        else None
    )
    predicted = (
        recommendation.estimates.get(outcome.action.key, {}).get("downtime")
        if recommendation and outcome
        else None
    )
    return render(
        request,
        "mitigation/event_detail.html",
        {
            "e": event,
            "r": recommendation,
            "outcome": outcome,
            "predicted": predicted,
            "figure": figure,
            "actions": actions,
            "can_act": roles.has_role(request.user, roles.OPERATOR),
        },
    )


@roles.require_role(roles.OPERATOR)
@require_POST
def event_apply(request, event_id: int):
    event = get_object_or_404(UnhealthyEvent, pk=event_id)
    try:
        services.apply_action(
            event,
            request.POST.get("action", ""),
            actor=request.user,
            reason=request.POST.get("reason", ""),
            recommendation=event.recommendations.first(),
        )
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Action recorded. Record its outcome when the node is back.")
    return redirect("mitigation_event", event_id=event.pk)


@roles.require_role(roles.OPERATOR)
@require_POST
def event_outcome(request, event_id: int):
    event = get_object_or_404(UnhealthyEvent, pk=event_id)
    try:
        values = {
            key: float(request.POST.get(key, ""))
            for key in ("downtime_minutes", "interruptions", "capacity_cost")
        }
        services.record_outcome(event, **values)
    except ValueError as exc:
        messages.error(request, f"Outcome not recorded: {exc}")
    else:
        messages.success(
            request, "Outcome recorded; the event is closed and joins the training history."
        )
    return redirect("mitigation_event", event_id=event.pk)


@roles.require_role(roles.OPERATOR)
def event_create(request):
    """Open an event by hand (a technician's report, another monitoring system)."""
    error = None
    if request.method == "POST":
        node = Node.objects.filter(name=request.POST.get("node", "")).first()
        try:
            signals = json.loads(request.POST.get("signals") or "{}")
            if node is None:
                raise ValueError("unknown node")
            if not isinstance(signals, dict):
                raise ValueError("signals must be a JSON object")
            event, _ = services.open_unhealthy_event(
                node, request.POST.get("fault_category", ""), signals, source="admin"
            )
        except (ValueError, json.JSONDecodeError) as exc:
            error = str(exc)
        else:
            return redirect("mitigation_event", event_id=event.pk)
    return render(
        request,
        "mitigation/event_new.html",
        {
            "error": error,
            "faults": services.FAULT_CATEGORIES,
            "nodes": Node.objects.order_by("name").values_list("name", flat=True),
            "post": request.POST,
        },
    )


@roles.require_role(roles.ADMIN)
def history_import(request):
    """Upload of past events; a refused file answers 400 (413 when too large) with the
    reason next to the file field."""
    report, status = None, 200
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if request.method == "POST" and declared > MAX_IMPORT_BYTES + 64 * 1024:
        # Refuse before Django spools the body to disk.
        form = HistoryImportForm(data={}, files={})
        form.errors["file"] = form.error_class(
            [f"The upload is larger than {MAX_IMPORT_BYTES // 1024 // 1024} MB."]
        )
        status = 413
    else:
        form = HistoryImportForm(
            *((request.POST, request.FILES) if request.method == "POST" else ())
        )
        if request.method == "POST":
            if not form.is_valid():
                status = 413 if form.has_error("file", "too_large") else 400
            else:
                upload = form.cleaned_data["file"]
                report = history.import_file(upload.name, upload.read(), actor=request.user)
                if report.file_error:
                    form.add_error("file", report.file_error)
                    status = 400
    return render(
        request,
        "mitigation/import.html",
        {
            "form": form,
            "report": report,
            "schema": history.SCHEMA,
            "max_mb": MAX_IMPORT_BYTES // 1024 // 1024,
            "max_rows": history.MAX_ROWS,
        },
        status=status,
    )


@csrf_exempt  # token clients; sessions need a role and pass the CSRF check below
@login_not_required
@require_POST
def events_api(request):
    """``POST /api/v1/mitigation/events`` opens an unhealthy-node event from another
    system: {"node", "fault_category", "signals": {...}, "external_id"}."""
    if not roles.has_role(request.user, roles.OPERATOR):
        token = authenticate(raw_token_from_request(request))
        if token is None:
            return JsonResponse({"error": "authentication required"}, status=401)
        if IngestToken.SCOPE_METRICS_WRITE not in token.scopes:
            return JsonResponse({"error": "this token lacks the 'metrics:write' scope"}, status=403)
    elif session_csrf_failed(request):
        return JsonResponse({"error": "CSRF token missing or incorrect"}, status=403)
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "the body is not JSON", "field": "body"}, status=400)
    if not isinstance(body, dict):
        return JsonResponse(
            {"error": "the body must be a JSON object", "field": "body"}, status=400
        )
    node = Node.objects.filter(name=str(body.get("node", ""))).first()
    if node is None:
        return JsonResponse(
            {"error": f"unknown node {body.get('node')!r}", "field": "node"}, status=400
        )
    signals = body.get("signals", {})
    if not isinstance(signals, dict):
        return JsonResponse({"error": "signals must be an object", "field": "signals"}, status=400)
    try:
        event, created = services.open_unhealthy_event(
            node,
            str(body.get("fault_category", "")),
            signals,
            source="api",
            external_id=str(body.get("external_id", ""))[:100],
        )
    except ValueError as exc:
        return JsonResponse({"error": str(exc), "field": "fault_category"}, status=400)
    recommendation = event.recommendations.order_by("-created_at", "-pk").first()
    return JsonResponse(
        {
            "id": event.pk,
            "created": created,
            "recommended_action": recommendation.action.key if recommendation else None,
            "fallback_reason": recommendation.fallback_reason if recommendation else None,
        },
        status=201 if created else 200,
    )
