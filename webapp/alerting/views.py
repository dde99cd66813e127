"""Pages for people on call: alerts (firing now, grouped), an alert's detail, history,
silences and the notification log. Viewers read; operators acknowledge and silence."""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from webapp.alerting import backtest, charts, engine, services
from webapp.alerting.forms import AckForm, SilenceForm
from webapp.alerting.matchers import MatcherError, matchers_for_labels, parse_matchers
from webapp.alerting.matchers import matches as labels_match
from webapp.alerting.models import (
    SEVERITIES,
    AlertEvent,
    AlertInstance,
    AlertRule,
    Notification,
    NotificationAttempt,
    Silence,
)
from webapp.core import roles
from webapp.dashboards import timerange
from webapp.telemetry.query import QueryError

STATE_FILTERS = ("firing", "pending", "active", "resolved")
SEVERITY_ORDER = {s: i for i, s in enumerate(reversed(SEVERITIES))}


def _filter_alerts(request):
    g = request.GET
    state = g.get("state") if g.get("state") in STATE_FILTERS else "firing"
    qs = AlertInstance.objects.select_related("rule", "acknowledged_by")
    if state == "active":
        qs = qs.filter(state__in=services.ACTIVE)
    elif state == "resolved":
        since = timezone.now() - timedelta(days=1)
        qs = qs.filter(state=AlertInstance.RESOLVED, resolved_at__gte=since)
    else:
        qs = qs.filter(state=state)
    if g.get("rule", "").isdigit():
        qs = qs.filter(rule_id=int(g["rule"]))
    alerts = list(qs.order_by("rule__name", "-fired_at", "id")[:2000])
    error = ""
    if g.get("q"):
        try:
            wanted = parse_matchers(g["q"])
        except MatcherError as exc:
            error = str(exc)
        else:
            alerts = [a for a in alerts if labels_match(wanted, a.labels)]
    if g.get("severity") in SEVERITIES:
        alerts = [a for a in alerts if a.severity == g["severity"]]
    muting = g.get("muted", "show")
    if muting == "hide":
        alerts = [a for a in alerts if not a.is_suppressed and not a.acknowledged_at]
    elif muting == "only":
        alerts = [a for a in alerts if a.is_suppressed or a.acknowledged_at]
    return state, alerts, error


@roles.require_role(roles.VIEWER)
def alert_list(request):
    state, alerts, error = _filter_alerts(request)
    groups: OrderedDict[str, dict] = OrderedDict()
    for alert in sorted(alerts, key=lambda a: (SEVERITY_ORDER.get(a.severity, 9), a.rule.name)):
        group = groups.setdefault(
            alert.rule.name, {"rule": alert.rule, "alerts": [], "muted": 0, "acked": 0}
        )
        group["alerts"].append(alert)
        group["muted"] += alert.is_suppressed
        group["acked"] += alert.acknowledged_at is not None
    counts = dict(
        AlertInstance.objects.filter(state__in=services.ACTIVE)
        .values_list("state")
        .annotate(n=Count("id"))
    )
    return render(
        request,
        "alerting/alert_list.html",
        {
            "groups": groups.values(),
            "state": state,
            "states": STATE_FILTERS,
            "severities": SEVERITIES,
            "rules": AlertRule.objects.filter(archived=False).only("id", "name"),
            "error": error,
            "total": len(alerts),
            "firing_count": counts.get(AlertInstance.FIRING, 0),
            "pending_count": counts.get(AlertInstance.PENDING, 0),
            "can_act": roles.has_role(request.user, roles.OPERATOR),
            "tab": "alerts",
        },
    )


def _alert_figure(alert: AlertInstance, tr) -> tuple[dict | None, str]:
    rule = alert.rule
    events = list(
        alert.events.filter(kind__in=(AlertEvent.FIRING, AlertEvent.RESOLVED))
        .filter(at__lte=tr.end)
        .order_by("at", "id")
    )
    periods = charts_periods(events, tr.start_ms)
    try:
        grid = backtest.rule_values(
            rule, tr.start_ms, tr.end_ms, only=(alert.fingerprint, alert.labels)
        )
    except (QueryError, ValueError) as exc:
        return None, str(exc)
    lines = [(alert.labels, backtest.finite(el.values.tolist())) for el in grid.elements[:1]]
    threshold = None if rule.evaluator == "absence" else rule.threshold
    figure = charts.rule_figure(
        f"{rule.condition_text}",
        grid.times.tolist(),
        lines,
        threshold,
        periods,
        tr.start_ms,
        tr.end_ms,
    )
    return figure, "; ".join(grid.notes)


def charts_periods(events, start_ms: int) -> list[tuple[int, int | None]]:
    transitions = [(services.to_ms(e.at), e.kind) for e in events]
    found = engine.periods(transitions)
    return [(max(s, start_ms), e) for s, e in found if e is None or e >= start_ms]


@roles.require_role(roles.VIEWER)
def alert_detail(request, alert_id: int):
    alert = get_object_or_404(
        AlertInstance.objects.select_related("rule", "acknowledged_by", "unhealthy_event"),
        pk=alert_id,
    )
    tr = timerange.from_request(request, default="6h")
    figure, chart_note = _alert_figure(alert, tr)
    notifications = alert.notifications.prefetch_related(
        Prefetch("attempt_log", queryset=NotificationAttempt.objects.order_by("number"))
    ).order_by("-created_at")[:50]
    silences = Silence.objects.filter(pk__in=alert.silenced_by)
    return render(
        request,
        "alerting/alert_detail.html",
        {
            "alert": alert,
            "rule": alert.rule,
            "tr": tr,
            "presets": timerange.PRESETS,
            "figure": figure,
            "chart_note": chart_note,
            "events": alert.events.select_related("actor")[:200],
            "notifications": notifications,
            "silences": silences,
            "silence_matchers": matchers_for_labels(alert.labels),
            "ack_form": AckForm(),
            "can_act": roles.has_role(request.user, roles.OPERATOR),
            "tab": "alerts",
        },
    )


@roles.require_role(roles.OPERATOR)
@require_POST
def alert_ack(request, alert_id: int):
    alert = get_object_or_404(AlertInstance, pk=alert_id)
    form = AckForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    try:
        services.acknowledge(alert, request.user, comment)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Acknowledged: repeats of {alert} are muted until it resolves.")
    return redirect(_next(request, "alert_detail", alert.pk))


@roles.require_role(roles.OPERATOR)
@require_POST
def alert_unack(request, alert_id: int):
    alert = get_object_or_404(AlertInstance, pk=alert_id)
    try:
        services.unacknowledge(alert, request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Acknowledgement removed.")
    return redirect(_next(request, "alert_detail", alert.pk))


def _next(request, name: str, *args):
    from django.urls import reverse
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse(name, args=args)


@roles.require_role(roles.VIEWER)
def alert_history(request):
    g = request.GET
    qs = AlertEvent.objects.select_related("alert", "rule", "actor")
    if g.get("kind") in dict(AlertEvent.KINDS):
        qs = qs.filter(kind=g["kind"])
    if g.get("rule", "").isdigit():
        qs = qs.filter(rule_id=int(g["rule"]))
    if g.get("alert", "").isdigit():
        qs = qs.filter(alert_id=int(g["alert"]))
    tr = timerange.from_request(request, default="7d")
    qs = qs.filter(at__gte=tr.start, at__lte=tr.end)
    error = ""
    if g.get("q"):
        try:
            wanted = parse_matchers(g["q"])
        except MatcherError as exc:
            error = str(exc)
        else:
            # Label filters run in Python: JSON matching differs between the backends.
            ids = [a.pk for a in AlertInstance.objects.all() if labels_match(wanted, a.labels)]
            qs = qs.filter(alert_id__in=ids)
    page = Paginator(qs.order_by("-at", "-id"), 100).get_page(g.get("page"))
    return render(
        request,
        "alerting/history.html",
        {
            "page": page,
            "kinds": [k for k, _ in AlertEvent.KINDS],
            "rules": AlertRule.objects.only("id", "name"),
            "error": error,
            "tr": tr,
            "presets": timerange.PRESETS,
            "tab": "history",
        },
    )


# --- silences ---------------------------------------------------------------------------------
@roles.require_role(roles.VIEWER)
def silence_list(request):
    now = timezone.now()
    firing = list(AlertInstance.objects.filter(state=AlertInstance.FIRING).select_related("rule"))
    rows = {"active": [], "pending": [], "expired": []}
    for silence in Silence.objects.select_related("created_by").order_by("-ends_at", "-id")[:500]:
        state = silence.state_at(now)
        if state == "expired" and len(rows["expired"]) >= 100:
            continue
        try:
            parsed = parse_matchers(silence.matchers)
        except MatcherError:
            parsed = None
        silence.muting = (
            [a for a in firing if labels_match(parsed, a.labels)] if parsed is not None else []
        )
        rows[state].append(silence)
    return render(
        request,
        "alerting/silence_list.html",
        {
            "rows": rows,
            "silenced_now": [a for a in firing if a.silenced_by],
            "can_act": roles.has_role(request.user, roles.OPERATOR),
            "now": now,
            "tab": "silences",
        },
    )


def _silence_initial(request) -> dict:
    now = timezone.now().replace(second=0, microsecond=0)
    initial = {"starts_at": now, "ends_at": services.default_silence_end(now)}
    alert_id = request.GET.get("alert", "")
    if alert_id.isdigit():
        alert = AlertInstance.objects.filter(pk=int(alert_id)).first()
        if alert is not None:
            initial["matchers"] = matchers_for_labels(alert.labels)
            initial["comment"] = ""
    elif request.GET.get("matchers"):
        initial["matchers"] = request.GET["matchers"]
    return initial


@roles.require_role(roles.OPERATOR)
def silence_create(request):
    form = SilenceForm(request.POST or None, initial=_silence_initial(request))
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            silence = services.create_silence(
                d["matchers"], d["starts_at"], d["ends_at"], d["comment"], request.user
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Silence {silence.pk} created.")
            return redirect("silence_list")
    return render(
        request,
        "alerting/silence_edit.html",
        {"form": form, "silence": None, "preview": _preview(form), "tab": "silences"},
    )


def _preview(form) -> list[AlertInstance]:
    """Firing alerts the silence being written would mute."""
    text = form.data.get("matchers") if form.is_bound else form.initial.get("matchers")
    if not text:
        return []
    try:
        parsed = parse_matchers(text, require_one=True)
    except MatcherError:
        return []
    firing = AlertInstance.objects.filter(state=AlertInstance.FIRING).select_related("rule")
    return [a for a in firing if labels_match(parsed, a.labels)][:100]


@roles.require_role(roles.OPERATOR)
def silence_edit(request, silence_id: int):
    silence = get_object_or_404(Silence, pk=silence_id)
    initial = {
        "matchers": silence.matchers,
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "comment": silence.comment,
    }
    form = SilenceForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            services.update_silence(
                silence, d["matchers"], d["starts_at"], d["ends_at"], d["comment"], request.user
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Silence {silence.pk} saved.")
            return redirect("silence_list")
    return render(
        request,
        "alerting/silence_edit.html",
        {"form": form, "silence": silence, "preview": _preview(form), "tab": "silences"},
    )


@roles.require_role(roles.OPERATOR)
@require_POST
def silence_expire(request, silence_id: int):
    silence = get_object_or_404(Silence, pk=silence_id)
    services.expire_silence(silence, request.user)
    messages.success(request, f"Silence {silence.pk} expired.")
    return redirect("silence_list")


# --- notification log --------------------------------------------------------------------------
@roles.require_role(roles.VIEWER)
def notification_list(request):
    g = request.GET
    qs = Notification.objects.prefetch_related(
        Prefetch("attempt_log", queryset=NotificationAttempt.objects.order_by("number"))
    )
    if g.get("status") in dict(Notification.STATUSES):
        qs = qs.filter(status=g["status"])
    if g.get("receiver"):
        qs = qs.filter(receiver_name=g["receiver"])
    page = Paginator(qs.order_by("-created_at", "-id"), 50).get_page(g.get("page"))
    return render(
        request,
        "alerting/notification_list.html",
        {
            "page": page,
            "statuses": [s for s, _ in Notification.STATUSES],
            "receivers": Notification.objects.values_list("receiver_name", flat=True)
            .distinct()
            .order_by("receiver_name"),
            "failing": Notification.objects.filter(
                status=Notification.PENDING, attempts__gt=0
            ).count(),
            "tab": "notifications",
        },
    )
