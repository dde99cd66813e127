"""Fleet-level read helpers for the pages: node states, key metrics, ingest rates."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Sum
from django.utils import timezone

from webapp.dashboards import panelcache
from webapp.telemetry import query
from webapp.telemetry.models import IngestMinute, Node, Series

STALE_AFTER = timedelta(minutes=5)
ALL_STATES = ("healthy", "anomalous", "unhealthy", "nodata")
# A state is shown once the app that can put a node in it is installed.
STATE_APPS = {"anomalous": "webapp.detection", "unhealthy": "webapp.mitigation"}
STATE_LABELS = {
    "healthy": "Healthy",
    "anomalous": "Anomalous",
    "unhealthy": "Unhealthy",
    "nodata": "No data",
}

# Metrics shown first on node and instance pages when present, in this order.
KEY_METRICS = (
    ("host_cpu_utilization_ratio", "CPU utilisation", "ratio"),
    ("host_memory_utilization_ratio", "Memory utilisation", "ratio"),
    ("host_load1", "Load (1 min)", ""),
    ("host_disk_read_bytes_per_second", "Disk read", "bytes/s"),
    ("host_disk_write_bytes_per_second", "Disk write", "bytes/s"),
    ("host_network_receive_bytes_per_second", "Network in", "bytes/s"),
    ("host_network_transmit_bytes_per_second", "Network out", "bytes/s"),
    ("host_filesystem_utilization_ratio", "Filesystem used", "ratio"),
    ("vm_cpu_utilization_ratio", "CPU utilisation", "ratio"),
    ("vm_memory_utilization_ratio", "Memory utilisation", "ratio"),
    ("vm_cpu_steal_ratio", "CPU steal", "ratio"),
    ("vm_request_latency_seconds", "Request latency", "seconds"),
    ("node_load1", "Load (1 min)", ""),
    ("node_memory_MemAvailable_bytes", "Memory available", "bytes"),
    ("up", "Target up", ""),
    ("telltale_anomaly_score", "Anomaly score", ""),
    ("telltale_anomaly_novelty", "Novelty (against its own usual)", ""),
    ("telltale_interference_p", "Predicted P (1 = not slowed)", "ratio"),
)
# Series no page charts on their own: the alarm series repeats the anomaly score's alarming
# windows (alert rules read it; the score chart draws the alarm level instead).
UNCHARTED = {"telltale_anomaly_alarm"}
MAX_CHARTS = 8
MAX_LINES_PER_CHART = 12


def available_states() -> tuple[str, ...]:
    from django.apps import apps

    return tuple(s for s in ALL_STATES if s not in STATE_APPS or apps.is_installed(STATE_APPS[s]))


def node_state(node: Node, now=None, anomalous=(), unhealthy=()) -> str:
    """Worst first: unhealthy (open event), no data, anomalous (open anomaly on the node or
    one of its instances), healthy."""
    now = now or timezone.now()
    if node.pk in unhealthy:
        return "unhealthy"
    if node.last_seen is None or now - node.last_seen > STALE_AFTER:
        return "nodata"
    if node.pk in anomalous:
        return "anomalous"
    return "healthy"


def problem_node_ids() -> tuple[set[int], set[int]]:
    """(nodes with an open anomaly, nodes with an open unhealthy event), a few queries for
    the whole fleet so list pages do not query per node; shared through the panel cache."""
    return panelcache.get_or_build("problem-nodes", (), _problem_node_ids)


def _problem_node_ids() -> tuple[set[int], set[int]]:
    from webapp.detection.models import Anomaly
    from webapp.mitigation.models import UnhealthyEvent

    anomalous = set(
        Anomaly.objects.filter(status=Anomaly.OPEN, node__isnull=False).values_list(
            "node_id", flat=True
        )
    )
    anomalous |= set(
        Anomaly.objects.filter(status=Anomaly.OPEN, instance__node__isnull=False).values_list(
            "instance__node_id", flat=True
        )
    )
    unhealthy = set(
        UnhealthyEvent.objects.exclude(status=UnhealthyEvent.CLOSED).values_list(
            "node_id", flat=True
        )
    )
    return anomalous, unhealthy


def nodes_with_state(queryset=None):
    now = timezone.now()
    nodes = list(
        (queryset if queryset is not None else Node.objects.all()).annotate(
            instance_count=Count("instances", distinct=True)
        )
    )
    anomalous, unhealthy = problem_node_ids()
    for node in nodes:
        node.state = node_state(node, now, anomalous, unhealthy)
    return nodes


def state_counts(nodes) -> list[tuple[str, str, int]]:
    counts = defaultdict(int)
    for node in nodes:
        counts[node.state] += 1
    return [(key, STATE_LABELS[key], counts[key]) for key in available_states()]


@dataclass(frozen=True)
class DerivedChart:
    """A model input that a target does not send under the model's name but derives from
    the exporter series it sends (``webapp.telemetry.derived``), charted as the models read
    it: a node_exporter host's CPU utilisation rather than its raw CPU-seconds counters."""

    level: str  # "host" | "vm"
    target_id: int
    origin: str  # what its series come from, e.g. "node_exporter"
    reads: tuple[str, ...]  # the metrics of the series it is derived from


def derived_inputs(level: str, target_id: int) -> dict[str, DerivedChart]:
    """{model metric: DerivedChart} for the model inputs the target derives."""
    from django.apps import apps

    if not apps.is_installed("webapp.detection"):
        return {}
    from webapp.detection.windows import model_inputs

    return {
        row.metric: DerivedChart(level, target_id, row.origin, row.reads)
        for row in model_inputs(level, target_id)
        if row.source == "derived"
    }


def key_metric_charts(
    series_qs, prefer: list[str] = (), derived: dict[str, DerivedChart] | None = None
) -> list[tuple[str, str, str, list[Series] | DerivedChart]]:
    """(metric, title, unit, series or DerivedChart) for the charts of a node or instance
    page; metrics in ``prefer`` (e.g. an anomaly's top attribution) come first, then the key
    metrics, then the rest by name. A metric in ``derived`` that the target does not send is
    charted derived, and the series it is derived from are then not charted again."""
    derived = dict(derived or {})
    by_metric: dict[str, list[Series]] = defaultdict(list)
    for s in series_qs.exclude(metric__in=UNCHARTED).order_by("metric", "id"):
        by_metric[s.metric].append(s)
    charts = []
    titles = {metric: (title, unit) for metric, title, unit in KEY_METRICS}

    def add(metric: str) -> None:
        if len(charts) >= MAX_CHARTS:
            return
        title, unit = titles.get(metric, (metric, _guess_unit(metric)))
        if metric in by_metric:
            charts.append((metric, title, unit, by_metric.pop(metric)[:MAX_LINES_PER_CHART]))
        elif metric in derived:
            chart = derived.pop(metric)
            for source in chart.reads:
                by_metric.pop(source, None)
            charts.append((metric, title, unit, chart))

    for metric in prefer:
        add(metric)
    for metric, _, _ in KEY_METRICS:
        add(metric)
    for metric in sorted(by_metric):
        add(metric)
    return charts


def _guess_unit(metric: str) -> str:
    if metric.endswith("_ratio"):
        return "ratio"
    if metric.endswith("_bytes_per_second"):
        return "bytes/s"
    if metric.endswith("_bytes"):
        return "bytes"
    if metric.endswith("_seconds"):
        return "seconds"
    return ""


def line_name(series: Series, shared: set[str]) -> str:
    """Legend text: the labels that differ between the chart's lines."""
    parts = [f"{k}={v}" for k, v in sorted(series.labels.items()) if k not in shared]
    return ", ".join(parts) or series.metric


def shared_labels(series: list[Series]) -> set[str]:
    if len(series) < 2:
        return set(series[0].labels) if series else set()
    first = series[0].labels
    return {k for k, v in first.items() if all(s.labels.get(k) == v for s in series[1:])}


def injected_cases(tr, node=None, instance=None, limit: int = 50):
    """Simulator ground truth overlapping the time range, for the target (and, for a node,
    the instances placed on it at the time)."""
    from django.db.models import Q

    from webapp.telemetry.models import InjectedCase

    qs = InjectedCase.objects.filter(start__lt=tr.end, end__gt=tr.start)
    if instance is not None:
        qs = qs.filter(instance=instance)
    elif node is not None:
        qs = qs.filter(Q(node=node) | Q(instance__placements__node=node)).distinct()
    return list(qs.select_related("node", "instance").order_by("-start")[:limit])


def charts_for(chart_defs, tr, regions=None):
    """One figure per chart definition, from one range query for all their series (and one
    read per target for the derived ones); shared through the panel cache by everyone
    looking at the same series, range and regions."""
    if not chart_defs:
        return []
    regions = list(regions or [])
    levels = {
        m: _alarm_level(series[0])
        for m, _, _, series in chart_defs
        if m == ANOMALY_SCORE and not isinstance(series, DerivedChart)
    }
    levels.update(
        {
            m: _novelty_level(series[0])
            for m, _, _, series in chart_defs
            if m == ANOMALY_NOVELTY and not isinstance(series, DerivedChart)
        }
    )
    key = (
        tuple((m, title, unit, _lines_key(series)) for m, title, unit, series in chart_defs),
        panelcache.range_key(tr),
        tuple(regions),
        tuple(sorted(levels.items())),
    )
    return panelcache.get_or_build(
        "charts", key, lambda: _build_charts(chart_defs, tr, regions, levels)
    )


def _lines_key(series):
    if isinstance(series, DerivedChart):
        return ("derived", series.level, series.target_id)
    return tuple(s.id for s in series)


ANOMALY_SCORE = "telltale_anomaly_score"
ANOMALY_NOVELTY = "telltale_anomaly_novelty"


def _novelty_level(series: Series) -> float | None:
    """The novelty level a novelty series' target is held to (None: novelty alarms off)."""
    from webapp.detection.novelty import levels

    in_force = levels()
    if in_force is None:
        return None
    return in_force.value(
        series.labels.get("level", ""), series.node.cluster if series.node_id else ""
    )


def _alarm_level(series: Series) -> float | None:
    """The alarm level a score series' target is held to: its level's, in its node's
    cluster."""
    from django.apps import apps

    if not apps.is_installed("webapp.detection"):
        return None
    from webapp.detection.sensitivity import levels_in_force

    cluster = series.node.cluster if series.node_id else ""
    value = levels_in_force().value(series.labels.get("level", ""), cluster)
    return None if value != value else value  # NaN: no model, no level


def _build_charts(chart_defs, tr, regions, levels):
    from webapp.dashboards.charts import ChartSpec, Figure, time_series_figure

    stored = [
        s for _, _, _, series in chart_defs if not isinstance(series, DerivedChart) for s in series
    ]
    results = []
    if stored:
        results, _ = query.range_query(stored, tr.start_ms, tr.end_ms, tr.step_ms, "avg")
    by_id = {r.series.id: r for r in results}
    derived = _derived_lines(chart_defs, tr)
    figures = []
    for metric, title, unit, series in chart_defs:
        if isinstance(series, DerivedChart):
            line = derived.get((series.level, series.target_id, metric))
            lines = [line] if line else []
            if not line:
                title = f"{title} (derived from {series.origin}: drawn for ranges up to 2 days)"
        else:
            lines = result_lines(series, [by_id[s.id] for s in series])
        thresholds = []
        if levels.get(metric) is not None:  # a page's score series are of one target
            thresholds = [(levels[metric], "alarm level")]
        spec = ChartSpec(
            title=title, unit=unit, lines=lines, regions=regions, thresholds=thresholds
        )
        figure = Figure(time_series_figure(spec, tr.start_ms, tr.end_ms))
        figure.script_json()  # once, here, rather than on every view of a cached figure
        figures.append((metric, figure))
    return figures


# A derived rate needs two samples of its counters in a step; scrapes and the agent come
# at least once a minute, and the models read the same one-minute grid.
DERIVED_STEP_MS = 60_000
# Derived charts read raw samples (a 64-CPU node_exporter host sends hundreds of CPU
# counters), so longer ranges are not drawn derived.
DERIVED_MAX_RANGE_MS = 2 * 86_400_000


def _derived_lines(chart_defs, tr) -> dict:
    """{(level, target id, metric): Line} for the derived charts, one read per target."""
    from webapp.dashboards.charts import Line, plot_values
    from webapp.detection.windows import grid, metric_windows

    if tr.end_ms - tr.start_ms > DERIVED_MAX_RANGE_MS:
        return {}
    wanted: dict[tuple[str, int], list[tuple[str, str]]] = defaultdict(list)
    for metric, _, _, series in chart_defs:
        if isinstance(series, DerivedChart):
            wanted[(series.level, series.target_id)].append((metric, series.origin))
    step_ms = max(tr.step_ms, DERIVED_STEP_MS)
    steps = max(1, -(-(tr.end_ms - tr.start_ms) // step_ms))
    times = grid(tr.end_ms, steps, step_ms).tolist()
    out = {}
    for (level, target_id), metrics in wanted.items():
        names = [metric for metric, _ in metrics]
        matrix = metric_windows(level, [target_id], names, tr.end_ms, steps, step_ms)[target_id]
        for column, (metric, origin) in enumerate(metrics):
            out[(level, target_id, metric)] = Line(
                f"derived from {origin}", times, plot_values(matrix[:, column])
            )
    return out


def result_lines(series: list[Series], results) -> list:
    """A chart line per range-query result, named by the labels that differ between
    ``series`` (the matched series, in the chart's order)."""
    from webapp.dashboards.charts import Line, plot_values

    shared = shared_labels(series)
    return [
        Line(line_name(r.series, shared), r.ts_ms.tolist(), plot_values(r.values)) for r in results
    ]


def recent_logs(tr, limit: int, **filters):
    """The newest log lines of a target in the range (``query.search_logs``), shared
    through the panel cache."""
    key = (panelcache.range_key(tr), limit, sorted((k, repr(v)) for k, v in filters.items()))
    return panelcache.get_or_build(
        "logs",
        key,
        lambda: list(query.search_logs(start=tr.start, end=tr.end, limit=limit, **filters)),
    )


def case_regions(cases):
    from webapp.dashboards.charts import Region

    return [
        Region(
            int(c.start.timestamp() * 1000),
            int(c.end.timestamp() * 1000),
            f"injected {c.scenario}",
            "anomaly" if c.kind == "anomaly" else "annotation",
        )
        for c in cases
    ]


def annotation_regions(notes):
    from webapp.dashboards.charts import Region

    return [
        Region(
            int(a.time.timestamp() * 1000),
            int((a.time_end or a.time).timestamp() * 1000),
            a.text[:80],
            "annotation",
        )
        for a in notes
    ]


def ingest_rates(minutes: int = 60):
    """Per-minute samples and log lines over the last ``minutes`` (from ingest counters)."""
    since = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=minutes)
    rows = (
        IngestMinute.objects.filter(minute__gte=since)
        .values("minute")
        .annotate(samples=Sum("samples"), log_lines=Sum("log_lines"))
        .order_by("minute")
    )
    return list(rows)
