"""Windows of victim and neighbour metrics, from simulator chunks, exported datasets or the
plain arrays the app passes, and their encoding into model inputs.

A window is what the model sees for one victim: its own metric matrix over ``T`` steps and,
at every step, the same metrics aggregated over the instances co-located with it (mean, max
and sum: contention depends on the *total* demand on a node, which mean and max alone lose),
the number of neighbours, and the capacity of the node. Aggregation happens on raw values,
before any log transform, because demands add up in their natural units.

Encoding (``FeatureScaler``) is kept apart from window construction so that training,
evaluation and serving share one code path and the normalisation statistics are stored in
the artefact. Counters (``*_total``) become per-step increments: an absolute count is an
accident of an instance's age, its rate is a symptom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ingest.simulator import Simulator

CAPACITY_KEYS: tuple[str, ...] = ("cores", "mem_gb", "llc_mb", "membw", "net", "disk")


@dataclass(frozen=True)
class CapacityUnit:
    label: str  # what the figure is
    unit: str  # the unit people state it in
    factor: float  # stated value * factor = the model's unit (bytes/s for bandwidths, GB = 1e9)


CAPACITY_UNITS: dict[str, CapacityUnit] = {
    "cores": CapacityUnit("CPU cores", "", 1.0),
    "mem_gb": CapacityUnit("Memory", "GB", 1.0),
    "llc_mb": CapacityUnit("Last-level cache", "MB", 1.0),
    "membw": CapacityUnit("Memory bandwidth", "GB/s", 1e9),
    "net": CapacityUnit("Network", "Gbit/s", 1e9 / 8),
    "disk": CapacityUnit("Disk bandwidth", "MB/s", 1e6),
}
# (metric, capacity key) pairs whose neighbour sum divided by capacity is a resource pressure.
PRESSURE_PAIRS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("vm_memory_bandwidth_bytes_per_second",), "membw"),
    (("vm_network_receive_bytes_per_second", "vm_network_transmit_bytes_per_second"), "net"),
    (("vm_disk_read_bytes_per_second", "vm_disk_write_bytes_per_second"), "disk"),
)
TOKEN_STATS: tuple[str, ...] = (
    "v_mean", "v_std", "v_min", "v_max", "v_last", "v_delta", "v_missing",
    "nmean_mean", "nmean_max", "nmax_mean", "nmax_max", "nsum_mean", "nsum_std", "nsum_max",
)  # fmt: skip


@dataclass
class Windows:
    """Raw windows, one row per victim. NaN = missing; ``valid`` marks the victim's steps."""

    victim: np.ndarray  # float32 [N, T, M]
    valid: np.ndarray  # bool [N, T]
    nbr_mean: np.ndarray  # float32 [N, T, M]
    nbr_max: np.ndarray  # float32 [N, T, M]
    nbr_sum: np.ndarray  # float32 [N, T, M]
    nbr_count: np.ndarray  # float32 [N, T]
    capacity: np.ndarray  # float32 [N, len(CAPACITY_KEYS)]
    p: np.ndarray  # float32 [N] mean P over the valid steps; NaN when unknown (serving)
    group: np.ndarray  # int32 [N] workload group for splitting (evaluation only), -1 unknown
    start: np.ndarray  # int64 [N] first step (or timestamp) of the window

    def __len__(self) -> int:
        return len(self.p)

    def take(self, idx: np.ndarray) -> Windows:
        return Windows(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: Sequence[Windows]) -> Windows:
        return Windows(
            **{f.name: np.concatenate([getattr(w, f.name) for w in parts]) for f in fields(Windows)}
        )

    @staticmethod
    def empty(window: int, n_metrics: int) -> Windows:
        z = np.zeros((0, window, n_metrics), dtype=np.float32)
        return Windows(
            victim=z,
            valid=np.zeros((0, window), dtype=bool),
            nbr_mean=z,
            nbr_max=z,
            nbr_sum=z,
            nbr_count=np.zeros((0, window), dtype=np.float32),
            capacity=np.zeros((0, len(CAPACITY_KEYS)), dtype=np.float32),
            p=np.zeros(0, dtype=np.float32),
            group=np.zeros(0, dtype=np.int32),
            start=np.zeros(0, dtype=np.int64),
        )


def without_neighbours(w: Windows) -> np.ndarray:
    """[N] whether a window's victim had no neighbour at any of its own steps."""
    return np.where(w.valid, w.nbr_count, 0.0).max(axis=1, initial=0.0) == 0


def counters_to_increments(x: np.ndarray, counter_cols: Sequence[int]) -> np.ndarray:
    """Per-step increase of counter columns (time axis 0); resets and gaps count as 0."""
    if not len(counter_cols):
        return x
    x = x.copy()
    c = x[..., list(counter_cols)]
    inc = np.diff(c, axis=0, prepend=c[:1])
    inc = np.where(np.isnan(inc) | (inc < 0), 0.0, inc)
    x[..., list(counter_cols)] = np.where(np.isnan(c), np.nan, inc)
    return x


def counter_columns(metric_names: Sequence[str]) -> list[int]:
    return [i for i, n in enumerate(metric_names) if n.endswith("_total")]


def aggregate(nbrs: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean, max and sum over neighbours [T, K, M] present at each step [T, K]; zeros where
    no neighbour reports a metric, and the neighbour count [T]."""
    x = np.where(present[..., None], nbrs, np.nan).astype(np.float64)
    has = ~np.isnan(x)
    n = has.sum(axis=1)
    total = np.where(has, x, 0.0).sum(axis=1)
    mean = np.where(n > 0, total / np.maximum(n, 1), 0.0)
    mx = np.where(has, x, -np.inf).max(axis=1, initial=-np.inf)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    return mean, mx, total, present.sum(axis=1).astype(np.float64)


def leave_one_out(members: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, ...]:
    """For every member k of a group [T, K, M], the aggregates over the *other* members.

    Returns mean, max, sum [K, T, M] and count [K, T]. One vectorised pass instead of K
    aggregations: sums subtract the member, the max falls back to the runner-up.
    """
    x = np.where(present[..., None], members, np.nan).astype(np.float64)
    has = ~np.isnan(x)
    own = np.where(has, x, 0.0)
    n_ex = has.sum(axis=1)[:, None, :] - has  # [T, K, M]
    s_ex = np.maximum(own.sum(axis=1)[:, None, :] - own, 0.0)
    mean = np.where(n_ex > 0, s_ex / np.maximum(n_ex, 1), 0.0)
    ranked = np.where(has, x, -np.inf)
    if ranked.shape[1] > 1:
        top2 = -np.sort(-ranked, axis=1)[:, :2]  # descending along K
        first, second = top2[:, 0][:, None, :], top2[:, 1][:, None, :]
        mx = np.where(ranked >= first, second, first)
    else:
        mx = np.full_like(ranked, -np.inf)
    mx = np.where(np.isfinite(mx) & (n_ex > 0), mx, 0.0)
    count = present.sum(axis=1)[:, None] - present
    return (
        mean.transpose(1, 0, 2),
        mx.transpose(1, 0, 2),
        s_ex.transpose(1, 0, 2),
        count.T.astype(np.float64),
    )


def windows_from_placement(
    vm: np.ndarray,
    node_of: np.ndarray,
    capacity: np.ndarray,
    *,
    window: int,
    stride: int,
    min_valid: int,
    p: np.ndarray | None = None,
    group: np.ndarray | None = None,
    step0: int = 0,
    counter_cols: Sequence[int] = (),
) -> Windows:
    """Cut windows out of a fleet's history: ``vm`` [S, I, M] raw metrics, ``node_of`` [S, I]
    (-1 = not placed), ``capacity`` [N, 6] per node. Every instance that runs at least
    ``min_valid`` steps of a window on the node it ends it on becomes a victim."""
    vm = counters_to_increments(vm, counter_cols)
    S = vm.shape[0]
    parts = [
        _one_window(vm, node_of, capacity, s, s + window, min_valid, p, group, step0)
        for s in range(0, S - window + 1, stride)
    ]
    return Windows.concat(parts) if parts else Windows.empty(window, vm.shape[2])


def _one_window(
    vm: np.ndarray,
    node_of: np.ndarray,
    capacity: np.ndarray,
    s0: int,
    s1: int,
    min_valid: int,
    p: np.ndarray | None,
    group: np.ndarray | None,
    step0: int,
) -> Windows:
    x, nodes = vm[s0:s1], node_of[s0:s1]
    T, n_inst, M = x.shape
    present = (nodes >= 0) & ~np.all(np.isnan(x), axis=2)
    last = np.where(present.any(axis=0), T - 1 - np.argmax(present[::-1], axis=0), -1)
    home = np.where(last >= 0, nodes[np.maximum(last, 0), np.arange(n_inst)], -1)
    valid = present & (nodes == home[None, :])
    victims = np.flatnonzero((home >= 0) & (valid.sum(axis=0) >= min_valid))
    if not len(victims):
        return Windows.empty(T, M)
    out = {k: np.zeros((len(victims), T, M), dtype=np.float32) for k in ("mean", "max", "sum")}
    count = np.zeros((len(victims), T), dtype=np.float32)
    row_of = {int(v): r for r, v in enumerate(victims)}
    for n in np.unique(home[victims]):
        on_n = present & (nodes == n)
        members = np.flatnonzero(on_n.any(axis=0))
        mean, mx, total, cnt = leave_one_out(x[:, members], on_n[:, members])
        for k, inst in enumerate(members):
            r = row_of.get(int(inst))
            if r is None or home[inst] != n:
                continue
            out["mean"][r], out["max"][r], out["sum"][r], count[r] = (
                mean[k],
                mx[k],
                total[k],
                cnt[k],
            )
    vv = valid[:, victims].T
    target = np.full(len(victims), np.nan, dtype=np.float32)
    if p is not None:
        pv = np.where(vv, p[s0:s1, victims].T, np.nan)
        ok = ~np.all(np.isnan(pv), axis=1)
        target[ok] = np.nanmean(pv[ok], axis=1)
    return Windows(
        victim=np.where(vv[..., None], x[:, victims].transpose(1, 0, 2), np.nan).astype(np.float32),
        valid=vv,
        nbr_mean=out["mean"],
        nbr_max=out["max"],
        nbr_sum=out["sum"],
        nbr_count=count,
        capacity=capacity[home[victims]].astype(np.float32),
        p=target,
        group=(group[victims] if group is not None else np.full(len(victims), -1)).astype(np.int32),
        start=np.full(len(victims), step0 + s0, dtype=np.int64),
    )


def fleet_capacity(capacity: dict[str, np.ndarray]) -> np.ndarray:
    """[N, 6] in CAPACITY_KEYS order from ``Fleet.capacity()`` (or any dict of per-node arrays)."""
    return np.stack([np.asarray(capacity[k], dtype=float) for k in CAPACITY_KEYS], axis=1)


def windows_from_simulator(
    sim: Simulator,
    *,
    window: int,
    stride: int,
    min_valid: int | None = None,
    hours: float | None = None,
    archetypes: Sequence[int] | None = None,
) -> Windows:
    """Windows of a simulated fleet, simulated one hour block at a time (memory stays flat).

    ``archetypes`` keeps only victims of those archetypes (neighbours are always everyone);
    the archetype becomes ``group`` and is never a model input.
    """
    from ingest.simulator import VM_METRIC_NAMES

    cap = fleet_capacity(sim.fleet.capacity())
    per = sim.config.steps_per_block
    end = (
        sim.n_steps
        if hours is None
        else min(sim.n_steps, round(hours * 3600 / sim.config.step_seconds))
    )
    counters = counter_columns(VM_METRIC_NAMES)
    parts = []
    for chunk in sim.chunks(per, 0, end):
        w = windows_from_placement(
            chunk.vm,
            chunk.node_of,
            cap,
            window=window,
            stride=stride,
            min_valid=min_valid or window // 2,
            p=chunk.p,
            group=sim.fleet.inst_arch[chunk.instance_idx],
            step0=chunk.step0,
            counter_cols=counters,
        )
        if archetypes is not None:
            w = w.take(np.isin(w.group, list(archetypes)))
        parts.append(w)
    return Windows.concat(parts) if parts else Windows.empty(window, len(VM_METRIC_NAMES))


def dataset_arrays(path: str) -> dict:
    """Arrays of an export (simulator or lab) needed for windows, without logs or labels
    other than P: vm, node_of, capacity, p, group (workload ids), names."""
    import json
    from pathlib import Path

    import pandas as pd

    from ingest.simulator import GENERATIONS

    d = Path(path)
    with np.load(d / "metrics_instances.npz", allow_pickle=False) as f:
        vm, ts = f["values"], f["ts"]
        metric_names, instance_names = f["metric_names"].tolist(), f["instance_names"].tolist()
    meta = json.loads((d / "fleet.json").read_text())
    nodes = meta["fleet"]["nodes"]
    caps = []
    for node in nodes:
        if "capacity" in node:
            caps.append([float(node["capacity"][k]) for k in CAPACITY_KEYS])
        else:
            g = next(h for h in GENERATIONS if h.name == node["generation"])
            caps.append([g.cores, g.mem_gb, g.llc_mb, g.membw_gbps * 1e9, g.net_gbit * 1e9 / 8,
                         g.disk_mbps * 1e6])  # fmt: skip
    node_of = np.full(vm.shape[:2], -1, dtype=np.int32)
    for row in pd.read_csv(d / "placements.csv").itertuples():
        hit = (ts >= row.start) & (ts < row.end)
        node_of[hit, int(row.instance)] = int(row.node_index)
    with np.load(d / "labels" / "interference_p.npz", allow_pickle=False) as f:
        p = f["p"]
    workloads = [i["workload"] for i in meta["fleet"]["instances"]]
    names = sorted(set(workloads))
    return {
        "vm": vm,
        "ts": ts,
        "node_of": node_of,
        "capacity": np.array(caps, dtype=float),
        "p": p,
        "group": np.array([names.index(w) for w in workloads], dtype=np.int32),
        "group_names": names,
        "metric_names": metric_names,
        "instance_names": instance_names,
    }


def windows_from_dataset(
    path: str, *, window: int, stride: int, min_valid: int | None = None
) -> tuple[Windows, list[str]]:
    """Windows of an exported dataset (simulator export or ``interference_lab`` output) and
    the workload name of each ``group`` id."""
    a = dataset_arrays(path)
    w = windows_from_placement(
        a["vm"],
        a["node_of"],
        a["capacity"],
        window=window,
        stride=stride,
        min_valid=min_valid or window // 2,
        p=a["p"],
        group=a["group"],
        counter_cols=counter_columns(a["metric_names"]),
    )
    return w, a["group_names"]


def fit_window(matrix: np.ndarray, window: int) -> np.ndarray:
    """The last ``window`` steps of a [T, M] matrix, padded with NaN at the start."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a [time, metrics] matrix, got shape {m.shape}")
    if len(m) >= window:
        return m[-window:]
    pad = np.full((window - len(m), m.shape[1]), np.nan)
    return np.concatenate([pad, m])
