from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django.views.decorators.http import require_POST

from ingest.types import SEVERITY_ERROR, severity_name
from webapp.core import roles
from webapp.dashboards import charts, fleet, panelcache, timerange
from webapp.dashboards.forms import NodeCapacityForm
from webapp.incidents.annotations import annotations_between
from webapp.telemetry import query, services
from webapp.telemetry.api import SEVERITY_FLOORS
from webapp.telemetry.models import (
    IngestSource,
    InjectedCase,
    Instance,
    LogRecord,
    LogTemplate,
    Node,
    Placement,
    ScrapeTarget,
    Series,
)
from webapp.telemetry.query import AGGREGATIONS, QueryError


def _page(request, template, context):
    tr = context.get("tr")
    if tr is not None:
        context.setdefault("presets", timerange.PRESETS)
    return render(request, template, context)


def problems_now() -> dict:
    """Where to look first: the most anomalous and most slowed instances, open incidents,
    firing alerts and unhealthy nodes waiting for an action."""
    from webapp.detection.interference_views import latest_predictions
    from webapp.detection.models import Anomaly
    from webapp.incidents.models import Incident
    from webapp.mitigation.models import UnhealthyEvent

    since = timezone.now() - timedelta(minutes=30)
    anomalous = (
        Anomaly.objects.filter(end__gte=since)
        .select_related("node", "instance", "instance__node")
        .order_by("-score")[:10]
    )
    # Sorted and cut in the database: the newest round holds a row per instance (two
    # rounds inside its 90 s window), and building them all to show ten cost the overview
    # seconds on a 400-instance fleet.
    slowed = list(latest_predictions().order_by("p", "instance_id")[:10])
    incidents = (
        Incident.objects.filter(merged_into__isnull=True)
        .exclude(state=Incident.RESOLVED)
        .select_related("node", "instance")
        .order_by("-last_signal_at")[:10]
    )
    unhealthy = (
        UnhealthyEvent.objects.exclude(status=UnhealthyEvent.CLOSED)
        .select_related("node")
        .prefetch_related("recommendations__action")
        .order_by("-start")[:10]
    )
    return {
        "anomalous": anomalous,
        "slowed": slowed,
        "open_incidents": incidents,
        "unhealthy": unhealthy,
        "firing": firing_alerts(),
    }


def firing_alerts():
    """Firing alert instances, once the alerting app is installed."""
    from django.apps import apps

    if not apps.is_installed("webapp.alerting"):
        return None
    from webapp.alerting.overview import firing_now

    return firing_now(limit=10)


@roles.require_role(roles.VIEWER)
def overview(request):
    # Nothing on the overview depends on who looks, so its panels are rendered once per
    # cache period for everyone (the page people leave open on wall screens).
    body = panelcache.get_or_build(
        "overview",
        (),
        lambda: render_to_string("dashboards/_overview_body.html", overview_context()),
    )
    return _page(request, "dashboards/overview.html", {"body": body})


def overview_context() -> dict:
    nodes = fleet.nodes_with_state(Node.objects.all())
    rates = fleet.ingest_rates(60)
    recent = rates[-5:]
    minutes = max(1, len(recent))
    samples_per_s = sum(r["samples"] for r in recent) / (minutes * 60)
    logs_per_s = sum(r["log_lines"] for r in recent) / (minutes * 60)
    rate_figure = charts.time_series_figure(
        charts.ChartSpec(
            title="Ingest per second",
            unit="per second",
            lines=[
                charts.Line(
                    "samples",
                    [int(r["minute"].timestamp() * 1000) for r in rates],
                    [r["samples"] / 60 for r in rates],
                ),
                charts.Line(
                    "log lines",
                    [int(r["minute"].timestamp() * 1000) for r in rates],
                    [r["log_lines"] / 60 for r in rates],
                ),
            ],
        ),
        int((timezone.now() - timedelta(hours=1)).timestamp() * 1000),
        int(timezone.now().timestamp() * 1000),
        height=220,
    )
    since = timezone.now() - timedelta(hours=1)
    errors = (
        LogRecord.objects.filter(ts__gte=since, severity__gte=SEVERITY_ERROR)
        .select_related("node", "instance", "template")
        .order_by("-ts")[:15]
    )
    return {
        **problems_now(),
        "nodes": nodes,
        "state_counts": fleet.state_counts(nodes),
        "instance_count": Instance.objects.count(),
        "series_count": Series.objects.count(),
        "template_count": LogTemplate.objects.count(),
        "samples_per_s": samples_per_s,
        "logs_per_s": logs_per_s,
        "rate_figure": rate_figure,
        "sources": IngestSource.objects.all(),
        "targets": ScrapeTarget.objects.all(),
        "errors": errors,
        "stale_after_minutes": int(fleet.STALE_AFTER.total_seconds() // 60),
        "injected": InjectedCase.objects.filter(
            end__gt=timezone.now() - timedelta(hours=6), start__lte=timezone.now()
        )
        .select_related("node", "instance")
        .order_by("-start")[:20],
    }


@roles.require_role(roles.VIEWER)
def node_list(request):
    g = request.GET
    qs = Node.objects.all()
    if g.get("q"):
        qs = qs.filter(Q(name__icontains=g["q"]) | Q(hardware__icontains=g["q"]))
    if g.get("cluster"):
        qs = qs.filter(cluster=g["cluster"])
    if g.get("rack"):
        qs = qs.filter(rack=g["rack"])
    if g.get("label") and "=" in g["label"]:
        key, _, value = g["label"].partition("=")
        qs = (
            qs.filter(**{f"labels__{key.strip()}": value.strip()})
            if key.strip().isidentifier()
            else qs.none()
        )
    state = g.get("state")

    def page():
        nodes = fleet.nodes_with_state(qs.order_by("cluster", "rack", "name"))
        if state in fleet.available_states():
            nodes = [n for n in nodes if n.state == state]
        return Paginator(nodes, 100).get_page(g.get("page"))

    return _page(
        request,
        "dashboards/node_list.html",
        {
            # Lazy: the page's cached block (panelcache.page_context) skips them on a hit.
            "page": SimpleLazyObject(page),
            "filters": g,
            "clusters": Node.objects.exclude(cluster="")
            .values_list("cluster", flat=True)
            .distinct()
            .order_by("cluster"),
            "racks": Node.objects.exclude(rack="")
            .values_list("rack", flat=True)
            .distinct()
            .order_by("rack"),
            "states": [(k, fleet.STATE_LABELS[k]) for k in fleet.available_states()],
            "instance_count": SimpleLazyObject(Instance.objects.count),
            **panelcache.page_context(request),
        },
    )


@roles.require_role(roles.VIEWER)
def node_detail(request, name: str):
    node = get_object_or_404(Node, name=name)
    node.state = fleet.node_state(node, None, *fleet.problem_node_ids())
    tr = timerange.from_request(request)
    # Lazy: the page's cached block (panelcache.page_context) skips them on a hit.
    cases = SimpleLazyObject(lambda: fleet.injected_cases(tr, node=node))
    notes = SimpleLazyObject(lambda: annotations_between(tr.start, tr.end, node=node))
    return _page(
        request,
        "dashboards/node_detail.html",
        {
            "node": node,
            "tr": tr,
            "instances": SimpleLazyObject(lambda: list(node.instances.order_by("name"))),
            "placements": SimpleLazyObject(
                lambda: list(Placement.objects.filter(node=node).select_related("instance")[:30])
            ),
            "figures": SimpleLazyObject(
                lambda: fleet.charts_for(
                    fleet.key_metric_charts(
                        Series.objects.filter(node=node, instance__isnull=True),
                        derived=fleet.derived_inputs("host", node.pk),
                    ),
                    tr,
                    fleet.case_regions(c for c in cases if c.level == "host")
                    + fleet.annotation_regions(notes),
                )
            ),
            "logs": SimpleLazyObject(lambda: fleet.recent_logs(tr, 50, node_ids=[node.id])),
            "cases": cases,
            "notes": notes,
            "annotate_node": node.name,
            "can_annotate": roles.has_role(request.user, roles.OPERATOR),
            "capacity": _capacity_rows(node),
            "model_inputs": SimpleLazyObject(lambda: _model_inputs("host", node.pk)),
            "capacity_form": NodeCapacityForm(
                initial={
                    "cpu_cores": node.cpu_cores,
                    "memory_gb": round(node.memory_bytes / 2**30, 3) if node.memory_bytes else None,
                    "llc_mb": node.llc_mb,
                    "membw_gbps": node.membw_gbps,
                    "net_gbit": node.net_gbit,
                    "disk_mbps": node.disk_mbps,
                }
            )
            if roles.has_role(request.user, roles.ADMIN)
            else None,
            **panelcache.page_context(request, tr, topics=("annotations",)),
        },
    )


def _capacity_rows(node: Node) -> list[tuple[str, str, str]]:
    """(what, value or "unknown", where it comes from) of the capacity the interference
    model reads."""
    from models.interference.features import CAPACITY_UNITS
    from webapp.detection.interference import capacity_origins

    return [
        (
            CAPACITY_UNITS[key].label,
            f"{value:g} {CAPACITY_UNITS[key].unit}".strip() if value == value else "unknown",
            origin,
        )
        for key, (value, origin) in capacity_origins(node).items()
    ]


INPUT_SOURCES = ("stated", "derived", "missing")


def _model_inputs(level: str, target_id: int) -> dict:
    """The metrics the models read for this target, by how it provides them."""
    from webapp.detection.windows import model_inputs

    rows = model_inputs(level, target_id)
    by_source = {source: [r for r in rows if r.source == source] for source in INPUT_SOURCES}
    return {
        "rows": rows,
        **by_source,
        "origins": sorted({r.origin for r in by_source["derived"]}),
    }


@roles.require_role(roles.ADMIN)
@require_POST
def node_capacity(request, name: str):
    """An admin states a node's capacity (the interference model cannot predict on a node
    without it); each bad field is named."""
    node = get_object_or_404(Node, name=name)
    form = NodeCapacityForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{form.fields[field].label} ({field}): {' '.join(errors)}")
        return redirect("node_detail", name=node.name)
    data = form.cleaned_data
    memory = data.pop("memory_gb")
    services.update_node(node, memory_bytes=int(memory * 2**30) if memory else None, **data)
    messages.success(request, "Capacity saved; the next interference round uses it.")
    return redirect("node_detail", name=node.name)


def _also_reporting(instance: Instance) -> list[tuple[Node, datetime]]:
    """Nodes other than its own that sent the instance's series in the last lookback, newest
    sample first: a stale exporter where the instance ran before (placement ignores it)."""
    now_ms = int(timezone.now().timestamp() * 1000)
    latest = query.reporting_nodes(instance.pk, now_ms - services.PLACEMENT_STALE_MS, now_ms + 1)
    latest.pop(instance.node_id, None)
    nodes = Node.objects.in_bulk(list(latest))
    return sorted(
        ((nodes[pk], query.to_datetime(ms)) for pk, ms in latest.items() if pk in nodes),
        key=lambda pair: pair[1],
        reverse=True,
    )


@roles.require_role(roles.VIEWER)
def instance_detail(request, name: str):
    instance = get_object_or_404(Instance.objects.select_related("node"), name=name)
    tr = timerange.from_request(request)
    cases = SimpleLazyObject(lambda: fleet.injected_cases(tr, instance=instance))
    notes = SimpleLazyObject(lambda: annotations_between(tr.start, tr.end, instance=instance))
    return _page(
        request,
        "dashboards/instance_detail.html",
        {
            "instance": instance,
            "tr": tr,
            "placements": SimpleLazyObject(
                lambda: list(instance.placements.select_related("node")[:30])
            ),
            "also_reporting": SimpleLazyObject(lambda: _also_reporting(instance)),
            "figures": SimpleLazyObject(
                lambda: fleet.charts_for(
                    fleet.key_metric_charts(
                        Series.objects.filter(instance=instance),
                        derived=fleet.derived_inputs("vm", instance.pk),
                    ),
                    tr,
                    fleet.case_regions(cases) + fleet.annotation_regions(notes),
                )
            ),
            "logs": SimpleLazyObject(lambda: fleet.recent_logs(tr, 50, instance_ids=[instance.id])),
            "cases": cases,
            "notes": notes,
            "annotate_instance": instance.name,
            "model_inputs": SimpleLazyObject(lambda: _model_inputs("vm", instance.pk)),
            "can_annotate": roles.has_role(request.user, roles.OPERATOR),
            **panelcache.page_context(request, tr, topics=("annotations",)),
        },
    )


@roles.require_role(roles.VIEWER)
def explore(request):
    g = request.GET
    tr = timerange.from_request(request)
    selector = g.get("q", "").strip()
    agg = g.get("agg", "avg") if g.get("agg") in AGGREGATIONS else "avg"
    figure = error = None
    series_count = 0
    if selector:
        figure, series_count, error = panelcache.get_or_build(
            "explore",
            (selector, agg, panelcache.range_key(tr), tr.step_ms),
            lambda: explore_figure(selector, agg, tr),
        )
    log_text = g.get("logq", "").strip()
    severity = g.get("severity", "").lower()
    node_name = g.get("node", "").strip()
    logs = []
    show_logs = "logs" in g or log_text or severity or node_name

    def search():
        node_ids = None
        if node_name:
            node_ids = list(Node.objects.filter(name=node_name).values_list("id", flat=True))
            node_ids = node_ids or [-1]
        return fleet.recent_logs(
            tr,
            300,
            node_ids=node_ids,
            min_severity=SEVERITY_FLOORS.get(severity),
            text=log_text or None,
        )

    # Lazy: the page's cached blocks (panelcache.page_context) skip them on a hit.
    if show_logs:
        logs = SimpleLazyObject(search)
    metric_names = SimpleLazyObject(
        lambda: list(
            Series.objects.order_by("metric").values_list("metric", flat=True).distinct()[:2000]
        )
    )
    return _page(
        request,
        "dashboards/explore.html",
        {
            "tr": tr,
            "selector": selector,
            "agg": agg,
            "aggregations": AGGREGATIONS,
            "figure": figure,
            "error": error,
            "series_count": series_count,
            "logs": logs,
            "show_logs": show_logs,
            "log_text": log_text,
            "severity": severity,
            "node_name": node_name,
            "metric_names": metric_names,
            "severities": [s for s in SEVERITY_FLOORS if s != "warning"],
            "severity_name": severity_name,
            **panelcache.page_context(request, tr),
        },
    )


def explore_figure(selector: str, agg: str, tr) -> tuple[charts.Figure | None, int, str | None]:
    """Explore's chart of up to 50 series matching ``selector``, how many matched, and the
    error that explains why there is no chart (an answer too, shared like the chart)."""
    try:
        found = query.select(selector, limit=50)
        results, how = query.range_query(found, tr.start_ms, tr.end_ms, tr.step_ms, agg)
    except QueryError as exc:
        return None, 0, str(exc)
    spec = charts.ChartSpec(
        title=f"{agg}({selector}) · {how['resolution']} data, step {how['step_ms'] // 1000}s",
        unit=fleet._guess_unit(found[0].metric) if found else "",
        lines=fleet.result_lines(found, results),
    )
    figure = charts.Figure(charts.time_series_figure(spec, tr.start_ms, tr.end_ms, height=380))
    figure.script_json()  # once, here, rather than on every view of a cached figure
    return figure, len(found), None
