from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from webapp.core import roles
from webapp.core.services import audit
from webapp.dashboards import timerange
from webapp.incidents import postmortem, services
from webapp.incidents.forms import CorrelationRuleForm
from webapp.incidents.markdown import render as render_markdown
from webapp.incidents.models import LABELS, CorrelationRule, Incident, Signal


@roles.require_role(roles.VIEWER)
def incident_list(request):
    g = request.GET
    qs = Incident.objects.filter(merged_into__isnull=True).select_related(
        "node", "instance", "assignee"
    )
    state = g.get("state", "active")
    if state == "active":
        qs = qs.exclude(state=Incident.RESOLVED)
    elif state in dict(Incident.STATES):
        qs = qs.filter(state=state)
    if g.get("severity") in dict(Incident.SEVERITIES):
        qs = qs.filter(severity=g["severity"])
    if g.get("node"):
        qs = qs.filter(node__name=g["node"])
    page = Paginator(qs.order_by("-start"), 50).get_page(g.get("page"))
    return render(
        request,
        "incidents/incident_list.html",
        {
            "page": page,
            "state": state,
            "filters": g,
            "states": Incident.STATES,
            "severities": Incident.SEVERITIES,
        },
    )


@roles.require_role(roles.VIEWER)
def incident_detail(request, incident_id: int):
    incident = get_object_or_404(
        Incident.objects.select_related("node", "instance", "assignee", "rule", "merged_into"),
        pk=incident_id,
    )
    context = postmortem.gather(incident)
    end = incident.end or timezone.now()
    window = timerange.TimeRange(
        int((incident.start - timedelta(minutes=30)).timestamp() * 1000),
        int((end + timedelta(minutes=15)).timestamp() * 1000),
        None,
    )
    timeline = list(incident.timeline.select_related("actor"))
    for entry in timeline:
        entry.html = render_markdown(entry.text) if entry.kind == "comment" else None
    can_act = roles.has_role(request.user, roles.OPERATOR)
    return render(
        request,
        "incidents/incident_detail.html",
        {
            "i": incident,
            "tr": window,
            "timeline": timeline,
            "signals": context["signals"],
            "figures": postmortem.figures(incident, window),
            "logs": context["logs"],
            "recommendations": context["recommendations"],
            "states": [s for s, _ in Incident.STATES],
            "labels": LABELS,
            "can_act": can_act,
            "can_annotate": can_act,
            "annotate_incident": incident.pk,
            "annotate_node": incident.node.name if incident.node_id else "",
            "is_admin": roles.has_role(request.user, roles.ADMIN),
            "users": get_user_model().objects.filter(is_active=True).order_by("username")
            if can_act
            else [],
            "other_incidents": Incident.objects.filter(merged_into__isnull=True)
            .exclude(pk=incident.pk)
            .exclude(state=Incident.RESOLVED)
            .order_by("-start")[:50]
            if can_act
            else [],
            "loose_signals": Signal.objects.filter(incident__isnull=True).order_by("-start")[:50]
            if can_act
            else [],
        },
    )


def _redirect(incident_id):
    return redirect("incident_detail", incident_id=incident_id)


@roles.require_role(roles.OPERATOR)
@require_POST
def incident_act(request, incident_id: int):
    """Every person's action on an incident posts here with ``action``."""
    incident = get_object_or_404(Incident, pk=incident_id)
    p = request.POST
    action = p.get("action")
    try:
        if action == "state":
            services.change_state(
                incident, p.get("state", ""), actor=request.user, note=p.get("note", "")
            )
        elif action == "assign":
            user = get_user_model().objects.filter(pk=p.get("user") or 0).first()
            services.assign(incident, user, actor=request.user)
        elif action == "title":
            services.retitle(incident, p.get("title", ""), actor=request.user)
        elif action == "comment":
            services.comment(incident, p.get("text", ""), actor=request.user)
        elif action == "label":
            services.label_incident(
                incident, p.get("label", ""), p.get("scenario", ""), actor=request.user
            )
        elif action == "merge":
            others = list(Incident.objects.filter(pk__in=p.getlist("incidents")))
            services.merge(incident, others, actor=request.user)
        elif action == "split":
            new = services.split(
                incident,
                [int(x) for x in p.getlist("signals")],
                actor=request.user,
                title=p.get("title", ""),
            )
            messages.success(request, f"Split into #{new.pk}.")
            return _redirect(new.pk)
        elif action == "attach":
            signal = get_object_or_404(Signal, pk=p.get("signal") or 0)
            services.attach_by_hand(incident, signal, actor=request.user)
        else:
            messages.error(request, f"Unknown action {action!r}.")
            return _redirect(incident.pk)
    except ValueError as exc:
        messages.error(request, str(exc))
    return _redirect(incident.pk)


@roles.require_role(roles.VIEWER)
def incident_export(request, incident_id: int, fmt: str):
    incident = get_object_or_404(Incident, pk=incident_id)
    if fmt == "json":
        return JsonResponse(postmortem.as_json(incident))
    response = HttpResponse(
        postmortem.as_markdown(incident), content_type="text/markdown; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="incident-{incident.pk}-postmortem.md"'
    return response


@roles.require_role(roles.VIEWER)
def rule_list(request):
    is_admin = roles.has_role(request.user, roles.ADMIN)
    form = CorrelationRuleForm(request.POST or None) if is_admin else None
    if request.method == "POST":
        if not is_admin:
            return roles.forbidden(request, roles.ADMIN)
        if form.is_valid():
            rule = form.save()
            audit(request.user, "correlation_rule.created", rule.name)
            messages.success(request, f"Rule {rule.name} added.")
            return redirect("correlation_rules")
    return render(
        request,
        "incidents/rules.html",
        {"rules": CorrelationRule.objects.all(), "form": form, "is_admin": is_admin},
    )


@roles.require_role(roles.ADMIN)
def rule_edit(request, rule_id: int):
    rule = get_object_or_404(CorrelationRule, pk=rule_id)
    form = CorrelationRuleForm(request.POST or None, instance=rule)
    if request.method == "POST":
        if "delete" in request.POST:
            audit(request.user, "correlation_rule.deleted", rule.name)
            rule.delete()
            messages.success(request, f"Rule {rule.name} deleted.")
            return redirect("correlation_rules")
        if form.is_valid():
            form.save()
            audit(request.user, "correlation_rule.changed", rule.name)
            messages.success(request, f"Rule {rule.name} saved.")
            return redirect("correlation_rules")
    return render(request, "incidents/rule_edit.html", {"rule": rule, "form": form})
