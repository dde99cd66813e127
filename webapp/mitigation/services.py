"""State changes of unhealthy-node events. Views, tasks, the API, alert rules and the
simulator all open and close events through these functions."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from webapp.mitigation.models import UnhealthyEvent
from webapp.telemetry.models import Node

log = logging.getLogger(__name__)

FAULT_CATEGORIES = ("disk", "memory", "nic", "kernel_hang", "power", "host_agent", "unknown")


@transaction.atomic
def open_unhealthy_event(
    node: Node,
    fault_category: str,
    signals: dict | None = None,
    *,
    source: str = "api",
    external_id: str = "",
    start=None,
    recommend_now: bool = True,
) -> tuple[UnhealthyEvent, bool]:
    """Open an event for ``node`` unless one from the same source and external id exists
    (an alert that keeps firing, a retried API call); returns (event, created). A new
    event gets its recommendation at once, whoever opened it (``recommend_now=False``
    for history whose action was already taken)."""
    if fault_category not in FAULT_CATEGORIES:
        raise ValueError(f"fault_category must be one of {', '.join(FAULT_CATEGORIES)}")
    if external_id:
        existing = UnhealthyEvent.objects.filter(source=source, external_id=external_id).first()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            event = UnhealthyEvent.objects.create(
                node=node,
                fault_category=fault_category,
                signals=signals or {},
                source=source,
                external_id=external_id,
                start=start or timezone.now(),
            )
    except IntegrityError:  # the same external id raced in from another process
        return UnhealthyEvent.objects.get(source=source, external_id=external_id), False
    _signal(event)
    if recommend_now:
        try:
            with transaction.atomic():
                recommend(event)
        except Exception:  # the event stands without one; refresh_recommendations retries
            log.exception("no recommendation for unhealthy event %s", event.pk)
    return event, True


def _signal(event: UnhealthyEvent) -> None:
    from webapp.incidents.services import record_signal

    record_signal(
        "unhealthy",
        event.pk,
        title=f"{event.fault_category} fault",
        start=event.start,
        end=event.end,
        severity="critical",
        node=event.node,
        details={"signals": event.signals, "source": event.source},
    )


@transaction.atomic
def close_unhealthy_event(event: UnhealthyEvent, end=None) -> UnhealthyEvent:
    if event.status != UnhealthyEvent.CLOSED:
        event.status = UnhealthyEvent.CLOSED
        event.end = end or timezone.now()
        event.save(update_fields=["status", "end"])
        _signal(event)
    return event


@transaction.atomic
def apply_action(
    event: UnhealthyEvent, action_key: str, actor=None, reason: str = "", recommendation=None
):
    """Record what an operator did about an event; a choice other than the recommendation
    needs a reason. One action per event (a later one replaces it while the event is open)."""
    from webapp.incidents.services import note_on_node
    from webapp.mitigation.models import ActionOutcome, MitigationAction

    if event.status == UnhealthyEvent.CLOSED:
        raise ValueError("the event is closed; its outcome is already recorded")
    action = MitigationAction.objects.filter(key=action_key).first()
    if action is None:
        raise ValueError(f"unknown action {action_key!r}")
    followed = recommendation is not None and recommendation.action_id == action.pk
    if recommendation is not None and not followed and not reason.strip():
        raise ValueError("say why you chose another action than the recommended one")
    outcome, _ = ActionOutcome.objects.update_or_create(
        event=event,
        defaults={
            "action": action,
            "recommendation": recommendation,
            "followed_recommendation": followed,
            "reason": reason.strip(),
            "applied_by": actor if getattr(actor, "pk", None) else None,
            "applied_at": timezone.now(),
        },
    )
    event.status = UnhealthyEvent.ACTING
    event.save(update_fields=["status"])
    who = actor.get_username() if getattr(actor, "pk", None) else "telltale"
    note_on_node(
        event.node_id,
        "action",
        f"{who} applied {action.name} to {event.node}"
        + (
            ""
            if followed
            else f" (not the recommendation: {reason.strip() or 'no recommendation'})"
        ),
        actor=actor,
        data={"event": event.pk, "action": action.key, "followed": followed},
    )
    return outcome


@transaction.atomic
def record_outcome(
    event: UnhealthyEvent,
    *,
    downtime_minutes: float,
    interruptions: float,
    capacity_cost: float,
    end=None,
):
    """Close the event with what the action cost; this row is training data for the next
    mitigation model."""
    from webapp.incidents.services import note_on_node

    outcome = getattr(event, "outcome", None)
    if outcome is None:
        raise ValueError("record the action taken before its outcome")
    for name, value in (
        ("downtime_minutes", downtime_minutes),
        ("interruptions", interruptions),
        ("capacity_cost", capacity_cost),
    ):
        if value is None or value < 0:
            raise ValueError(f"{name} must be zero or more")
    outcome.downtime_minutes = downtime_minutes
    outcome.interruptions = interruptions
    outcome.capacity_cost = capacity_cost
    outcome.recorded_at = timezone.now()
    outcome.save(
        update_fields=["downtime_minutes", "interruptions", "capacity_cost", "recorded_at"]
    )
    close_unhealthy_event(event, end=end)
    note_on_node(
        event.node_id,
        "outcome",
        f"Outcome of {outcome.action.name}: {downtime_minutes:g} min downtime, "
        f"{interruptions:g} interruptions, {capacity_cost:g} node-hours",
        data={"event": event.pk},
    )
    return outcome


@transaction.atomic
def recommend(event: UnhealthyEvent):
    """Ask the promoted causal model what to do and log it on the node's incidents."""
    from webapp.incidents.services import note_on_node
    from webapp.mitigation.engine import recommend as engine_recommend

    recommendation = engine_recommend(event)
    why = recommendation.override_reason or recommendation.fallback_reason
    note_on_node(
        event.node_id,
        "recommendation",
        f"Recommended {recommendation.action.name} for the {event.fault_category} fault"
        + (f" ({why})" if why else ""),
        data={"event": event.pk, "recommendation": recommendation.pk},
    )
    return recommendation


def refresh_recommendations() -> int:
    """Open events whose latest recommendation is missing or came from another model
    version than the promoted one (e.g. opened before the first model was trained) get a
    fresh one; the timeline shows both. Returns how many."""
    from webapp.detection.models import ModelVersion
    from webapp.detection.versions import promoted

    current = promoted(ModelVersion.KIND_MITIGATION)
    refreshed = 0
    open_events = UnhealthyEvent.objects.exclude(status=UnhealthyEvent.CLOSED).filter(
        outcome__isnull=True
    )
    for event in open_events.select_related("node"):
        latest = event.recommendations.order_by("-created_at", "-pk").first()
        if latest is not None and latest.model_version_id == (current.pk if current else None):
            continue
        with transaction.atomic():
            recommend(event)
        refreshed += 1
    return refreshed
