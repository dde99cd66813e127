"""Windows of recent telemetry for models: per target, a [steps, metrics] matrix on a
regular time grid, read from the store in one pass for the whole fleet."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from webapp.telemetry import derived
from webapp.telemetry.models import Series
from webapp.telemetry.store import get_store


def grid(end_ms: int, steps: int, step_ms: int) -> np.ndarray:
    """Step end times, oldest first; the last one is ``end_ms`` aligned down to the step."""
    last = end_ms - end_ms % step_ms
    return last - step_ms * np.arange(steps - 1, -1, -1, dtype=np.int64)


def _model_series(level: str, target_ids: list[int], metric_names, derivations):
    """The targets' series of the models' metrics and of what derives them: an instance's
    own, or a node's that belong to no instance."""
    field = "instance_id" if level == "vm" else "node_id"
    qs = Series.objects.filter(
        **{f"{field}__in": target_ids},
        metric__in=[*metric_names, *derived.source_metrics(derivations)],
    )
    return qs if level == "vm" else qs.filter(instance__isnull=True)


def metric_windows(
    level: str,
    target_ids: list[int],
    metric_names: list[str],
    end_ms: int,
    steps: int,
    step_ms: int,
) -> dict[int, np.ndarray]:
    """{target id: float32 [steps, len(metric_names)]} for instances (``level="vm"``) or
    nodes (``"host"``). At each grid time the newest sample of the previous step is used;
    NaN where none. A target with several series of one metric (e.g. its node label
    changed after a migration) gets their mean. A metric the target does not send under the
    model's name is derived from the exporter series it does send, where it can be."""
    if not target_ids:
        return {}
    field = "instance_id" if level == "vm" else "node_id"
    derivations = derived.derivations_for(metric_names)
    qs = _model_series(level, target_ids, metric_names, derivations)
    columns = {name: i for i, name in enumerate(metric_names)}
    owners: dict[int, tuple[int, int]] = {}
    sources: dict[int, tuple[int, str, dict]] = {}
    wanted = derived.sources_by_metric(derivations)
    mountpoints: dict[int, str] = {}
    for sid, target, metric, labels in qs.values_list("id", field, "metric", "labels"):
        if metric in columns:
            owners[sid] = (target, columns[metric])
            if "mountpoint" in (labels or {}):
                mountpoints[sid] = labels["mountpoint"]
        elif any(source.matches(labels or {}) for source in wanted[metric]):
            # Only the series a derivation reads: node_exporter's five CPU modes it
            # does not need are most of a node's samples.
            sources[sid] = (target, metric, labels or {})
    # The agent reports a filesystem metric per mountpoint; the models' one is the root
    # filesystem's where there is one, not the mean over /boot, /home and the rest.
    with_root = {owners[sid] for sid, mount in mountpoints.items() if mount == "/"}
    owners = {
        sid: owner
        for sid, owner in owners.items()
        if owner not in with_root or mountpoints.get(sid) == "/"
    }
    times = grid(end_ms, steps, step_ms)
    start_ms = int(times[0]) - step_ms + 1
    data = get_store().read_raw(list(owners), start_ms, int(times[-1]) + 1)
    shape = (steps, len(metric_names))
    sums: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(shape))
    counts: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(shape))
    for sid, (ts, values) in data.items():
        target, column = owners[sid]
        picked = derived.newest_in_step(ts, values, times, step_ms)
        finite = np.isfinite(picked)
        sums[target][finite, column] += picked[finite]
        counts[target][finite, column] += 1
    out = {}
    for target in target_ids:
        with np.errstate(invalid="ignore"):
            out[target] = (
                (sums[target] / counts[target]).astype(np.float32)
                if target in sums
                else np.full(shape, np.nan, np.float32)
            )
    stated = set(owners.values())
    _fill_derived(out, sources, stated, derivations, columns, times, step_ms)
    return out


def _fill_derived(out, sources, stated, derivations, columns, times, step_ms) -> None:
    """Fill each target's metrics that it does not state from the exporters' series it
    sends (``webapp.telemetry.derived``): the first derivation that gives a value."""
    if not sources:
        return
    data = get_store().read_raw(
        list(sources),
        int(times[0]) - step_ms + 1 - derived.RATE_LOOKBACK_MS,
        int(times[-1]) + 1,
    )
    by_target: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for sid, (ts, values) in data.items():
        target, metric, labels = sources[sid]
        by_target[target][metric].append((labels, ts, values))
    for target, series in by_target.items():
        for metric, candidates in derivations.items():
            column = columns[metric]
            if (target, column) not in stated and (
                found := derived.first_derived(candidates, series, times, step_ms)
            ):
                out[target][:, column] = found[1].astype(np.float32)


@dataclass(frozen=True)
class ModelInput:
    metric: str
    source: str  # "stated" (sent under the model's name) | "derived" | "missing"
    origin: str = ""  # for a derived one: what its series come from
    reads: tuple[str, ...] = ()  # for a derived one: the metrics of the series it reads


def model_inputs(
    level: str, target_id: int, metric_names: list[str] | None = None
) -> list[ModelInput]:
    """How a target provides each metric the models read (by default the catalogue they are
    trained on): as stated, derived from exporter series it sends (the first derivation
    whose series all exist; ``metric_windows`` also needs their samples), or not at all.
    Reads series, not samples."""
    if metric_names is None:
        from ingest.simulator import HOST_METRIC_NAMES, VM_METRIC_NAMES

        metric_names = list(VM_METRIC_NAMES if level == "vm" else HOST_METRIC_NAMES)
    derivations = derived.derivations_for(metric_names)
    qs = _model_series(level, [target_id], metric_names, derivations)
    sent: dict[str, list[dict]] = defaultdict(list)
    for metric, labels in qs.values_list("metric", "labels"):
        sent[metric].append(labels or {})
    out = []
    for metric in metric_names:
        if metric in sent:
            out.append(ModelInput(metric, "stated"))
            continue
        usable = next(
            (
                d
                for d in derivations.get(metric, ())
                if all(any(s.matches(labels) for labels in sent[s.metric]) for s in d.sources)
            ),
            None,
        )
        out.append(
            ModelInput(
                metric,
                "derived",
                usable.origin,
                tuple(dict.fromkeys(s.metric for s in usable.sources)),
            )
            if usable
            else ModelInput(metric, "missing")
        )
    return out
