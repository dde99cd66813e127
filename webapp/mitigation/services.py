"""State changes of unhealthy-node events. Views, tasks, the API, alert rules and the
simulator all open and close events through these functions."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from webapp.mitigation.models import UnhealthyEvent
from webapp.telemetry.models import Node

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
) -> tuple[UnhealthyEvent, bool]:
    """Open an event for ``node`` unless one from the same source and external id exists
    (an alert that keeps firing, a retried API call); returns (event, created)."""
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
