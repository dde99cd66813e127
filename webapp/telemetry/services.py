"""State changes of telemetry: placements, node attributes, scrape targets, rollups, retention."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.telemetry.models import (
    IngestMinute,
    Instance,
    LogRecord,
    Node,
    Placement,
    RollupDirtyRange,
    RollupState,
    ScrapeTarget,
)
from webapp.telemetry.store import get_store
from webapp.telemetry.store.base import DAY_MS, HOUR_MS, MINUTE_MS

log = logging.getLogger(__name__)

# An instance is not moved back to a node it left while the node it moved to still sends
# its series within this long (as Prometheus' lookback): the old node's are then a stale
# exporter's, and following them would flip the placement on every scrape.
PLACEMENT_STALE_MS = 5 * MINUTE_MS
# Rollups stay this far behind now so that samples still in flight are not missed.
ROLLUP_LAG_MS = 2 * MINUTE_MS
ROLLUP_CHUNK_MS = 6 * HOUR_MS


# --- fleet ---------------------------------------------------------------------------
@transaction.atomic
def record_placement(instance_id: int, node_id: int, at: datetime) -> int:
    """Close the instance's open placement and open one on ``node_id`` from ``at``, unless it
    is already there, ``at`` is older than the open placement (late samples from where the
    instance ran before do not move it back), or ``node_id`` is a node it ran on before
    while the node it is on still reports it (a stale exporter; it moves back once that node
    has been silent for ``PLACEMENT_STALE_MS``). A node it never ran on is a migration's
    destination and wins at once. Returns the node it is placed on now."""
    current = (
        Placement.objects.select_for_update()
        .filter(instance_id=instance_id, end__isnull=True)
        .first()
    )
    if current is not None:
        if current.node_id == node_id or at < current.start:
            return current.node_id
        if (
            _still_reported_on(current, at)
            and Placement.objects.filter(
                instance_id=instance_id, node_id=node_id, end__isnull=False
            ).exists()
        ):
            return current.node_id
        current.end = at
        current.save(update_fields=["end"])
    Placement.objects.create(instance_id=instance_id, node_id=node_id, start=at)
    Instance.objects.filter(pk=instance_id).update(node_id=node_id)
    return node_id


def _still_reported_on(placement: Placement, at: datetime) -> bool:
    from webapp.telemetry.query import reporting_nodes  # query reads through this module

    at_ms = _ms(at)
    near = reporting_nodes(
        placement.instance_id, at_ms - PLACEMENT_STALE_MS, at_ms + PLACEMENT_STALE_MS
    )
    return placement.node_id in near


@transaction.atomic
def update_node(node: Node, **attributes) -> Node:
    allowed = {
        "cluster", "rack", "hardware", "cpu_cores", "memory_bytes", "labels",
        "llc_mb", "membw_gbps", "net_gbit", "disk_mbps", "reported_capacity",
    }  # fmt: skip
    unknown = set(attributes) - allowed
    if unknown:
        raise ValueError(f"unknown node attributes: {', '.join(sorted(unknown))}")
    for key, value in attributes.items():
        setattr(node, key, value)
    node.save(update_fields=sorted(attributes))
    return node


REPORTED_WITHIN_MS = 5 * MINUTE_MS  # the newest capacity sample this recent counts


def refresh_reported_capacity(now_ms: int | None = None) -> int:
    """Keep what each node heard from in the last hour reports of its own capacity (cores,
    memory, last-level cache, link speed: ``derived.CAPACITY_DERIVATIONS``) on the node, so
    the interference model can predict on a node nobody typed figures in for. Returns the
    number of nodes whose figures changed."""
    import numpy as np

    from webapp.telemetry import derived
    from webapp.telemetry.models import Series

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    nodes = {n.pk: n for n in Node.objects.filter(last_seen__gte=_dt(now_ms - HOUR_MS))}
    rules = derived.derivations_for(
        {d.metric for d in derived.CAPACITY_DERIVATIONS}, derived.CAPACITY_DERIVATIONS
    )
    wanted = derived.sources_by_metric(rules)
    owners = {
        sid: (node_id, metric, labels or {})
        for sid, node_id, metric, labels in Series.objects.filter(
            node_id__in=list(nodes), instance__isnull=True, metric__in=list(wanted)
        ).values_list("id", "node_id", "metric", "labels")
        # node_exporter's CPUs are counted by one mode's series, not all eight modes'
        if any(source.matches(labels or {}) for source in wanted[metric])
    }
    series: dict[int, dict[str, list]] = {pk: {} for pk in nodes}
    for sid, (ts, values) in (
        get_store().read_raw(list(owners), now_ms - REPORTED_WITHIN_MS, now_ms + 1).items()
    ):
        node_id, metric, labels = owners[sid]
        series[node_id].setdefault(metric, []).append((labels, ts, values))
    times = np.array([now_ms], dtype=np.int64)
    changed = 0
    for pk, node in nodes.items():
        figures, origins = {}, {}
        for key, candidates in rules.items():
            found = derived.first_derived(candidates, series[pk], times, REPORTED_WITHIN_MS + 1)
            if found and found[1][0] > 0:  # virtio NICs report a speed of -1 Mbit/s
                figures[key], origins[key] = round(float(found[1][0]), 3), found[0].origin
        reported = {"figures": figures, "origins": origins} if figures else {}
        if reported != node.reported_capacity:
            update_node(node, reported_capacity=reported)
            changed += 1
    return changed


@transaction.atomic
def update_instance(instance: Instance, **attributes) -> Instance:
    allowed = {"workload", "labels"}
    unknown = set(attributes) - allowed
    if unknown:
        raise ValueError(f"unknown instance attributes: {', '.join(sorted(unknown))}")
    for key, value in attributes.items():
        setattr(instance, key, value)
    instance.save(update_fields=sorted(attributes))
    return instance


# --- scrape targets ------------------------------------------------------------------
@transaction.atomic
def save_scrape_target(target: ScrapeTarget, actor=None) -> ScrapeTarget:
    from webapp.core.services import audit

    created = target.pk is None
    target.next_due_at = timezone.now()
    target.save()
    audit(
        actor,
        "scrape_target.created" if created else "scrape_target.changed",
        target.name,
        url=target.url,
    )
    return target


@transaction.atomic
def delete_scrape_target(target: ScrapeTarget, actor=None) -> None:
    from webapp.core.services import audit

    audit(actor, "scrape_target.deleted", target.name, url=target.url)
    target.delete()


def claim_due_targets(now: datetime) -> list[int]:
    """Move due targets' next slot forward and return their ids, so two beat ticks (or two
    schedulers) never scrape the same target twice in one interval."""
    claimed = []
    with transaction.atomic():
        due = ScrapeTarget.objects.select_for_update(skip_locked=True).filter(
            enabled=True, next_due_at__lte=now
        )
        for target in due:
            target.next_due_at = now + timedelta(seconds=target.interval_seconds)
            target.save(update_fields=["next_due_at"])
            claimed.append(target.pk)
    return claimed


def record_scrape(
    target: ScrapeTarget,
    *,
    at: datetime,
    ok: bool,
    duration: float,
    samples: int,
    series_ids: list[int],
    error: str = "",
) -> None:
    target.health = ScrapeTarget.HEALTH_UP if ok else ScrapeTarget.HEALTH_DOWN
    target.last_scrape_at = at
    target.last_duration_seconds = duration
    target.last_error = error[:2000]
    target.last_samples = samples
    target.last_series_ids = series_ids
    target.save(
        update_fields=[
            "health",
            "last_scrape_at",
            "last_duration_seconds",
            "last_error",
            "last_samples",
            "last_series_ids",
        ]
    )


# --- rollups and retention -----------------------------------------------------------
def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def run_rollups(now_ms: int | None = None) -> dict[str, int]:
    """Bring the 1-minute and 1-hour rollups up to date and redo ranges that late data
    touched. Safe to run concurrently with ingest and to run twice."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    store = get_store()
    written = {"1m": 0, "1h": 0, "dirty": 0}
    minute_state, _ = RollupState.objects.get_or_create(resolution="1m")
    hour_state, _ = RollupState.objects.get_or_create(resolution="1h")

    # Late data first, only where a rollup was already computed.
    dirty = list(RollupDirtyRange.objects.order_by("start")[:5000])
    if dirty:
        minute_done = _ms(minute_state.complete_until) if minute_state.complete_until else None
        hour_done = _ms(hour_state.complete_until) if hour_state.complete_until else None
        for lo, hi in _merge_ranges([(_ms(d.start), _ms(d.end)) for d in dirty]):
            if minute_done is not None and lo < minute_done:
                a = lo - lo % MINUTE_MS
                b = min(hi - hi % MINUTE_MS + MINUTE_MS, minute_done)
                written["dirty"] += store.rollup("1m", a, b)
            if hour_done is not None and lo < hour_done:
                a = lo - lo % HOUR_MS
                b = min(hi - hi % HOUR_MS + HOUR_MS, hour_done)
                written["dirty"] += store.rollup("1h", a, b)
        RollupDirtyRange.objects.filter(id__in=[d.id for d in dirty]).delete()

    upto = now_ms - ROLLUP_LAG_MS
    upto -= upto % MINUTE_MS
    start = (
        _ms(minute_state.complete_until) if minute_state.complete_until else _first_sample_ms(store)
    )
    if start is not None and start < upto:
        start -= start % MINUTE_MS
        for a in range(start, upto, ROLLUP_CHUNK_MS):
            written["1m"] += store.rollup("1m", a, min(a + ROLLUP_CHUNK_MS, upto))
        minute_state.complete_until = _dt(upto)
        minute_state.save(update_fields=["complete_until"])

    if minute_state.complete_until:
        hour_upto = _ms(minute_state.complete_until)
        hour_upto -= hour_upto % HOUR_MS
        hour_start = (
            _ms(hour_state.complete_until) if hour_state.complete_until else (start or hour_upto)
        )
        hour_start -= hour_start % HOUR_MS
        if hour_start < hour_upto:
            for a in range(hour_start, hour_upto, 24 * HOUR_MS):
                written["1h"] += store.rollup("1h", a, min(a + 24 * HOUR_MS, hour_upto))
            hour_state.complete_until = _dt(hour_upto)
            hour_state.save(update_fields=["complete_until"])
    return written


def _first_sample_ms(store) -> int | None:
    bounds = store.time_bounds()
    return bounds[0] if bounds else None


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + MINUTE_MS:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def rollup_complete_until() -> dict[str, int | None]:
    states = dict(RollupState.objects.values_list("resolution", "complete_until"))
    return {key: (_ms(states[key]) if states.get(key) else None) for key in ("1m", "1h")}


def apply_retention(now_ms: int | None = None) -> dict[str, int]:
    """Drop samples, rollups and logs older than their configured retention."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    store = get_store()
    raw_cutoff = now_ms - settings.TELLTALE_RETENTION_DAYS * DAY_MS
    removed = {
        "raw": store.drop_before("raw", raw_cutoff),
        "1m": store.drop_before("1m", now_ms - settings.TELLTALE_ROLLUP_1M_RETENTION_DAYS * DAY_MS),
        "1h": store.drop_before("1h", now_ms - settings.TELLTALE_ROLLUP_1H_RETENTION_DAYS * DAY_MS),
    }
    removed["logs"] = LogRecord.objects.filter(ts__lt=_dt(raw_cutoff)).delete()[0]
    removed["ingest_minutes"] = IngestMinute.objects.filter(
        minute__lt=_dt(now_ms - 7 * DAY_MS)
    ).delete()[0]
    return removed


# --- simulator ground truth ----------------------------------------------------------
TRUTH_NODE_FIELDS = {"cluster", "rack", "hardware", "cpu_cores", "memory_bytes"}


@transaction.atomic
def record_ground_truth(
    run: str, nodes: list[dict], instances: list[dict], cases: list[dict]
) -> dict[str, int]:
    """Store what a simulator run knows: node attributes, instance workloads and the cases
    it injected (idempotent per ``run`` + case id). Input is validated by the caller."""
    from webapp.telemetry.models import InjectedCase
    from webapp.telemetry.writer import instance_ids_for, node_ids_for

    node_ids = node_ids_for(
        {n["name"] for n in nodes} | {c["node"] for c in cases if c.get("node")}
    )
    for n in nodes:
        fields = {k: v for k, v in n.items() if k in TRUTH_NODE_FIELDS and v not in (None, "")}
        if fields:
            Node.objects.filter(pk=node_ids[n["name"]]).update(**fields)
    instance_ids = instance_ids_for(
        {i["name"] for i in instances} | {c["instance"] for c in cases if c.get("instance")}
    )
    for i in instances:
        if i.get("workload"):
            Instance.objects.filter(pk=instance_ids[i["name"]]).update(workload=i["workload"])
    existing = set(InjectedCase.objects.filter(run=run).values_list("key", flat=True))
    new = [
        InjectedCase(
            key=f"{run}:{c['case_id']}",
            run=run,
            kind=c["kind"],
            scenario=c["scenario"],
            level=c.get("level", ""),
            node_id=node_ids.get(c.get("node")) if c.get("node") else None,
            instance_id=instance_ids.get(c.get("instance")) if c.get("instance") else None,
            start=_dt(int(c["start"]) * 1000),
            end=_dt(int(c["end"]) * 1000),
            intensity=float(c.get("intensity", 0.0)),
            variant=str(c.get("variant", ""))[:64],
            split=str(c.get("split", ""))[:16],
            context=str(c.get("context", "")),
        )
        for c in cases
        if f"{run}:{c['case_id']}" not in existing
    ]
    InjectedCase.objects.bulk_create(new, ignore_conflicts=True)
    return {"nodes": len(nodes), "instances": len(instances), "cases": len(new)}
