from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django.views.decorators.http import require_POST

from webapp.core import roles
from webapp.dashboards import fleet, panelcache, timerange
from webapp.dashboards.charts import Region
from webapp.detection import charts, services
from webapp.detection.models import Anomaly
from webapp.telemetry.models import Series


@roles.require_role(roles.VIEWER)
def anomaly_list(request):
    g = request.GET
    tr = timerange.from_request(request, default="24h")
    qs = Anomaly.objects.filter(start__lt=tr.end, end__gt=tr.start).select_related(
        "node", "instance", "instance__node", "model_version"
    )
    if g.get("node"):
        qs = qs.filter(Q(node__name=g["node"]) | Q(instance__node__name=g["node"]))
    if g.get("scenario"):
        qs = qs.filter(scenario=g["scenario"])
    if g.get("min_score"):
        try:
            qs = qs.filter(score__gte=float(g["min_score"]))
        except ValueError:
            messages.error(request, "min score must be a number")
    if g.get("status") in (Anomaly.OPEN, Anomaly.CLOSED):
        qs = qs.filter(status=g["status"])
    if g.get("label") == "none":
        qs = qs.filter(label="")
    elif g.get("label"):
        qs = qs.filter(label=g["label"])
    order = "-score" if g.get("sort") == "score" else "-start"
    # Lazy: the page's cached block (panelcache.page_context) skips them on a hit.
    page = SimpleLazyObject(
        lambda: Paginator(qs.order_by(order, "-id"), 50).get_page(g.get("page"))
    )
    scenarios = SimpleLazyObject(
        lambda: list(
            Anomaly.objects.exclude(scenario="")
            .values_list("scenario", flat=True)
            .distinct()
            .order_by("scenario")
        )
    )
    return render(
        request,
        "detection/anomaly_list.html",
        {
            "page": page,
            "tr": tr,
            "presets": timerange.PRESETS,
            "filters": g,
            "scenarios": scenarios,
            "labels": Anomaly.LABELS,
            **panelcache.page_context(request, tr, topics=("anomaly-labels",)),
        },
    )


@roles.require_role(roles.VIEWER)
def anomaly_detail(request, anomaly_id: int):
    anomaly = get_object_or_404(
        Anomaly.objects.select_related(
            "node", "instance", "instance__node", "model_version", "labeled_by"
        ),
        pk=anomaly_id,
    )
    pad = max(timedelta(minutes=30), (anomaly.end - anomaly.start))
    # Charts stop now: an anomaly that is still open would otherwise end in half an hour of
    # empty future.
    end = max(min(anomaly.end + pad, timezone.now()), anomaly.end + timedelta(minutes=1))
    window = timerange.TimeRange(
        int((anomaly.start - pad).timestamp() * 1000), int(end.timestamp() * 1000), None
    )
    if anomaly.instance_id:
        series = Series.objects.filter(instance=anomaly.instance)
        log_filter = {"instance_ids": [anomaly.instance_id]}
        level, target_id = "vm", anomaly.instance_id
    else:
        series = Series.objects.filter(node=anomaly.node, instance__isnull=True)
        log_filter = {"node_ids": [anomaly.node_id]}
        level, target_id = "host", anomaly.node_id
    attribution = anomaly.attribution or {}
    top_metrics = [name for name, _ in attribution.get("metrics", [])[:4]]
    region = Region(
        int(anomaly.start.timestamp() * 1000),
        int(anomaly.end.timestamp() * 1000),
        "anomaly",
        "anomaly",
    )
    hot = {text for text, _ in attribution.get("templates", [])}

    def logs():
        records = fleet.recent_logs(window, 200, **log_filter)
        for record in records:
            record.contributing = record.template_id is not None and record.template.template in hot
        return records

    return render(
        request,
        "detection/anomaly_detail.html",
        {
            "a": anomaly,
            "tr": window,
            # Lazy: the page's cached block (panelcache.page_context) skips them on a hit.
            "figures": SimpleLazyObject(
                lambda: fleet.charts_for(
                    fleet.key_metric_charts(
                        series,
                        prefer=top_metrics,
                        # The model reads a node_exporter host's CPU-seconds as its
                        # utilisation: the metric its attribution names is charted so.
                        derived=fleet.derived_inputs(level, target_id),
                    ),
                    window,
                    [region],
                )
            ),
            "logs": SimpleLazyObject(logs),
            **panelcache.page_context(request, window, sorted(hot)),
            "metric_bars": charts.attribution_figure(
                "Metrics that contributed", [tuple(x) for x in attribution.get("metrics", [])]
            ),
            "template_bars": charts.attribution_figure(
                "Log templates that contributed",
                [tuple(x) for x in attribution.get("templates", [])],
            ),
            "labels": Anomaly.LABELS,
            "incident": _incident_of(anomaly),
            "can_label": roles.has_role(request.user, roles.OPERATOR),
            "scenarios": _scenario_names(),
        },
    )


@roles.require_role(roles.OPERATOR)
@require_POST
def anomaly_label(request, anomaly_id: int):
    anomaly = get_object_or_404(Anomaly, pk=anomaly_id)
    try:
        services.label_anomaly(
            anomaly,
            request.POST.get("label", ""),
            request.POST.get("scenario", ""),
            actor=request.user,
        )
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, "Label saved; the next training run of the anomaly model uses it."
        )
    return redirect("anomaly_detail", anomaly_id=anomaly.pk)


def _incident_of(anomaly: Anomaly):
    """The incident the anomaly's signal was correlated into (the one it was merged into, if
    it was), or None."""
    from webapp.incidents.models import Signal

    signal = (
        Signal.objects.filter(kind="anomaly", source_id=str(anomaly.pk))
        .select_related("incident__merged_into")
        .first()
    )
    incident = signal.incident if signal else None
    return incident.merged_into or incident if incident else None


def _scenario_names() -> list[str]:
    from ingest.simulator import CATALOGUE

    return sorted(CATALOGUE.names())
