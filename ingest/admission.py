"""Checks between decoding and the store that a pure decoder cannot make: they depend on
the store's columns. Without them a valid-looking request fails inside the database, a 5xx
that makes clients retry forever, instead of a 4xx that names the problem.

Node and VM names (from a series' ``node``/``host``/``instance``... labels, or a log line's
node and instance) become rows whose name column holds ``MAX_TARGET_NAME`` characters.
"""

from __future__ import annotations

from ingest.remote_write import short
from ingest.types import LogBatch, MetricBatch, Rejection, SeriesSamples

NUL = "\x00"


def max_target_name() -> int:
    from webapp.telemetry.models import Node

    return Node._meta.get_field("name").max_length


def fresh_series(batch: MetricBatch) -> list[SeriesSamples]:
    """The series of ``batch`` this process has not stored before; the steady state of a
    stream has none, and everything that checks new series only looks at these."""
    from webapp.telemetry.writer import registry

    ids_by_labels, known = registry.series_ids, registry.known_series
    fresh = []
    for series in batch.series:
        sid = ids_by_labels.get(series.labels)
        if sid is None or sid not in known:
            fresh.append(series)
    return fresh


def drop_unstorable_series(batch: MetricBatch, fresh: list[SeriesSamples]) -> list[SeriesSamples]:
    """Move series whose node or VM name cannot be stored into one rejection.

    Only ``fresh`` series are looked at (the others were stored before, names and all);
    returns those of them that stay.
    """
    from webapp.telemetry.identity import target_names

    limit = max_target_name()
    bad: dict[int, str] = {}
    for series in fresh:
        for role, name in zip(("node", "VM"), target_names(dict(series.labels)), strict=True):
            if name and len(name) > limit:
                bad[id(series)] = f"{role} name {short(name)} is {len(name)} characters long"
                break
    if not bad:
        return fresh
    refused = [s for s in batch.series if id(s) in bad]
    batch.series = [s for s in batch.series if id(s) not in bad]
    batch.rejected.insert(
        0,
        Rejection(
            "timeseries",
            f"{len(refused)} series refused: the labels naming a node or VM (node, host, "
            f"instance, vm...) hold at most {limit} characters; first: {next(iter(bad.values()))}",
            sum(len(s.timestamps_ms) for s in refused),
        ),
    )
    return [s for s in fresh if id(s) not in bad]


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
