"""JSON API: alerts (Alertmanager v2-like shape), silences, rules, acknowledgement and a
rule backtest. Logged-in sessions with a role; writes need the CSRF token as forms do."""

from __future__ import annotations

import json
import time
from datetime import datetime

from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.alerting import backtest, services
from webapp.alerting.dispatch import alert_payload
from webapp.alerting.forms import AlertRuleForm
from webapp.alerting.matchers import MatcherError, matches, parse_matchers
from webapp.alerting.models import AlertInstance, AlertRule, Silence
from webapp.alerting.sources import RuleError
from webapp.core import roles
from webapp.telemetry.query import QueryError


def _error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _body(request) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _alert(a: AlertInstance) -> dict:
    out = alert_payload(a)
    out.update(
        {
            "id": a.pk,
            "rule": a.rule.name,
            "state": a.state,
            "value": a.value,
            "activeAt": a.active_at.isoformat() if a.active_at else None,
            "acknowledgedBy": str(a.acknowledged_by) if a.acknowledged_by else None,
            "silencedBy": a.silenced_by,
            "inhibitedBy": a.inhibited_by,
            "mutedBy": a.muted_by,
        }
    )
    return out


@roles.require_role(roles.VIEWER)
@require_GET
def alerts(request):
    state = request.GET.get("state", "firing")
    qs = AlertInstance.objects.select_related("rule", "acknowledged_by")
    qs = qs.filter(state__in=services.ACTIVE) if state == "active" else qs.filter(state=state)
    found = list(qs.order_by("id")[:5000])
    if request.GET.get("filter"):
        try:
            wanted = parse_matchers(request.GET["filter"])
        except MatcherError as exc:
            return _error(str(exc))
        found = [a for a in found if matches(wanted, a.labels)]
    return JsonResponse({"data": [_alert(a) for a in found]})


@roles.require_role(roles.OPERATOR)
@require_POST
def alert_ack(request, alert_id: int):
    alert = get_object_or_404(AlertInstance, pk=alert_id)
    try:
        comment = str(_body(request).get("comment", ""))
        services.acknowledge(alert, request.user, comment)
    except ValueError as exc:
        return _error(str(exc), 409)
    alert.refresh_from_db()
    return JsonResponse({"data": _alert(alert)})


def _silence(s: Silence, now) -> dict:
    return {
        "id": s.pk,
        "matchers": s.matchers,
        "startsAt": s.starts_at.isoformat(),
        "endsAt": s.ends_at.isoformat(),
        "createdBy": str(s.created_by) if s.created_by else None,
        "comment": s.comment,
        "status": {"state": s.state_at(now)},
    }


def _when(value, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name} needs a time zone (e.g. Z)")
    return parsed


@roles.require_role(roles.VIEWER)
@require_http_methods(["GET", "POST"])
def silences(request):
    now = timezone.now()
    if request.method == "GET":
        rows = Silence.objects.order_by("-ends_at", "-id")[:1000]
        return JsonResponse({"data": [_silence(s, now) for s in rows]})
    if not roles.has_role(request.user, roles.OPERATOR):
        return roles.forbidden(request, roles.OPERATOR)
    try:
        data = _body(request)
        silence = services.create_silence(
            str(data.get("matchers", "")),
            _when(data.get("startsAt") or now.isoformat(), "startsAt"),
            _when(data.get("endsAt"), "endsAt"),
            str(data.get("comment", "")),
            request.user,
        )
    except ValueError as exc:
        return _error(str(exc))
    return JsonResponse({"data": _silence(silence, now)}, status=201)


@roles.require_role(roles.VIEWER)
@require_GET
def rules(request):
    data = [
        {
            "id": r.pk,
            "name": r.name,
            "kind": r.kind,
            "enabled": r.enabled,
            "condition": r.condition_text,
            "for": r.for_s,
            "keepFiringFor": r.keep_firing_for_s,
            "interval": r.interval_s,
            "severity": r.severity,
            "labels": r.labels,
            "lastEvaluation": r.last_eval_at.isoformat() if r.last_eval_at else None,
            "lastError": r.last_error,
        }
        for r in AlertRule.objects.filter(archived=False)
    ]
    return JsonResponse({"data": data})


@roles.require_role(roles.ADMIN)
@require_POST
def rule_backtest(request):
    """Backtest a rule given as the editor's form fields (JSON), without saving it."""
    try:
        data = _body(request)
    except ValueError as exc:
        return _error(str(exc))
    hours = float(data.pop("hours", 168))
    form = AlertRuleForm({k: v for k, v in data.items() if v is not None})
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    rule = form.save(commit=False)
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - int(min(max(hours, 0.1), 24 * 30) * 3600_000)
    try:
        result = backtest.backtest(rule, start_ms, end_ms)
    except (RuleError, QueryError, ValueError) as exc:
        return _error(str(exc))
    return JsonResponse(
        {
            "start": start_ms / 1000,
            "end": end_ms / 1000,
            "step": result.step_ms / 1000,
            "elements": result.elements,
            "notifications": result.notifications,
            "byReceiver": result.by_receiver,
            "notes": result.notes,
            "periods": [
                {"labels": labels, "start": s / 1000, "end": e / 1000 if e else None}
                for labels, s, e in result.periods
            ],
        }
    )
