"""The only code that writes telemetry: decoded batches in, stored rows out.

Series, nodes and instances are resolved through per-process caches so that the steady
state of a remote_write stream is one binary COPY per request and nothing else.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.db import transaction
from django.utils import timezone

from ingest.types import LogBatch, MetricBatch, SeriesSamples
from webapp.core import selfmetrics
from webapp.telemetry import identity, services
from webapp.telemetry.logtemplates import get_miner
from webapp.telemetry.models import (
    Instance,
    LogRecord,
    LogTemplate,
    Node,
    RollupDirtyRange,
    Series,
)
from webapp.telemetry.stats import ingest_stats
from webapp.telemetry.store import get_store

log = logging.getLogger(__name__)

# Samples older than this when written may land in minutes that were already rolled up.
LATE_AFTER_MS = 90_000
# Series Telltale derives itself (anomaly scores, predicted P). Writing them says nothing
# about whether their node or instance is alive, or where it runs: counting them kept a
# stopped instance "seen" forever (it was scored, which wrote its score, which made it seen),
# and a round's node label, read before a migration, could move the instance back.
DERIVED_SOURCE = "telltale"
_CACHE_LIMIT = 2_000_000
# How long a refused move (services.record_placement) stands before it is asked again.
REFUSED_MOVE_RECHECK_S = 60.0


@dataclass(slots=True)
class WriteResult:
    accepted: int = 0  # valid items in the request
    stored: int = 0  # new rows (retried duplicates are not stored again)
    series_created: int = 0

    @property
    def duplicates(self) -> int:
        return self.accepted - self.stored


class _Registry:
    """Per-process memory of what exists in the database."""

    def __init__(self):
        self.lock = threading.Lock()
        self.series_ids: dict[tuple, int] = {}
        self.known_series: set[int] = set()
        self.node_ids: dict[str, int] = {}
        self.instance_ids: dict[str, int] = {}
        self.placement: dict[int, int] = {}  # instance id -> node id
        # (instance id, node id) -> monotonic time until which a refused move is not asked
        # again: a stale exporter sends every scrape, and each ask reads the store.
        self.refused_moves: dict[tuple[int, int], float] = {}
        self.known_templates: set[int] = set()

    def clear(self) -> None:
        with self.lock:
            self.series_ids.clear()
            self.known_series.clear()
            self.node_ids.clear()
            self.instance_ids.clear()
            self.placement.clear()
            self.refused_moves.clear()
            self.known_templates.clear()


registry = _Registry()


def forget_caches() -> None:
    """Tests and the demo reset call this after deleting rows under the writer's feet."""
    registry.clear()
    from webapp.telemetry.logtemplates import reset_miner

    reset_miner()


# --- nodes and instances -------------------------------------------------------------
def node_ids_for(names: set[str]) -> dict[str, int]:
    missing = {n for n in names if n not in registry.node_ids}
    if missing:
        existing = dict(Node.objects.filter(name__in=missing).values_list("name", "id"))
        new = missing - existing.keys()
        if new:
            Node.objects.bulk_create([Node(name=n) for n in new], ignore_conflicts=True)
            existing.update(Node.objects.filter(name__in=new).values_list("name", "id"))
        registry.node_ids.update(existing)
    return {n: registry.node_ids[n] for n in names}


def instance_ids_for(names: set[str]) -> dict[str, int]:
    missing = {n for n in names if n not in registry.instance_ids}
    if missing:
        rows = Instance.objects.filter(name__in=missing).values_list("name", "id", "node_id")
        existing = {}
        for name, pk, node_id in rows:
            existing[name] = pk
            if node_id:
                registry.placement[pk] = node_id
        new = missing - existing.keys()
        if new:
            Instance.objects.bulk_create([Instance(name=n) for n in new], ignore_conflicts=True)
            existing.update(Instance.objects.filter(name__in=new).values_list("name", "id"))
        registry.instance_ids.update(existing)
    return {n: registry.instance_ids[n] for n in names}


def _note_placements(first_seen: dict[tuple[int, int], datetime]) -> None:
    """Record each (instance, node) pair's placement at the first sample that showed it, in
    time order: a backfill or a catch-up after an outage carries a migration's before and
    after in one batch, and only time order leaves the instance on the node it moved to."""
    now = time.monotonic()
    for (instance_id, node_id), at in sorted(first_seen.items(), key=lambda item: item[1]):
        pair = (instance_id, node_id)
        if (
            registry.placement.get(instance_id) == node_id
            or registry.refused_moves.get(pair, 0.0) > now
        ):
            continue
        placed = services.record_placement(instance_id, node_id, at)
        registry.placement[instance_id] = placed
        if placed != node_id:
            registry.refused_moves[pair] = now + REFUSED_MOVE_RECHECK_S
        else:  # moved: the refusal is history (and would otherwise be kept for ever)
            registry.refused_moves.pop(pair, None)


def _earliest(pairs) -> dict[tuple[int, int], datetime]:
    """{(instance id, node id): earliest time} from (instance id, node id, epoch ms) triples."""
    first: dict[tuple[int, int], int] = {}
    for instance_id, node_id, ms in pairs:
        key = (instance_id, node_id)
        first[key] = min(first.get(key, ms), ms)
    return {key: datetime.fromtimestamp(ms / 1000, tz=UTC) for key, ms in first.items()}


# --- metrics -------------------------------------------------------------------------
def _register_series(new: list[tuple[int, SeriesSamples]]) -> int:
    rows = []
    for sid, s in new:
        labels = {k: _clean(v) for k, v in s.labels if k != "__name__"}
        rows.append((sid, s.metric, labels, *identity.target_names(labels)))
    node_map = node_ids_for({r[3] for r in rows if r[3]})
    instance_map = instance_ids_for({r[4] for r in rows if r[4]})
    _fill_attributes_from_labels(rows, node_map, instance_map)
    objects = [
        Series(
            id=sid,
            metric=metric,
            labels=labels,
            node_id=node_map.get(node) if node else None,
            instance_id=instance_map.get(vm) if vm else None,
        )
        for sid, metric, labels, node, vm in rows
    ]
    with transaction.atomic():
        before = set(
            Series.objects.filter(id__in=[o.id for o in objects]).values_list("id", flat=True)
        )
        Series.objects.bulk_create(
            [o for o in objects if o.id not in before], ignore_conflicts=True
        )
    for o in objects:
        registry.known_series.add(o.id)
        if o.node_id:
            ingest_stats.series_node[o.id] = o.node_id
        if o.instance_id:
            ingest_stats.series_instance[o.id] = o.instance_id
    return len(objects) - len(before)


def _fill_attributes_from_labels(rows, node_map, instance_map) -> None:
    """Exporters often label series with cluster, rack and workload; fill those node and
    instance attributes when they are still empty (an admin's edit is never overwritten)."""
    node_attrs: dict[int, dict[str, str]] = {}
    workloads: dict[int, str] = {}
    for _, _, labels, node, vm in rows:
        if node:
            attrs = node_attrs.setdefault(node_map[node], {})
            for field in ("cluster", "rack"):
                if labels.get(field):
                    attrs.setdefault(field, labels[field][:100])
        if vm and labels.get("workload"):
            workloads.setdefault(instance_map[vm], labels["workload"][:100])
    for node_id, attrs in node_attrs.items():
        for field, value in attrs.items():
            Node.objects.filter(pk=node_id, **{field: ""}).update(**{field: value})
    for instance_id, workload in workloads.items():
        Instance.objects.filter(pk=instance_id, workload="").update(workload=workload)


def series_ids_for(batch: MetricBatch) -> tuple[list[int], int]:
    """Ids of the batch's series (registering new ones); returns (ids, created)."""
    ids = []
    new = []
    cache = registry.series_ids
    known = registry.known_series
    for s in batch.series:
        sid = cache.get(s.labels)
        if sid is None:
            sid = identity.series_id(s.labels)
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            cache[s.labels] = sid
        if sid not in known:
            new.append((sid, s))
        ids.append(sid)
    created = 0
    if new:
        with registry.lock:
            created = _register_series(new)
    return ids, created


def _note_moves(series: list[SeriesSamples], ids: list[int]) -> None:
    """Place each instance on the node its series name, whenever that differs from where it
    is placed now (new series or not: an instance can move back to a node it ran on before)."""
    now_ms = int(time.time() * 1000)
    seen = []
    for sid, s in zip(ids, series, strict=True):
        instance_id = ingest_stats.series_instance.get(sid)
        node_id = ingest_stats.series_node.get(sid)
        if instance_id and node_id and registry.placement.get(instance_id) != node_id:
            seen.append((instance_id, node_id, min(s.timestamps_ms, default=now_ms)))
    if seen:
        _note_placements(_earliest(seen))


def write_metrics(batch: MetricBatch, *, source: str, client: str) -> WriteResult:
    result = WriteResult(accepted=batch.sample_count)
    if result.accepted:
        ids, result.series_created = series_ids_for(batch)
        lengths = [len(s.timestamps_ms) for s in batch.series]
        sids = np.repeat(np.asarray(ids, dtype=np.int64), lengths)
        ts = np.fromiter(
            (t for s in batch.series for t in s.timestamps_ms), np.int64, result.accepted
        )
        values = np.fromiter(
            (v for s in batch.series for v in s.values), np.float64, result.accepted
        )
        result.stored = write_samples(sids, ts, values)
        if source != DERIVED_SOURCE:
            ingest_stats.touch_series(ids)
            _note_moves(batch.series, ids)
    ingest_stats.add(source, client, samples=result.stored, rejected=batch.rejected_count)
    selfmetrics.INGEST_SAMPLES.labels(source).inc(result.stored)
    if batch.rejected_count:
        selfmetrics.INGEST_REJECTED.labels(source, "sample").inc(batch.rejected_count)
    return result


def write_samples(sids: np.ndarray, ts: np.ndarray, values: np.ndarray) -> int:
    """Store already-registered series' samples and note late data for the rollups."""
    if len(sids) == 0:
        return 0
    stored = get_store().write(sids, ts, values)
    oldest = int(ts.min())
    if oldest < time.time() * 1000 - LATE_AFTER_MS:
        RollupDirtyRange.objects.create(
            start=datetime.fromtimestamp(oldest / 1000, tz=UTC),
            end=datetime.fromtimestamp(int(ts.max()) / 1000 + 0.001, tz=UTC),
        )
    return stored


# --- logs ----------------------------------------------------------------------------
def write_logs(batch: LogBatch, *, source: str, client: str, batch_digest: bytes) -> WriteResult:
    entries = batch.entries
    result = WriteResult(accepted=len(entries))
    if entries:
        mined = get_miner().mine([e.message for e in entries])
        node_map = node_ids_for({e.node for e in entries if e.node})
        instance_map = instance_ids_for({e.instance for e in entries if e.instance})
        now = timezone.now()
        _note_placements(
            _earliest(
                (instance_map[e.instance], node_map[e.node], e.ts_ns // 1_000_000)
                for e in entries
                if e.node and e.instance
            )
        )
        new_templates = {}
        for m, e in zip(mined, entries, strict=True):
            if m.template_id not in registry.known_templates and m.template_id not in new_templates:
                new_templates[m.template_id] = LogTemplate(
                    id=m.template_id, template=_clean(m.template), first_seen=_ts(e.ts_ns), count=0
                )
        if new_templates:
            LogTemplate.objects.bulk_create(new_templates.values(), ignore_conflicts=True)
            registry.known_templates.update(new_templates)
        records = [
            LogRecord(
                ts=_ts(e.ts_ns),
                fingerprint=identity.log_fingerprint(batch_digest, i),
                node_id=node_map.get(e.node) if e.node else None,
                instance_id=instance_map.get(e.instance) if e.instance else None,
                severity=e.severity,
                severity_text=e.severity_text[:32],
                message=_clean(e.message),
                template_id=m.template_id,
                params=[_clean(p) for p in m.params],
                attributes={_clean(k): _clean(v) for k, v in e.attributes.items()},
                source=e.source or source,
                received_at=now,
            )
            for i, (e, m) in enumerate(zip(entries, mined, strict=True))
        ]
        result.stored = _insert_logs(records)
        ingest_stats.touch_templates(mined, [r.ts for r in records])
        ingest_stats.touch_nodes({r.node_id for r in records if r.node_id})
        ingest_stats.touch_instances({r.instance_id for r in records if r.instance_id})
    ingest_stats.add(source, client, log_lines=result.stored, rejected=batch.rejected_count)
    selfmetrics.INGEST_LOG_LINES.labels(source).inc(result.stored)
    if batch.rejected_count:
        selfmetrics.INGEST_REJECTED.labels(source, "log").inc(batch.rejected_count)
    return result


def _insert_logs(records: list[LogRecord]) -> int:
    fingerprints = [r.fingerprint for r in records]
    with transaction.atomic():
        present = set()
        for i in range(0, len(fingerprints), 5000):
            present.update(
                LogRecord.objects.filter(fingerprint__in=fingerprints[i : i + 5000]).values_list(
                    "fingerprint", flat=True
                )
            )
        fresh = [r for r in records if r.fingerprint not in present]
        LogRecord.objects.bulk_create(fresh, batch_size=1000, ignore_conflicts=True)
    return len(fresh)


def _clean(text: str) -> str:
    """PostgreSQL text and jsonb cannot hold NUL; keep the line, mark where it was."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _ts(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)
