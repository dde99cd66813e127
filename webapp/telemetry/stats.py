"""Ingest bookkeeping kept in memory and flushed every few seconds.

Counting per request in the database would put a contended row update on the hot
path; instead each process sums here and adds its totals with one statement per row.
Totals that fail to flush (database down) stay in memory for the next try.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

log = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0


class IngestStats:
    def __init__(self):
        self.lock = threading.Lock()
        self.series_node: dict[int, int] = {}
        self.series_instance: dict[int, int] = {}
        self._reset()
        self._last_flush = time.monotonic()

    def _reset(self):
        self.sources: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.minutes: dict[tuple[datetime, str], list[int]] = defaultdict(lambda: [0, 0])
        self.nodes: set[int] = set()
        self.instances: set[int] = set()
        self.templates: dict[int, list] = {}

    def add(self, kind: str, client: str, samples=0, log_lines=0, rejected=0) -> None:
        minute = timezone.now().replace(second=0, microsecond=0)
        with self.lock:
            row = self.sources[(kind, client)]
            row[0] += samples
            row[1] += log_lines
            row[2] += rejected
            row[3] += 1
            m = self.minutes[(minute, kind)]
            m[0] += samples
            m[1] += log_lines
        self.maybe_flush()

    def touch_series(self, series_ids) -> None:
        nodes = {self.series_node.get(sid) for sid in series_ids}
        instances = {self.series_instance.get(sid) for sid in series_ids}
        nodes.discard(None)
        instances.discard(None)
        self.touch_nodes(nodes)
        self.touch_instances(instances)

    def touch_instances(self, instance_ids) -> None:
        if instance_ids:
            with self.lock:
                self.instances.update(instance_ids)

    def touch_nodes(self, node_ids) -> None:
        if node_ids:
            with self.lock:
                self.nodes.update(node_ids)

    def touch_templates(self, mined, timestamps) -> None:
        with self.lock:
            for m, ts in zip(mined, timestamps, strict=True):
                row = self.templates.get(m.template_id)
                if row is None:
                    self.templates[m.template_id] = [1, ts]
                else:
                    row[0] += 1
                    if ts > row[1]:
                        row[1] = ts

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            sources, minutes, nodes, instances, templates = (
                self.sources,
                self.minutes,
                self.nodes,
                self.instances,
                self.templates,
            )
            self._reset()
            self._last_flush = time.monotonic()
        try:
            _write(sources, minutes, nodes, instances, templates)
        except Exception:
            log.warning(
                "ingest statistics not flushed; keeping them for the next try", exc_info=True
            )
            with self.lock:
                for key, row in sources.items():
                    mine = self.sources[key]
                    for i, v in enumerate(row):
                        mine[i] += v
                for key, row in minutes.items():
                    mine = self.minutes[key]
                    mine[0] += row[0]
                    mine[1] += row[1]
                self.nodes.update(nodes)
                self.instances.update(instances)
                for key, row in templates.items():
                    self.templates.setdefault(key, [0, row[1]])[0] += row[0]


def _write(sources, minutes, nodes, instances, templates) -> None:
    from webapp.telemetry.models import IngestMinute, IngestSource, Instance, LogTemplate, Node

    now = timezone.now()
    with transaction.atomic():
        for (kind, name), (samples, logs, rejected, requests) in sources.items():
            _add(
                IngestSource,
                {"kind": kind, "name": name},
                {
                    "samples_total": samples,
                    "log_lines_total": logs,
                    "rejected_total": rejected,
                    "requests_total": requests,
                },
                last_seen=now,
            )
        for (minute, kind), (samples, logs) in minutes.items():
            _add(
                IngestMinute,
                {"minute": minute, "kind": kind},
                {"samples": samples, "log_lines": logs},
            )
        if nodes:
            Node.objects.filter(id__in=nodes).update(last_seen=now)
        if instances:
            Instance.objects.filter(id__in=instances).update(last_seen=now)
        for template_id, (count, last) in templates.items():
            LogTemplate.objects.filter(id=template_id).update(
                count=F("count") + count, last_seen=Greatest(F("last_seen"), last)
            )


def _add(model, keys: dict, increments: dict, **assign) -> None:
    """Add to counters of the row with ``keys``, creating it on first use (race-safe)."""
    changes = {field: F(field) + value for field, value in increments.items()}
    if model.objects.filter(**keys).update(**changes, **assign):
        return
    try:
        with transaction.atomic():
            model.objects.create(**keys, **increments, **assign)
    except IntegrityError:  # another process created it first
        model.objects.filter(**keys).update(**changes, **assign)


ingest_stats = IngestStats()


def epoch_minute(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms // 60000 * 60, tz=UTC)
