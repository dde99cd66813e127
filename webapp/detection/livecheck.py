"""How the promoted anomaly model did on the live fleet, against the ground truth a
simulator feed records (``InjectedCase``): the check a demo or a staging fleet with injected
faults allows, beside the offline evaluation on held-out data.

An anomaly and a case match when they are about the same target (the instance for VM cases,
the node alone for host cases) and overlap in time, give or take ``tolerance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from webapp.detection.models import Anomaly, ModelVersion
from webapp.telemetry.models import InjectedCase

TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class Span:
    """What a stretch of time is about: an alarm (a stored anomaly, or a replay's event) or
    an injected case."""

    level: str
    instance_id: int | None
    node_id: int | None
    start: datetime
    end: datetime
    scenario: str = ""


def _same_target(a: Span, b: Span) -> bool:
    if a.level != b.level:
        return False
    if a.level == "vm":
        return a.instance_id is not None and a.instance_id == b.instance_id
    return a.node_id is not None and a.node_id == b.node_id


def _overlap(a: Span, b: Span, tolerance: timedelta) -> bool:
    return _same_target(a, b) and a.start <= b.end + tolerance and a.end >= b.start - tolerance


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def anomaly_live_check(
    since: datetime | None = None,
    until: datetime | None = None,
    tolerance: timedelta = TOLERANCE,
) -> dict:
    """Precision, recall, deceptive-normal false-positive rate and scenario accuracy of the
    anomalies raised from ``since`` (default: when the promoted version was promoted) to
    ``until`` (default: now). Any case under way can explain an alarm; recall and the
    deceptive FPR count the cases that began in the period, but not in its last
    ``tolerance``, which the model has had no time to see."""
    until = until or timezone.now()
    if since is None:
        promoted = (
            ModelVersion.objects.filter(
                kind=ModelVersion.KIND_ANOMALY, status=ModelVersion.PROMOTED
            )
            .exclude(promoted_at=None)
            .first()
        )
        if promoted is None:
            raise ValueError("no promoted anomaly model; pass --since")
        since = promoted.promoted_at
    raised = list(Anomaly.objects.filter(start__gte=since - tolerance, start__lte=until))
    alarms = [Span(a.level, a.instance_id, a.node_id, a.start, a.end, a.scenario) for a in raised]
    result = judge(alarms, since, until, tolerance)
    if result is None:  # a fleet without a simulator feed: precision 0 would be a lie
        raise ValueError(
            f"no injected cases recorded between {since:%Y-%m-%d %H:%M} and "
            f"{until:%Y-%m-%d %H:%M} UTC: the live check needs a simulator feed's ground truth"
        )
    result.pop("alarm_cases")  # per alarm; the summary does not list them
    return {"since": since.isoformat(), "until": until.isoformat(), **result}


def judge(
    alarms: list[Span],
    since: datetime,
    until: datetime,
    tolerance: timedelta = TOLERANCE,
    level: str | None = None,
    nodes: set[int] | None = None,
) -> dict | None:
    """The alarms against the cases injected in [since, until] (of ``level`` only, and on
    ``nodes`` only, when the alarms are of one level or of those nodes); None when none
    were."""
    # Every case under way in the period can explain an alarm; only those that began in it
    # (and not in its last minutes) are counted for recall and the deceptive FPR.
    found = InjectedCase.objects.filter(end__gte=since - tolerance, start__lte=until)
    if level is not None:
        found = found.filter(level=level)
    if nodes is not None:
        found = found.filter(node_id__in=nodes)
    cases = list(found.select_related("instance", "node").order_by("start"))
    if not cases:
        return None
    spans = [
        Span(c.level, c.instance_id if c.level == "vm" else None, c.node_id, c.start, c.end)
        for c in cases
    ]
    judged = [since <= c.start <= until - tolerance for c in cases]
    every_fault = [k for k, c in enumerate(cases) if c.kind == InjectedCase.KIND_ANOMALY]
    faults = [k for k in every_fault if judged[k]]
    decoys = [k for k, c in enumerate(cases) if c.kind == InjectedCase.KIND_DECEPTIVE and judged[k]]
    explained = []  # whether each anomaly overlaps a fault
    alarm_cases = []  # what each anomaly overlaps: a fault, else a deceptive case, else ""
    right_class = 0
    for alarm in alarms:
        found = [cases[k] for k in every_fault if _overlap(alarm, spans[k], tolerance)]
        explained.append(bool(found))
        right_class += any(c.scenario == alarm.scenario for c in found)
        decoy = [
            cases[k]
            for k, c in enumerate(cases)
            if c.kind == InjectedCase.KIND_DECEPTIVE and _overlap(alarm, spans[k], tolerance)
        ]
        alarm_cases.append(
            f"fault: {found[0].scenario}"
            if found
            else f"deceptive: {decoy[0].scenario}"
            if decoy
            else ""
        )
    matched = sum(explained)
    hit = [any(_overlap(a, spans[k], tolerance) for a in alarms) for k in range(len(cases))]
    found_faults = sum(hit[k] for k in faults)
    # A deceptive case counts as alarmed only by an anomaly no fault explains (a backup
    # running during a real swap storm on the same VM is not what raised that alarm).
    alarmed_decoys = sum(
        any(
            _overlap(a, spans[k], tolerance)
            for a, ok in zip(alarms, explained, strict=True)
            if not ok
        )
        for k in decoys
    )
    return {
        "anomalies": len(alarms),
        "anomalies_matching_a_fault": matched,
        "precision": _rate(matched, len(alarms)),
        "faults": len(faults),
        "faults_found": found_faults,
        "recall": _rate(found_faults, len(faults)),
        "deceptive_cases": len(decoys),
        "deceptive_alarmed": alarmed_decoys,
        "deceptive_fpr": _rate(alarmed_decoys, len(decoys)),
        "scenario_accuracy": _rate(right_class, matched),
        "alarm_cases": alarm_cases,
        "missed": [
            f"{cases[k].scenario} on {cases[k].instance or cases[k].node} at "
            f"{cases[k].start:%Y-%m-%d %H:%M}"
            for k in faults
            if not hit[k]
        ],
    }
