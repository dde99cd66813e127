"""Configuration pages: rules (with the backtest in the editor), receivers (with a test
button), the routing tree, inhibition rules and maintenance windows. Viewers read
rules and routes; admins change them, and every change is audited."""

from __future__ import annotations

import time

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from webapp.alerting import backtest, charts, delivery, evaluation, routing, services
from webapp.alerting.forms import (
    AlertRuleForm,
    InhibitionForm,
    MaintenanceWindowForm,
    ReceiverForm,
    RouteForm,
)
from webapp.alerting.models import (
    AlertInstance,
    AlertRule,
    InhibitionRule,
    MaintenanceWindow,
    Receiver,
    Route,
)
from webapp.alerting.sources import RuleError
from webapp.core import roles
from webapp.telemetry.query import QueryError

BACKTEST_RANGES = (("6h", "last 6 hours", 6), ("1d", "last day", 24), ("7d", "last 7 days", 168))
BACKTEST_HOURS = {key: hours for key, _, hours in BACKTEST_RANGES}
MAX_PERIOD_ROWS = 200


# --- rules ------------------------------------------------------------------------------------
@roles.require_role(roles.VIEWER)
def rule_list(request):
    rules = AlertRule.objects.filter(archived=False).order_by("name")
    firing = {}
    for rule_id, state in AlertInstance.objects.filter(state__in=services.ACTIVE).values_list(
        "rule_id", "state"
    ):
        firing.setdefault(rule_id, {"firing": 0, "pending": 0})[state] += 1
    for rule in rules:
        rule.counts = firing.get(rule.id, {"firing": 0, "pending": 0})
    return render(
        request,
        "alerting/rule_list.html",
        {"rules": rules, "is_admin": roles.has_role(request.user, roles.ADMIN), "tab": "rules"},
    )


def backtest_context(rule: AlertRule, range_key: str) -> dict:
    hours = BACKTEST_HOURS.get(range_key, 168)
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - hours * 3600_000
    started = time.perf_counter()
    try:
        result = backtest.backtest(rule, start_ms, end_ms)
    except (RuleError, QueryError, ValueError) as exc:
        return {"backtest_error": str(exc), "backtest_range": range_key}
    shown = result.alerts[: charts.MAX_LINES]
    figure = charts.rule_figure(
        f"Backtest: {rule.condition_text}",
        result.times.tolist(),
        [(a.labels, backtest.finite(a.values.tolist())) for a in shown],
        None if rule.evaluator == "absence" else rule.threshold,
        [p for a in result.alerts for p in a.periods],
        start_ms,
        end_ms,
        height=320,
    )
    periods = [
        {
            "labels": charts.label_text(labels),
            "start": services.from_ms(s),
            "end": services.from_ms(e) if e else None,
            "minutes": round(((e or end_ms) - s) / 60000, 1),
        }
        for labels, s, e in result.periods[:MAX_PERIOD_ROWS]
    ]
    return {
        "backtest": result,
        "backtest_figure": figure,
        "backtest_periods": periods,
        "backtest_more": max(0, len(result.periods) - MAX_PERIOD_ROWS),
        "backtest_range": range_key,
        "backtest_seconds": round(time.perf_counter() - started, 2),
        "backtest_firing_minutes": round(
            sum(((e or end_ms) - s) for _, s, e in result.periods) / 60000, 1
        ),
    }


@roles.require_role(roles.VIEWER)
def rule_detail(request, rule_id: int):
    rule = get_object_or_404(AlertRule, pk=rule_id)
    context = {
        "rule": rule,
        "alerts": rule.alerts.filter(state__in=services.ACTIVE).order_by("-fired_at")[:200],
        "events": rule.events.select_related("alert", "actor")[:50],
        "is_admin": roles.has_role(request.user, roles.ADMIN),
        "ranges": BACKTEST_RANGES,
        "tab": "rules",
    }
    if request.GET.get("backtest") in BACKTEST_HOURS:
        context.update(backtest_context(rule, request.GET["backtest"]))
    return render(request, "alerting/rule_detail.html", context)


def _rule_editor(request, rule: AlertRule | None):
    form = AlertRuleForm(request.POST or None, instance=rule)
    context = {"form": form, "rule": rule, "ranges": BACKTEST_RANGES, "tab": "rules"}
    if request.method == "POST" and form.is_valid():
        candidate = form.save(commit=False)
        if request.POST.get("action") == "backtest":
            context.update(backtest_context(candidate, request.POST.get("backtest_range", "7d")))
        else:
            created = candidate.pk is None
            services.save_config(candidate, request.user, kind=candidate.kind)
            messages.success(request, f"Rule {candidate.name} {'created' if created else 'saved'}.")
            return redirect("rule_detail", candidate.pk)
    return render(request, "alerting/rule_edit.html", context)


@roles.require_role(roles.ADMIN)
def rule_create(request):
    return _rule_editor(request, None)


@roles.require_role(roles.ADMIN)
def rule_edit(request, rule_id: int):
    return _rule_editor(request, get_object_or_404(AlertRule, pk=rule_id, archived=False))


@roles.require_role(roles.ADMIN)
@require_POST
def rule_delete(request, rule_id: int):
    rule = get_object_or_404(AlertRule, pk=rule_id, archived=False)
    services.delete_config(rule, request.user)
    messages.success(request, f"Rule {rule.name} deleted; its alerts' history stays.")
    return redirect("rule_list")


@roles.require_role(roles.ADMIN)
@require_POST
def rule_evaluate(request, rule_id: int):
    rule = get_object_or_404(AlertRule, pk=rule_id, archived=False, enabled=True)
    now = timezone.now()
    evaluation.evaluate_rules([rule.pk], now)
    rule.refresh_from_db()
    if rule.last_error:
        messages.error(request, f"Evaluation failed: {rule.last_error}")
    else:
        messages.success(request, f"Rule {rule.name} evaluated.")
    return redirect("rule_detail", rule.pk)


# --- receivers --------------------------------------------------------------------------------
@roles.require_role(roles.ADMIN)
def receiver_list(request):
    receivers = Receiver.objects.all()
    for receiver in receivers:
        receiver.recent = receiver.notifications.order_by("-created_at")[:1].first()
    return render(
        request, "alerting/receiver_list.html", {"receivers": receivers, "tab": "receivers"}
    )


def _config_editor(request, obj, form_class, template: str, done: str, what: str):
    form = form_class(request.POST or None, instance=obj)
    if request.method == "POST" and form.is_valid():
        saved = services.save_config(form.save(commit=False), request.user)
        messages.success(request, f"{what.capitalize()} {saved} saved.")
        return redirect(done)
    return render(request, template, {"form": form, "obj": obj, "what": what, "tab": done})


@roles.require_role(roles.ADMIN)
def receiver_create(request):
    return _config_editor(
        request, None, ReceiverForm, "alerting/config_edit.html", "receiver_list", "receiver"
    )


@roles.require_role(roles.ADMIN)
def receiver_edit(request, receiver_id: int):
    receiver = get_object_or_404(Receiver, pk=receiver_id)
    return _config_editor(
        request, receiver, ReceiverForm, "alerting/config_edit.html", "receiver_list", "receiver"
    )


@roles.require_role(roles.ADMIN)
@require_POST
def receiver_delete(request, receiver_id: int):
    receiver = get_object_or_404(Receiver, pk=receiver_id)
    services.delete_config(receiver, request.user)
    messages.success(request, f"Receiver {receiver.name} deleted.")
    return redirect("receiver_list")


@roles.require_role(roles.ADMIN)
@require_POST
def receiver_test(request, receiver_id: int):
    receiver = get_object_or_404(Receiver, pk=receiver_id)
    notification = delivery.send_test(receiver, request.user)
    notification.refresh_from_db()
    if notification.status == notification.SENT:
        messages.success(request, f"Test notification delivered to {receiver.name}.")
    elif notification.last_error:
        messages.error(
            request,
            f"Test notification to {receiver.name} failed: {notification.last_error}."
            " It will be retried; see the notification log.",
        )
    else:
        messages.success(request, f"Test notification to {receiver.name} queued.")
    return redirect("receiver_list")


# --- routing tree, inhibition rules, maintenance windows ------------------------------------------
@roles.require_role(roles.VIEWER)
def route_list(request):
    tree = routing.load_tree()
    rows = []
    routes = {r.pk: r for r in Route.objects.select_related("receiver")}
    receivers = {r.pk: r for r in Receiver.objects.all()}
    for node, depth in routing.walk(tree):
        rows.append(
            {
                "route": routes[node.id],
                "node": node,
                "depth": depth,
                "indent": depth * 24,
                "receiver": receivers.get(node.receiver_id),
            }
        )
    now = timezone.now()
    windows = list(MaintenanceWindow.objects.all())
    active = {pk for pk, _ in routing.active_windows(now)}
    for window in windows:
        window.active_now = window.pk in active
    return render(
        request,
        "alerting/route_list.html",
        {
            "rows": rows,
            "orphans": [r for r in routes.values() if r.pk not in {x["route"].pk for x in rows}],
            "inhibitions": InhibitionRule.objects.all(),
            "windows": windows,
            "is_admin": roles.has_role(request.user, roles.ADMIN),
            "tab": "routes",
        },
    )


@roles.require_role(roles.ADMIN)
def route_create(request):
    return _config_editor(
        request, None, RouteForm, "alerting/config_edit.html", "route_list", "route"
    )


@roles.require_role(roles.ADMIN)
def route_edit(request, route_id: int):
    route = get_object_or_404(Route, pk=route_id)
    return _config_editor(
        request, route, RouteForm, "alerting/config_edit.html", "route_list", "route"
    )


@roles.require_role(roles.ADMIN)
@require_POST
def route_delete(request, route_id: int):
    route = get_object_or_404(Route, pk=route_id)
    services.delete_config(route, request.user)
    messages.success(request, f"Route {route} and the routes below it deleted.")
    return redirect("route_list")


@roles.require_role(roles.ADMIN)
def inhibition_create(request):
    return _config_editor(
        request, None, InhibitionForm, "alerting/config_edit.html", "route_list", "inhibition rule"
    )


@roles.require_role(roles.ADMIN)
def inhibition_edit(request, inhibition_id: int):
    rule = get_object_or_404(InhibitionRule, pk=inhibition_id)
    return _config_editor(
        request, rule, InhibitionForm, "alerting/config_edit.html", "route_list", "inhibition rule"
    )


@roles.require_role(roles.ADMIN)
@require_POST
def inhibition_delete(request, inhibition_id: int):
    rule = get_object_or_404(InhibitionRule, pk=inhibition_id)
    services.delete_config(rule, request.user)
    messages.success(request, "Inhibition rule deleted.")
    return redirect("route_list")


@roles.require_role(roles.ADMIN)
def window_create(request):
    return _config_editor(
        request,
        None,
        MaintenanceWindowForm,
        "alerting/config_edit.html",
        "route_list",
        "maintenance window",
    )


@roles.require_role(roles.ADMIN)
def window_edit(request, window_id: int):
    window = get_object_or_404(MaintenanceWindow, pk=window_id)
    return _config_editor(
        request,
        window,
        MaintenanceWindowForm,
        "alerting/config_edit.html",
        "route_list",
        "maintenance window",
    )


@roles.require_role(roles.ADMIN)
@require_POST
def window_delete(request, window_id: int):
    window = get_object_or_404(MaintenanceWindow, pk=window_id)
    services.delete_config(window, request.user)
    messages.success(request, f"Maintenance window {window.name} deleted.")
    return redirect("route_list")
