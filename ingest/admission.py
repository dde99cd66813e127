"""Checks between decoding and the store that a pure decoder cannot make: they depend on
the store's columns. Without them a valid-looking request fails inside the database, a 5xx
that makes clients retry forever, instead of a 4xx that names the problem.

Node and VM names (from a series' ``node``/``host``/``instance``... labels, or a log line's
node and instance) become rows whose name column holds ``MAX_TARGET_NAME`` characters.
"""

from __future__ import annotations

from ingest.remote_write import short
from ingest.types import LogBatch, MetricBatch, Rejection

NUL = "\x00"


def max_target_name() -> int:
    from webapp.telemetry.models import Node

    return Node._meta.get_field("name").max_length


def drop_unstorable_series(batch: MetricBatch) -> int:
    """Move series whose node or VM name cannot be stored into one rejection; return how many.

    Only series this process has not stored before are looked at, so the steady state costs
    a dictionary lookup per series.
    """
    from webapp.telemetry.identity import target_names
    from webapp.telemetry.writer import registry

    ids_by_labels, known = registry.series_ids, registry.known_series
    limit = max_target_name()
    bad: dict[int, str] = {}
    for index, series in enumerate(batch.series):
        sid = ids_by_labels.get(series.labels)
        if sid is not None and sid in known:
            continue
        for role, name in zip(("node", "VM"), target_names(dict(series.labels)), strict=True):
            if name and len(name) > limit:
                bad[index] = f"{role} name {short(name)} is {len(name)} characters long"
                break
    if not bad:
        return 0
    refused = [batch.series[i] for i in bad]
    batch.series = [s for i, s in enumerate(batch.series) if i not in bad]
    batch.rejected.insert(
        0,
        Rejection(
            "timeseries",
            f"{len(refused)} series refused: the labels naming a node or VM (node, host, "
            f"instance, vm...) hold at most {limit} characters; first: {next(iter(bad.values()))}",
            sum(len(s.timestamps_ms) for s in refused),
        ),
    )
    return len(refused)


def drop_unstorable_log_entries(batch: LogBatch) -> int:
    """Refuse log lines whose node or instance name is too long; NUL becomes U+FFFD."""
    limit = max_target_name()
    kept, problems = [], []
    for entry in batch.entries:
        if entry.node and NUL in entry.node:
            entry.node = entry.node.replace(NUL, "\ufffd")
        if entry.instance and NUL in entry.instance:
            entry.instance = entry.instance.replace(NUL, "\ufffd")
        for role, name in (("node", entry.node), ("instance", entry.instance)):
            if name and len(name) > limit:
                problems.append(f"{role} name {short(name)} is {len(name)} characters long")
                break
        else:
            kept.append(entry)
    if not problems:
        return 0
    batch.entries = kept
    batch.rejected.insert(
        0,
        Rejection(
            "node",
            f"{len(problems)} log lines refused: node and instance names hold at most {limit} "
            f"characters; first: {problems[0]}",
            len(problems),
        ),
    )
    return len(problems)
