"""The app side of the causal engine: covariates of an event from what Telltale knows,
capacity context from the fleet, and the promoted model's recommendation stored as a row."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

import numpy as np
from django.db.models import Q

from webapp.detection import versions
from webapp.detection.models import ModelVersion
from webapp.mitigation.models import MitigationAction, Recommendation, UnhealthyEvent
from webapp.telemetry import query
from webapp.telemetry.models import Node, Series

log = logging.getLogger(__name__)

COVARIATES = (
    "fault",
    "severity",
    "error_count",
    "node_age_days",
    "hw_generation",
    "instances_hosted",
    "cpu_utilization",
    "memory_utilization",
    "recent_repairs",
)
NUMERIC_DEFAULTS = {"severity": 0.5, "error_count": 0.0, "hw_generation": 2.0}
SLOTS_PER_CORE = 0.25  # instance slots a healthy node offers per core, for the rack rule


def _latest(node: Node, metric: str) -> float | None:
    series = list(Series.objects.filter(node=node, metric=metric, instance__isnull=True)[:1])
    if not series:
        return None
    now = int(time.time() * 1000)
    results, _ = query.range_query(series, now - 600_000, now, 600_000, "avg")
    values = [v for v in results[0].values.tolist() if v == v]
    return values[-1] if values else None


def covariates(event: UnhealthyEvent) -> dict:
    """Diagnostic signals as sent win; the rest is filled from the fleet's own data."""
    node = event.node
    given = event.signals or {}
    x: dict = {"fault": event.fault_category}
    generation = re.search(r"(\d+)", node.hardware or "")
    computed = {
        "node_age_days": max((event.start - node.first_seen).total_seconds() / 86400, 0.0),
        "hw_generation": float(generation.group(1)) if generation else None,
        "instances_hosted": float(max(node.instances.count(), 1)),
        "cpu_utilization": _latest(node, "host_cpu_utilization_ratio"),
        "memory_utilization": _latest(node, "host_memory_utilization_ratio"),
        "recent_repairs": float(
            UnhealthyEvent.objects.filter(
                node=node,
                status=UnhealthyEvent.CLOSED,
                start__gte=event.start - timedelta(days=90),
                outcome__action__takes_node_out=True,
            ).count()
        ),
    }
    for name in COVARIATES[1:]:
        value = given.get(name, computed.get(name))
        if value is None:
            value = NUMERIC_DEFAULTS.get(name, 0.5)
        try:
            x[name] = float(value)
        except (TypeError, ValueError):
            x[name] = NUMERIC_DEFAULTS.get(name, 0.5)
    return x


def capacity_context(event: UnhealthyEvent):
    from models.mitigation.policy import CapacityContext

    node = event.node
    busy = set(
        UnhealthyEvent.objects.exclude(status=UnhealthyEvent.CLOSED).values_list(
            "node_id", flat=True
        )
    )
    spare = None
    if node.rack:
        peers = Node.objects.filter(rack=node.rack).exclude(pk=node.pk).exclude(pk__in=busy)
        known = [p for p in peers if p.cpu_cores]
        if known:
            spare = float(
                sum(max(0.0, p.cpu_cores * SLOTS_PER_CORE - p.instances.count()) for p in known)
            )
    out = 0
    if node.cluster:
        out = (
            UnhealthyEvent.objects.exclude(status=UnhealthyEvent.CLOSED)
            .filter(Q(node__cluster=node.cluster), outcome__action__takes_node_out=True)
            .exclude(pk=event.pk)
            .count()
        )
    return CapacityContext(rack_spare_slots=spare, cluster_out_for_repair=out)


def _load(path: str):
    from models.mitigation.train import load

    return load(path).policy()


def recommend(event: UnhealthyEvent) -> Recommendation:
    """Store a recommendation for the event from the promoted model, or the runbook's
    default action (saying so) when no model is promoted or the model cannot decide."""
    x = covariates(event)
    event.signals = {**x, **(event.signals or {})}
    event.save(update_fields=["signals"])
    actions = {a.key: a for a in MitigationAction.objects.all()}
    default = next(a for a in actions.values() if a.is_legacy_default)
    version, policy = versions.load_promoted(ModelVersion.KIND_MITIGATION, _load)
    if policy is None:
        return Recommendation.objects.create(
            event=event,
            action=default,
            legacy_action=default,
            fallback_reason="no_model",
            explanation=[
                {
                    "covariate": "",
                    "contribution": 0,
                    "sentence": "No mitigation model is promoted yet; this is the runbook's"
                    " default action.",
                }
            ],
        )
    r = policy.recommend(x, capacity_context(event))
    return Recommendation.objects.create(
        event=event,
        action=actions.get(r.action, default),
        legacy_action=actions.get(r.legacy_action, default),
        model_version=version,
        estimates={
            e.action: {
                "downtime": e.expected_downtime,
                "low": e.low,
                "high": e.high,
                "propensity": e.propensity,
            }
            for e in r.estimates
        },
        advantage={
            "estimate": r.advantage,
            "low": r.advantage_low,
            "high": r.advantage_high,
            "level": r.interval_level,
        },
        fallback_reason=r.fallback_reason or "",
        override_reason=r.override_reason or "",
        explanation=[
            {"covariate": name, "contribution": float(np.round(value, 3)), "sentence": sentence}
            for name, value, sentence in r.explanation
        ],
    )
