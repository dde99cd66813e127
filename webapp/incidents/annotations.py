"""Annotations: Grafana-compatible payload validation, state changes and lookups for charts."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from webapp.dashboards import panelcache
from webapp.incidents.models import LABELS, Annotation, Incident
from webapp.telemetry.models import Instance, Node

MAX_TEXT = 10_000
MAX_TAGS = 20
MAX_TAG_LENGTH = 100
LABEL_KEYS = {key for key, _ in LABELS}


class AnnotationError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _ms(value, field: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnnotationError(field, f"{field} must be epoch milliseconds (a number)")
    if not 0 <= value <= 253_402_300_799_000:
        raise AnnotationError(field, f"{field} is out of range")
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def clean_payload(doc, partial: bool = False) -> dict:
    """Grafana's fields (time, timeEnd, text, tags, dashboardUID, panelId) plus Telltale's
    (node, instance, incident, label, scenario). Returns model field values."""
    if not isinstance(doc, dict):
        raise AnnotationError("body", "the body must be a JSON object")
    out: dict = {}
    if "time" in doc or not partial:
        if "time" not in doc:
            raise AnnotationError("time", "time is required (epoch milliseconds)")
        out["time"] = _ms(doc["time"], "time")
    if doc.get("timeEnd") not in (None, 0):
        out["time_end"] = _ms(doc["timeEnd"], "timeEnd")
        start = out.get("time")
        if start is not None and out["time_end"] < start:
            raise AnnotationError("timeEnd", "timeEnd must not be before time")
    if "text" in doc or not partial:
        text = doc.get("text")
        if not isinstance(text, str) or not text.strip():
            raise AnnotationError("text", "text is required")
        if len(text) > MAX_TEXT:
            raise AnnotationError("text", f"text is longer than {MAX_TEXT} characters")
        out["text"] = text
    if "tags" in doc:
        tags = doc["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise AnnotationError("tags", "tags must be a list of strings")
        if len(tags) > MAX_TAGS:
            raise AnnotationError("tags", f"at most {MAX_TAGS} tags")
        if any(len(t) > MAX_TAG_LENGTH or not t.strip() for t in tags):
            raise AnnotationError("tags", f"tags must be 1-{MAX_TAG_LENGTH} characters")
        out["tags"] = sorted({t.strip() for t in tags})
    if "dashboardUID" in doc and doc["dashboardUID"] is not None:
        out["dashboard_uid"] = str(doc["dashboardUID"])[:100]
    if "panelId" in doc and doc["panelId"] is not None:
        if isinstance(doc["panelId"], bool) or not isinstance(doc["panelId"], int):
            raise AnnotationError("panelId", "panelId must be an integer")
        out["panel_id"] = doc["panelId"]
    for field, model in (("node", Node), ("instance", Instance)):
        if doc.get(field):
            row = model.objects.filter(name=str(doc[field])).first()
            if row is None:
                raise AnnotationError(field, f"unknown {field} {doc[field]!r}")
            out[field] = row
    if doc.get("incident") is not None:
        incident = (
            Incident.objects.filter(pk=doc["incident"]).first()
            if isinstance(doc["incident"], int)
            else None
        )
        if incident is None:
            raise AnnotationError("incident", f"unknown incident {doc['incident']!r}")
        out["incident"] = incident
    if doc.get("label"):
        if doc["label"] not in LABEL_KEYS:
            raise AnnotationError("label", f"label must be one of {', '.join(sorted(LABEL_KEYS))}")
        out["label"] = doc["label"]
        out["label_scenario"] = str(doc.get("scenario", ""))[:64]
    return out


@transaction.atomic
def create_annotation(fields: dict, actor=None, token_name: str = "") -> Annotation:
    from webapp.incidents import services

    annotation = Annotation.objects.create(
        **fields,
        created_by=actor if getattr(actor, "pk", None) else None,
        created_by_token=token_name,
    )
    panelcache.bump("annotations")  # the pages' cached panels show it on the next load
    when = annotation.time.strftime("%Y-%m-%d %H:%M")
    text = f"Annotation at {when}: {annotation.text[:200]}"
    if annotation.incident_id:
        services.add_timeline(
            annotation.incident, "annotation", text, actor=actor, data={"annotation": annotation.pk}
        )
    elif annotation.node_id or annotation.instance_id:
        node_id = annotation.node_id or annotation.instance.node_id
        if node_id:
            services.note_on_node(
                node_id, "annotation", text, actor=actor, data={"annotation": annotation.pk}
            )
    return annotation


@transaction.atomic
def update_annotation(annotation: Annotation, fields: dict) -> Annotation:
    for key, value in fields.items():
        setattr(annotation, key, value)
    if annotation.time_end and annotation.time_end < annotation.time:
        raise AnnotationError("timeEnd", "timeEnd must not be before time")
    annotation.updated_at = timezone.now()
    annotation.save()
    panelcache.bump("annotations")
    return annotation


@transaction.atomic
def delete_annotation(annotation: Annotation) -> None:
    annotation.delete()
    panelcache.bump("annotations")


def annotations_between(start: datetime, end: datetime, node=None, instance=None, limit: int = 200):
    """Annotations touching [start, end] that belong on a chart of this target: untargeted
    ones everywhere, node ones on the node and its instances, instance ones on the instance."""
    overlapping = Q(time__lte=end) & (
        Q(time_end__gte=start) | Q(time_end__isnull=True, time__gte=start)
    )
    target = Q(node__isnull=True, instance__isnull=True)
    if instance is not None:
        target |= Q(instance=instance)
        if instance.node_id:
            target |= Q(node_id=instance.node_id)
    if node is not None:
        target |= Q(node=node) | Q(instance__node=node)
    return list(Annotation.objects.filter(overlapping & target).order_by("time")[:limit])


def as_grafana(a: Annotation) -> dict:
    def ms(dt):
        return int(dt.timestamp() * 1000)

    return {
        "id": a.pk,
        "time": ms(a.time),
        "timeEnd": ms(a.time_end) if a.time_end else ms(a.time),
        "text": a.text,
        "tags": a.tags,
        "dashboardUID": a.dashboard_uid or None,
        "panelId": a.panel_id,
        "login": a.created_by.get_username() if a.created_by_id else a.created_by_token,
        "created": ms(a.created_at),
        "updated": ms(a.updated_at),
        "node": a.node.name if a.node_id else None,
        "instance": a.instance.name if a.instance_id else None,
        "incident": a.incident_id,
        "label": a.label or None,
    }
