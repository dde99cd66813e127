"""Windows of recent telemetry for models: per target, a [steps, metrics] matrix on a
regular time grid, read from the store in one pass for the whole fleet."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from webapp.telemetry.models import Series
from webapp.telemetry.store import get_store


def grid(end_ms: int, steps: int, step_ms: int) -> np.ndarray:
    """Step end times, oldest first; the last one is ``end_ms`` aligned down to the step."""
    last = end_ms - end_ms % step_ms
    return last - step_ms * np.arange(steps - 1, -1, -1, dtype=np.int64)


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
    changed after a migration) gets their mean."""
    if not target_ids:
        return {}
    field = "instance_id" if level == "vm" else "node_id"
    qs = Series.objects.filter(**{f"{field}__in": target_ids, "metric__in": metric_names})
    if level != "vm":
        qs = qs.filter(instance__isnull=True)
    columns = {name: i for i, name in enumerate(metric_names)}
    owners: dict[int, tuple[int, int]] = {}
    for sid, target, metric in qs.values_list("id", field, "metric"):
        owners[sid] = (target, columns[metric])
    times = grid(end_ms, steps, step_ms)
    data = get_store().read_raw(list(owners), int(times[0]) - step_ms + 1, int(times[-1]) + 1)
    sums: dict[int, np.ndarray] = defaultdict(lambda: np.zeros((steps, len(metric_names))))
    counts: dict[int, np.ndarray] = defaultdict(lambda: np.zeros((steps, len(metric_names))))
    for sid, (ts, values) in data.items():
        target, column = owners[sid]
        idx = np.searchsorted(ts, times, side="right") - 1
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        ok &= ts[safe] > times - step_ms
        picked = np.where(ok, values[safe], np.nan)
        finite = np.isfinite(picked)
        sums[target][finite, column] += picked[finite]
        counts[target][finite, column] += 1
    out = {}
    for target in target_ids:
        with np.errstate(invalid="ignore"):
            out[target] = (
                (sums[target] / counts[target]).astype(np.float32)
                if target in sums
                else np.full((steps, len(metric_names)), np.nan, np.float32)
            )
    return out
