"""The app side of the interference model: inputs from the store, predictions as rows and
as the ``telltale_interference_p`` series, suspects as incident signals, what-if placement."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import transaction
from django.db.models import Max, Q

from ingest.types import MetricBatch, SeriesSamples
from models.interference.calibration import read_calibration
from models.interference.features import CAPACITY_KEYS, CAPACITY_UNITS
from webapp.detection import versions
from webapp.detection.models import InterferencePrediction, ModelVersion
from webapp.detection.windows import metric_windows
from webapp.telemetry import writer
from webapp.telemetry.models import Instance, Node

log = logging.getLogger(__name__)

ATTRIBUTE_WORST = 50  # neighbour blame is computed for the most slowed instances
TRUSTED_P = "telltale_interference_p_trusted"  # P of predictions that are not extrapolated
SUSPECT_BELOW = 0.6  # P under this becomes an "interference" incident signal
STALE_AFTER = timedelta(minutes=10)  # a suspect without predictions this long has ended
UNPREDICTED_SILENT = timedelta(hours=1)  # fleet view: silent longer than this, not listed


class WhatIfError(ValueError):
    def __init__(self, message: str, field: str = "", status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


def _load(path: str):
    from models.interference.predictor import InterferencePredictor

    return InterferencePredictor.load(path)


STEP_SECONDS = 15  # the sampling step the interference model is trained at


def interval_coverage(version: ModelVersion | None) -> float | None:
    """The share of P an interval of ``version`` is calibrated to contain, from its artefact
    (read as JSON, so pages do not load the network); None when unknown."""
    return _calibration_value(version, "coverage_target")


def what_if_widening(version: ModelVersion | None) -> float | None:
    """How much wider (each side, in P) a moved instance's what-if interval is than an
    in-place one, calibrated on simulated moves; None when the artefact was not."""
    return _calibration_value(version, "what_if_extra_margin")


def trained_on_simulator(version: ModelVersion | None) -> bool:
    """Whether ``version`` learnt from simulated fleets only (no exported dataset such as a
    lab run): its P on a real host is then the simulator's prior (docs/interference.md)."""
    return version is not None and not version.config.get("train", {}).get("dataset")


def _calibration_value(version: ModelVersion | None, key: str) -> float | None:
    if version is None or not version.artefact_path:
        return None
    try:
        return float(read_calibration(version.artefact_path)[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# Where each capacity feature the model reads is stated, in the unit of
# models.interference.features.CAPACITY_UNITS (which names it and converts it to the model's
# unit): the hardware generation's attribute, and the Node field an admin sets (which wins;
# between them comes what the node's telemetry reports, keyed the same way).
# Memory is stated in GB; Node keeps bytes.
CAPACITY_SOURCES = {
    "cores": ("cores", "cpu_cores"),
    "mem_gb": ("mem_gb", "memory_gb"),
    "llc_mb": ("llc_mb", "llc_mb"),
    "membw": ("membw_gbps", "membw_gbps"),
    "net": ("net_gbit", "net_gbit"),
    "disk": ("disk_mbps", "disk_mbps"),
}


def capacity_origins(node: Node) -> dict[str, tuple[float, str]]:
    """{key: (value in the unit people state it in (``CAPACITY_UNITS``), where it comes
    from)}: what an admin set on the node's page (or the simulator stated), else what the
    node's own telemetry reports (``Node.reported_capacity``), else its hardware
    generation's figure, else (NaN, "")."""
    from ingest.simulator.fleet import GENERATIONS

    generation = next((g for g in GENERATIONS if g.name == node.hardware), None)
    reported = node.reported_capacity or {}
    out = {}
    for key, (attribute, field) in CAPACITY_SOURCES.items():
        if field == "memory_gb":
            value = node.memory_bytes / 2**30 if node.memory_bytes else None
        else:
            value = getattr(node, field)
        origin = "stated"
        if value is None and key in reported.get("figures", {}):
            value = reported["figures"][key]
            origin = f"reported by {reported.get('origins', {}).get(key, 'its telemetry')}"
        if value is None and generation is not None:
            value, origin = getattr(generation, attribute), f"hardware generation {generation.name}"
        out[key] = (np.nan, "") if value is None else (float(value), origin)
    return out


def stated_capacity(node: Node) -> dict[str, float]:
    """The node's capacity in the units people state it in, NaN where unknown
    (``capacity_origins`` says where each figure comes from)."""
    return {key: value for key, (value, _) in capacity_origins(node).items()}


def node_capacity(node: Node) -> dict:
    """The capacity features the model was trained with, in its units (cores, GB, MB of
    last-level cache, bytes/s of memory, network and disk bandwidth); NaN where unknown."""
    return {key: value * CAPACITY_UNITS[key].factor for key, value in stated_capacity(node).items()}


def missing_capacity(capacity: dict) -> list[str]:
    """The capacity features the model reads that are not a positive number."""
    missing = []
    for key in CAPACITY_KEYS:
        value = float(capacity.get(key, np.nan))
        if not (np.isfinite(value) and value > 0):
            missing.append(key)
    return missing


def _windows(predictor, instances: list[Instance], end_ms: int) -> dict:
    return metric_windows(
        "vm",
        [i.pk for i in instances],
        list(predictor.metric_names),
        end_ms,
        predictor.window_steps,
        STEP_SECONDS * 1000,
    )


def _inputs(predictor, instances: list[Instance], windows: dict):
    """One victim per placed instance with samples in ``windows``, its neighbours being the
    other such instances on its node."""
    from models.interference.predictor import NeighbourInput, VictimInput

    by_node: dict[int, list[Instance]] = defaultdict(list)
    for instance in instances:
        by_node[instance.node_id].append(instance)
    victims = []
    for node_id, placed in by_node.items():
        capacity = node_capacity(placed[0].node)  # instances come with their node
        if missing_capacity(capacity):
            # The model needs the node's full capacity; a node that lacks it is skipped
            # instead of failing the whole fleet's prediction.
            log.info("interference: node %s has no full capacity; skipped", node_id)
            continue
        # An instance without a sample in the window (stopped, or its data is late) has
        # nothing to predict from and is no one's neighbour now.
        members = [i for i in placed if not np.all(np.isnan(windows[i.pk]))]
        for victim in members:
            neighbours = [
                NeighbourInput(other.name, windows[other.pk])
                for other in members
                if other.pk != victim.pk
            ]
            victims.append(VictimInput(victim.name, windows[victim.pk], neighbours, capacity))
    return victims


def predict_fleet(now_ms: int | None = None) -> int:
    """Predict P for every placed instance that sent data recently; idempotent per minute."""
    version, predictor = versions.load_promoted(ModelVersion.KIND_INTERFERENCE, _load)
    if predictor is None:
        return 0
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    minute_ms = now_ms - now_ms % 60_000
    instances = list(
        Instance.objects.filter(node__isnull=False, last_seen__isnull=False).select_related("node")
    ) or list(Instance.objects.filter(node__isnull=False).select_related("node"))
    rows = _predict_round(version, predictor, instances, minute_ms, ATTRIBUTE_WORST)
    if rows:
        track_suspects(rows, rows[0].ts)
    return len(rows)


def _predict_round(
    version, predictor, instances: list[Instance], minute_ms: int, attribute: int
) -> list[InterferencePrediction]:
    """P of ``instances`` (each with the node it ran on then) for the window ending at
    ``minute_ms``, stored as rows and series samples (replacing that minute's rows), the
    ``attribute`` most slowed with their neighbours' blame."""
    if not instances:
        return []
    at = datetime.fromtimestamp(minute_ms / 1000, tz=UTC)
    victims = _inputs(predictor, instances, _windows(predictor, instances, minute_ms))
    if not victims:
        return []
    predictions = predictor.predict(victims)
    unfamiliar = dict(
        zip((v.instance_id for v in victims), predictor.unfamiliar_many(victims), strict=True)
    )
    by_name = {i.name: i for i in instances}
    worst = sorted(predictions, key=lambda p: p.p)[:attribute]
    victims_by_name = {v.instance_id: v for v in victims}
    blame = dict(
        zip(
            [p.instance_id for p in worst],
            predictor.attribute_many([victims_by_name[p.instance_id] for p in worst])
            if worst
            else [],
            strict=True,
        )
    )
    rows, series = [], []
    for p in predictions:
        instance = by_name[p.instance_id]
        rows.append(
            InterferencePrediction(
                instance=instance,
                node_id=instance.node_id,
                ts=at,
                p=float(p.p),
                p_low=float(p.p_low),
                p_high=float(p.p_high),
                neighbours=[
                    [name, round(float(gain), 4)] for name, gain in blame.get(p.instance_id, [])[:5]
                ],
                unfamiliar=unfamiliar[p.instance_id],
                model_version=version,
            )
        )
        labels = {"vm": instance.name, "node": instance.node.name}
        # Alert rules read P only where the input is like the training windows: an
        # extrapolated P (a real host the simulator never showed it) is no reason to page.
        names = ["telltale_interference_p"]
        if not unfamiliar[p.instance_id]:
            names.append(TRUSTED_P)
        series += [
            SeriesSamples(
                tuple(sorted({**labels, "__name__": name}.items())), [minute_ms], [float(p.p)]
            )
            for name in names
        ]
    with transaction.atomic():
        InterferencePrediction.objects.filter(ts=at).delete()
        InterferencePrediction.objects.bulk_create(rows)
    writer.write_metrics(
        MetricBatch(series=series), source=writer.DERIVED_SOURCE, client="interference"
    )
    return rows


BACKFILL_EVERY = timedelta(minutes=5)
BACKFILL_ATTRIBUTE = 5  # per past round: leave-one-out blame is the round's costliest part


def backfill(version_id: int, hours: float | None = None) -> int:
    """Predict P over the ``hours`` before ``version_id`` was promoted, every
    ``BACKFILL_EVERY``, each instance on the node it ran on then (its placement history):
    run once, when the first interference version is promoted, so P over time does not begin
    at the promotion. No incident signal is raised for the past. A minute that already has
    predictions is left as it is. Returns how many predictions were stored."""
    from django.conf import settings

    from webapp.telemetry.models import Placement

    hours = settings.TELLTALE_BACKFILL_HOURS if hours is None else hours
    version = ModelVersion.objects.get(pk=version_id)
    if not hours or version.promoted_at is None:
        return 0
    predictor = _load(version.artefact_path)
    until_ms = int(version.promoted_at.timestamp() * 1000) // 60_000 * 60_000
    every_ms = int(BACKFILL_EVERY.total_seconds() * 1000)
    since = datetime.fromtimestamp(until_ms / 1000 - hours * 3600, tz=UTC)
    placements = list(
        Placement.objects.filter(Q(end__isnull=True) | Q(end__gt=since))
        .filter(start__lt=datetime.fromtimestamp(until_ms / 1000, tz=UTC))
        .select_related("instance", "node")
    )
    done = set(InterferencePrediction.objects.filter(ts__gte=since).values_list("ts", flat=True))
    stored = 0
    for end_ms in range(until_ms - int(hours * 3_600_000) + every_ms, until_ms, every_ms):
        at = datetime.fromtimestamp(end_ms / 1000, tz=UTC)
        if at in done:
            continue
        instances = []
        for placement in placements:
            if placement.start <= at and (placement.end is None or at < placement.end):
                instance = placement.instance
                instance.node = placement.node  # where it ran then; never saved
                instances.append(instance)
        stored += len(_predict_round(version, predictor, instances, end_ms, BACKFILL_ATTRIBUTE))
    return stored


def track_suspects(rows: list[InterferencePrediction], at: datetime) -> None:
    """One ``interference`` incident signal per slowdown of an instance: opened when a round
    predicts P under SUSPECT_BELOW from input like the training windows (not extrapolated),
    kept while it stays there, and ended when a round predicts it at or above again (or
    extrapolates it), or when the instance has had no prediction for STALE_AFTER, so
    incidents built on it can resolve. Idempotent per round."""
    from webapp.incidents.models import Signal
    from webapp.incidents.services import record_signal

    open_by_instance: dict[int, list[Signal]] = defaultdict(list)
    for signal in (
        Signal.objects.filter(kind="interference", end__isnull=True)
        .select_related("instance")
        .order_by("start")
    ):
        open_by_instance[signal.instance_id].append(signal)

    def end(signal: Signal, when: datetime) -> None:
        record_signal(
            "interference",
            signal.source_id,
            title=signal.title,
            start=signal.start,
            end=max(when, signal.start),
            instance=signal.instance,
        )

    for row in rows:
        current = open_by_instance.pop(row.instance_id, [])
        # An extrapolated P says more about the training fleets than about the instance: it
        # opens no incident, and ends one it no longer supports.
        if row.p >= SUSPECT_BELOW or row.unfamiliar:
            for signal in current:
                end(signal, at)
            continue
        for signal in current[:-1]:  # older ones (kept open by earlier versions) end now
            end(signal, at)
        top = row.neighbours[0][0] if row.neighbours else "its neighbours"
        record_signal(
            "interference",
            current[-1].source_id if current else f"{row.instance_id}:{int(at.timestamp())}",
            title=f"{row.instance.name} slowed to P={row.p:.2f} by {top}",
            start=current[-1].start if current else at,
            severity="warning",
            instance=row.instance,
            details={"p": row.p, "neighbours": row.neighbours},
        )
    last_predicted = dict(  # of the instances with an open signal not predicted this round
        InterferencePrediction.objects.filter(instance_id__in=list(open_by_instance))
        .values("instance_id")
        .annotate(ts=Max("ts"))
        .values_list("instance_id", "ts")
    )
    for instance_id, signals in open_by_instance.items():
        last = last_predicted.get(instance_id)
        if last is None or last <= at - STALE_AFTER:
            for signal in signals:
                end(signal, last or at)


def unpredicted(
    round_at: datetime | None, predicted: set[int], only: Instance | None = None
) -> list[dict]:
    """Placed instances (or just ``only``) that the prediction round at ``round_at`` left
    out, each with the reason ``predict_fleet`` had, so no page hides one silently. Before
    the first round there is nothing to explain (pages say no prediction has run yet)."""
    if round_at is None:
        return []
    placed_qs = Instance.objects.filter(node__isnull=False)
    any_seen = placed_qs.filter(last_seen__isnull=False).exists()
    if only is not None:
        placed_qs = placed_qs.filter(pk=only.pk)
    else:  # long-silent instances have stopped; listing them for ever would bury the rest
        recent = round_at - UNPREDICTED_SILENT
        placed_qs = placed_qs.filter(
            Q(last_seen__gte=recent) | Q(last_seen__isnull=True, first_seen__gte=recent)
        )
    placed = list(placed_qs.select_related("node").order_by("name"))
    missing: dict[int, list[str]] = {}
    out = []
    for instance in placed:
        if instance.pk in predicted:
            continue
        node = instance.node
        if node.pk not in missing:
            missing[node.pk] = missing_capacity(node_capacity(node))
        if missing[node.pk]:
            reason = (
                f"node {node.name} has no known {', '.join(missing[node.pk])} capacity "
                "(an admin sets it on the node's page)"
            )
        elif instance.first_seen >= round_at + timedelta(minutes=1):  # rounds run within a minute
            reason = "placed after the latest round"
        elif instance.last_seen is None and any_seen:
            reason = "has never sent a metric sample"
        else:
            reason = "no metric samples in the window the model reads before the latest round"
        out.append({"instance": instance, "node": node, "reason": reason})
    return out


def what_if(instance_name: str, node_name: str) -> dict:
    instance = Instance.objects.filter(name=instance_name).select_related("node").first()
    if instance is None:
        raise WhatIfError(f"unknown instance {instance_name!r}", "instance", 404)
    node = Node.objects.filter(name=node_name).first()
    if node is None:
        raise WhatIfError(f"unknown node {node_name!r}", "node", 404)
    if instance.node_id == node.pk:
        raise WhatIfError(f"{instance_name} already runs on {node_name}", "node")
    capacity = node_capacity(node)
    if unknown := missing_capacity(capacity):
        raise WhatIfError(
            f"{node_name} has no known capacity ({', '.join(unknown)}); an admin sets it on "
            "the node's page",
            "node",
            409,
        )
    version, predictor = versions.load_promoted(ModelVersion.KIND_INTERFERENCE, _load)
    if predictor is None:
        raise WhatIfError("no interference model is promoted yet", "", 409)
    from models.interference.predictor import NeighbourInput, VictimInput
    from models.interference.predictor import WhatIfError as ModelWhatIfError

    residents = list(Instance.objects.filter(node=node).select_related("node"))
    housemates = (
        list(Instance.objects.filter(node_id=instance.node_id).select_related("node"))
        if instance.node_id
        else []
    )  # the moved instance's current node, itself included
    now_ms = int(time.time() * 1000)
    windows = _windows(predictor, [*residents, *housemates, instance], now_ms)
    if np.all(np.isnan(windows[instance.pk])):
        minutes = predictor.window_steps * STEP_SECONDS / 60
        raise WhatIfError(
            f"{instance_name} has no metric samples in the last {minutes:g} minutes; "
            "the model needs its recent behaviour to predict it elsewhere",
            "instance",
            409,
        )
    try:
        result = predictor.what_if(
            windows[instance.pk],
            [NeighbourInput(r.name, windows[r.pk]) for r in residents],
            capacity,
            moved_id=instance.name,
        )
    except ModelWhatIfError as exc:
        raise WhatIfError(str(exc), "node") from None
    # P where everyone runs now, from the same minutes of data, so that the change is the
    # move's alone (a stored prediction a minute old differs by more than a move often does).
    in_place = predictor.predict(_inputs(predictor, [*residents, *housemates], windows))
    current = {p.instance_id: float(p.p) for p in in_place}
    on_target = [instance, *(r for r in residents if r.name not in result.absent)]
    unfamiliar = dict(
        zip(
            (i.name for i in on_target),
            predictor.unfamiliar_many(
                [VictimInput(i.name, windows[i.pk], [], capacity) for i in on_target]
            ),
            strict=True,
        )
    )

    def row(prediction, name):
        p_now = current.get(name)
        return {
            "instance": name,
            "p": round(float(prediction.p), 4),
            "p_low": round(float(prediction.p_low), 4),
            "p_high": round(float(prediction.p_high), 4),
            "p_now": None if p_now is None else round(p_now, 4),
            "change": None if p_now is None else round(float(prediction.p) - p_now, 4),
            "unfamiliar": unfamiliar.get(name, []),
        }

    return {
        "instance": instance.name,
        "node": node.name,
        "model_version": version.version,
        "moved": row(result.moved, instance.name),
        "existing": [row(p, p.instance_id) for p in result.existing],
        "absent": result.absent,
    }
