"""What an incident page and its postmortem show: signals, charts of the affected targets
with signals marked, the period's log lines, recommendations and actions, the timeline."""

from __future__ import annotations

import json
from datetime import timedelta

from django.utils import timezone

from webapp.dashboards import fleet
from webapp.dashboards.charts import Region
from webapp.incidents.annotations import annotations_between
from webapp.incidents.models import Incident
from webapp.telemetry import query
from webapp.telemetry.models import Series

MAX_TARGETS = 3


def _targets(incident: Incident, signals) -> list:
    seen, targets = set(), []
    for target in [incident.instance, incident.node] + [s.instance or s.node for s in signals]:
        if target is not None and (type(target), target.pk) not in seen:
            seen.add((type(target), target.pk))
            targets.append(target)
    return targets[:MAX_TARGETS]


def _period(incident: Incident):
    end = incident.end or timezone.now()
    return incident.start - timedelta(minutes=30), end + timedelta(minutes=15)


def gather(incident: Incident) -> dict:
    from webapp.detection.models import Anomaly
    from webapp.mitigation.models import Recommendation

    signals = list(incident.signals.select_related("node", "instance").order_by("start"))
    start, end = _period(incident)
    node_ids = {s.node_id for s in signals if s.node_id} | {incident.node_id} - {None}
    instance_ids = {s.instance_id for s in signals if s.instance_id}
    anomaly_ids = [
        int(s.source_id) for s in signals if s.kind == "anomaly" and s.source_id.isdigit()
    ]
    hot = set()
    for anomaly in Anomaly.objects.filter(pk__in=anomaly_ids):
        hot |= {text for text, _ in (anomaly.attribution or {}).get("templates", [])}
    logs = []
    if node_ids or instance_ids:
        logs = query.search_logs(
            start=start,
            end=end,
            node_ids=sorted(node_ids) or None,
            instance_ids=None if node_ids else sorted(instance_ids),
            limit=300,
        )
    for record in logs:
        record.contributing = record.template_id is not None and record.template.template in hot
    recommendations = list(
        Recommendation.objects.filter(
            event__node_id__in=node_ids, created_at__gte=start, created_at__lte=end
        )
        .select_related(
            "event", "action", "legacy_action", "event__outcome", "event__outcome__action"
        )
        .order_by("created_at")
    )
    return {"signals": signals, "logs": logs, "recommendations": recommendations}


def figures(incident: Incident, window) -> list:
    signals = list(incident.signals.select_related("node", "instance"))
    regions = [
        Region(
            int(s.start.timestamp() * 1000),
            int((s.end or timezone.now()).timestamp() * 1000),
            f"{s.kind}: {s.title}",
            "firing" if s.kind == "alert" else "anomaly",
        )
        for s in signals
    ]
    out = []
    for target in _targets(incident, signals):
        is_instance = target.__class__.__name__ == "Instance"
        series = (
            Series.objects.filter(instance=target)
            if is_instance
            else Series.objects.filter(node=target, instance__isnull=True)
        )
        notes = annotations_between(
            window.start,
            window.end,
            node=None if is_instance else target,
            instance=target if is_instance else None,
        )
        marks = regions + fleet.annotation_regions(notes)
        derived = fleet.derived_inputs("vm" if is_instance else "host", target.pk)
        charts = fleet.charts_for(
            fleet.key_metric_charts(series, derived=derived)[:4], window, marks
        )
        out += [(f"{target}-{metric}", figure) for metric, figure in charts]
    return out


def as_json(incident: Incident) -> dict:
    context = gather(incident)
    start, end = _period(incident)
    chart_data = {}
    for target in _targets(incident, context["signals"]):
        is_instance = target.__class__.__name__ == "Instance"
        series = list(
            Series.objects.filter(instance=target)
            if is_instance
            else Series.objects.filter(node=target, instance__isnull=True)
        )
        results, how = query.range_query(
            series[:40], int(start.timestamp() * 1000), int(end.timestamp() * 1000), 60_000, "avg"
        )
        chart_data[str(target)] = {
            "step_seconds": how["step_ms"] / 1000,
            "series": [
                {
                    "metric": r.series.metric,
                    "labels": r.series.labels,
                    "points": [
                        [t / 1000, None if v != v else v]
                        for t, v in zip(r.ts_ms.tolist(), r.values.tolist(), strict=True)
                    ],
                }
                for r in results
            ],
        }
    return {
        "id": incident.pk,
        "title": incident.title,
        "state": incident.state,
        "severity": incident.severity,
        "start": incident.start.isoformat(),
        "end": incident.end.isoformat() if incident.end else None,
        "assignee": incident.assignee.get_username() if incident.assignee_id else None,
        "label": incident.label or None,
        "signals": [
            {
                "kind": s.kind,
                "title": s.title,
                "severity": s.severity,
                "start": s.start.isoformat(),
                "end": s.end.isoformat() if s.end else None,
                "target": str(s.instance or s.node or s.cluster),
            }
            for s in context["signals"]
        ],
        "timeline": [
            {
                "at": e.at.isoformat(),
                "kind": e.kind,
                "who": e.actor_name,
                "text": e.text,
                "data": e.data,
            }
            for e in incident.timeline.all()
        ],
        "recommendations": [
            {
                "at": r.created_at.isoformat(),
                "recommended": r.action.key,
                "legacy": r.legacy_action.key,
                "fallback_reason": r.fallback_reason,
                "override_reason": r.override_reason,
                "estimates": r.estimates,
            }
            for r in context["recommendations"]
        ],
        "charts": chart_data,
    }


def as_markdown(incident: Incident) -> str:
    data = as_json(incident)
    lines = [
        f"# Incident #{data['id']}: {data['title']}",
        "",
        f"- **State:** {data['state']} · **Severity:** {data['severity']}",
        f"- **Start:** {data['start']} · **End:** {data['end'] or 'ongoing'}",
        f"- **Assignee:** {data['assignee'] or 'nobody'} · **Label:** {data['label'] or 'none'}",
        "",
        "## Signals",
        "",
        "| kind | target | start | end | title |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['kind']} | {s['target']} | {s['start']} | {s['end'] or ''} | {_cell(s['title'])} |"
        for s in data["signals"]
    ]
    lines += ["", "## Timeline", ""]
    lines += [f"- {e['at']} — **{e['kind']}** ({e['who']}): {e['text']}" for e in data["timeline"]]
    if data["recommendations"]:
        lines += ["", "## Mitigation", ""]
        lines += [
            f"- {r['at']}: recommended **{r['recommended']}** (legacy: {r['legacy']})"
            + (f", fell back: {r['fallback_reason']}" if r["fallback_reason"] else "")
            + (f", overridden: {r['override_reason']}" if r["override_reason"] else "")
            for r in data["recommendations"]
        ]
    lines += [
        "",
        "## Chart data",
        "",
        "```json",
        json.dumps(data["charts"], indent=1)[:200_000],
        "```",
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
