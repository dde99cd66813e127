"""Custom dashboards: list, view (with the node/instance variable), create and edit."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.core import roles
from webapp.dashboards import charts, fleet, services, timerange
from webapp.dashboards.forms import DashboardForm, PanelFormSet
from webapp.dashboards.models import Dashboard
from webapp.telemetry import query
from webapp.telemetry.models import Instance, Node
from webapp.telemetry.query import QueryError

MAX_SERIES_PER_PANEL = 20


@roles.require_role(roles.VIEWER)
def dashboard_list(request):
    return render(
        request,
        "dashboards/dashboard_list.html",
        {
            "dashboards": Dashboard.objects.select_related("owner"),
            "can_edit": roles.has_role(request.user, roles.OPERATOR),
        },
    )


def _variable_choices(variable: str) -> list[str]:
    if variable == "node":
        return list(Node.objects.order_by("name").values_list("name", flat=True)[:2000])
    if variable == "instance":
        return list(Instance.objects.order_by("name").values_list("name", flat=True)[:2000])
    return []


@roles.require_role(roles.VIEWER)
def dashboard_view(request, slug: str):
    dashboard = get_object_or_404(Dashboard, slug=slug)
    tr = timerange.from_request(request)
    choices = _variable_choices(dashboard.variable)
    value = request.GET.get("var") or (choices[0] if choices else "")
    panels = []
    for i, panel in enumerate(dashboard.panels):
        selector = services.substitute(panel["query"], dashboard.variable, value)
        figure = error = None
        try:
            found = query.select(selector, limit=MAX_SERIES_PER_PANEL)
            results, _ = query.range_query(found, tr.start_ms, tr.end_ms, tr.step_ms, panel["agg"])
            spec = charts.ChartSpec(
                title=panel["title"], unit=panel["unit"], lines=fleet.result_lines(found, results)
            )
            figure = charts.panel_figure(spec, panel["type"], tr.start_ms, tr.end_ms)
        except QueryError as exc:
            error = str(exc)
        panels.append({"id": f"panel-{i}", "panel": panel, "figure": figure, "error": error})
    return render(
        request,
        "dashboards/dashboard_view.html",
        {
            "d": dashboard,
            "tr": tr,
            "presets": timerange.PRESETS,
            "panels": panels,
            "choices": choices,
            "value": value,
            "can_edit": roles.has_role(request.user, roles.OPERATOR),
        },
    )


def _edit(request, dashboard: Dashboard | None):
    initial_panels = dashboard.panels if dashboard else []
    form = DashboardForm(
        request.POST or None,
        initial={
            "name": dashboard.name,
            "description": dashboard.description,
            "variable": dashboard.variable,
        }
        if dashboard
        else None,
    )
    # Posted rows are read as they are; "initial" would make unchanged rows look empty.
    if request.method == "POST":
        formset = PanelFormSet(request.POST, prefix="panels")
    else:
        formset = PanelFormSet(initial=initial_panels, prefix="panels")
    error = None
    if request.method == "POST" and form.is_valid() and formset.is_valid():
        panels = [f.cleaned_data for f in formset if f.cleaned_data.get("query")]
        try:
            saved = services.save_dashboard(
                dashboard,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                variable=form.cleaned_data["variable"],
                panels=panels,
                owner=request.user,
            )
        except ValueError as exc:
            error = str(exc)
        else:
            messages.success(request, f"Dashboard {saved.name} saved.")
            return redirect("dashboard_view", slug=saved.slug)
    return render(
        request,
        "dashboards/dashboard_edit.html",
        {"d": dashboard, "form": form, "formset": formset, "error": error},
    )


@roles.require_role(roles.OPERATOR)
def dashboard_create(request):
    return _edit(request, None)


@roles.require_role(roles.OPERATOR)
def dashboard_edit(request, slug: str):
    return _edit(request, get_object_or_404(Dashboard, slug=slug))


@roles.require_role(roles.OPERATOR)
@require_POST
def dashboard_delete(request, slug: str):
    dashboard = get_object_or_404(Dashboard, slug=slug)
    services.delete_dashboard(dashboard)
    messages.success(request, f"Dashboard {dashboard.name} deleted.")
    return redirect("dashboard_list")
