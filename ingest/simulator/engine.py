"""One hour of simulated time: load, contention, metrics, scenario effects, masks and logs.

Everything here is vectorised over steps and instances. Random numbers are drawn per hour
block from streams keyed by the block index, so a block is the same whichever order blocks
are computed in; autocorrelated noise warms up on the previous block's last innovations so
it runs on smoothly across block boundaries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import lfilter

from ingest.simulator.catalogue import CATALOGUE
from ingest.simulator.config import SECONDS_PER_DAY, rng_for
from ingest.simulator.fleet import GB
from ingest.simulator.inject import apply_effect, shape
from ingest.simulator.interference import P_NOISE_SD, contention, degradation, demand_units
from ingest.simulator.logs import LogEvents, background_logs
from ingest.simulator.metrics import (
    DEMAND_METRICS,
    HOST_INDEX,
    HOST_METRIC_NAMES,
    SERVICE_ONLY,
    VM_INDEX,
    VM_METRIC_NAMES,
)
from ingest.simulator.scenarios import Case
from ingest.simulator.workloads import MB, apply_bursts, burst_events, deterministic_load

if TYPE_CHECKING:
    from ingest.simulator.simulator import Simulator

AR_PHI = np.array([0.98, 0.95, 0.9])  # load wander, P noise, instruction-mix drift
CPU_GHZ = 2.5e9
RATIO_METRICS = [n for n in VM_METRIC_NAMES if n.endswith("_ratio")]
HOST_RATIO_METRICS = [n for n in HOST_METRIC_NAMES if n.endswith("_ratio")]


@dataclass
class Block:
    step0: int
    inst_ids: np.ndarray
    node_of: np.ndarray  # [S, I]
    vm: np.ndarray  # float32 [S, I, M]
    host: np.ndarray  # float32 [S, N, H]
    p: np.ndarray  # float32 [S, I]
    vm_mask: np.ndarray  # uint64 [S, I]
    host_mask: np.ndarray  # uint64 [S, N]
    logs: LogEvents


def _ar_innovations(
    sim: Simulator, b: int, inst_ids: np.ndarray, steps: int
) -> tuple[np.ndarray, int]:
    """This block's innovations, preceded by the previous block's tail for warm-up."""
    seed, warm = sim.config.seed, sim.warmup_steps
    w = min(warm, steps)
    body = rng_for(seed, "ar-body", b).standard_normal((steps - w, len(inst_ids), 3))
    tail = rng_for(seed, "ar-tail", b).standard_normal((w, len(inst_ids), 3))
    prev_ids = sim.block_instances(b - 1) if b > 0 else inst_ids
    prev_w = min(warm, sim.block_steps(b - 1)) if b > 0 else warm
    prev_tail = rng_for(seed, "ar-tail", b - 1).standard_normal((prev_w, len(prev_ids), 3))
    mapped = np.zeros((prev_w, len(inst_ids), 3))
    pos = np.searchsorted(prev_ids, inst_ids)
    ok = (pos < len(prev_ids)) & (prev_ids[np.minimum(pos, len(prev_ids) - 1)] == inst_ids)
    mapped[:, ok] = prev_tail[:, pos[ok]]
    return np.concatenate([mapped, body, tail]), prev_w


def _ar_noise(sim: Simulator, b: int, inst_ids: np.ndarray, steps: int) -> np.ndarray:
    x, skip = _ar_innovations(sim, b, inst_ids, steps)
    out = np.empty_like(x)
    for k, phi in enumerate(AR_PHI):
        out[..., k] = lfilter([np.sqrt(1 - phi**2)], [1, -phi], x[..., k], axis=0)
    return out[skip:]


def _case_rows(
    case: Case, sim: Simulator, s0: int, s1: int, persist: bool
) -> tuple[slice, np.ndarray, np.ndarray]:
    """Rows of this block a case touches, its shape position u and elapsed minutes per row."""
    c0, c1 = sim.case_steps(case)
    lo, hi = max(c0, s0), (s1 if persist else min(c1, s1))
    steps = np.arange(lo, hi)
    u = np.clip((steps - c0) / max(c1 - c0, 1), 0.0, 0.999)
    minutes = (np.minimum(steps, c1) - c0) * sim.config.step_seconds / 60.0
    return slice(lo - s0, hi - s0), u, minutes


def _apply(
    sim: Simulator,
    s0: int,
    s1: int,
    inst_ids: np.ndarray,
    node_of: np.ndarray,
    vm: dict[str, np.ndarray],
    host: dict[str, np.ndarray] | None,
    stage: str,
) -> None:
    """Apply the effects of every case touching this block for one stage.

    ``demand`` changes what instances consume (and so their neighbours' contention),
    ``observed`` changes instance metrics after contention, ``host`` node metrics.
    """
    for case in sim.cases_touching(s0, s1):
        spec = CATALOGUE.get(case.scenario)
        for effect in spec.effects:
            counter = effect.op in ("count", "bump")
            is_host_metric = effect.metric.startswith("host_")
            if stage == "host" and not is_host_metric:
                continue
            if stage != "host" and (
                is_host_metric or (effect.metric in DEMAND_METRICS) != (stage == "demand")
            ):
                continue
            rows, u, minutes = _case_rows(case, sim, s0, s1, persist=counter)
            if rows.stop <= rows.start:
                continue
            s = shape(effect.shape, u)
            if stage == "host":
                assert host is not None
                x = host[effect.metric]
                x[rows, case.node] = apply_effect(
                    x[rows, case.node], effect, case.intensity, s, minutes
                )
                continue
            x = vm[effect.metric]
            if effect.where == "vms":
                cells = node_of[rows] == case.node
                new = apply_effect(x[rows], effect, case.intensity, s, minutes)
                x[rows] = np.where(cells, new, x[rows])
                continue
            col = np.searchsorted(inst_ids, case.instance)
            if col < len(inst_ids) and inst_ids[col] == case.instance:
                x[rows, col] = apply_effect(x[rows, col], effect, case.intensity, s, minutes)


@dataclass
class _Ctx:
    """Everything one block's computations share."""

    sim: Simulator
    b: int
    s0: int
    s1: int
    ts: np.ndarray  # float epoch seconds [S]
    inst_ids: np.ndarray
    node_of: np.ndarray
    node_safe: np.ndarray  # node_of with -1 replaced by 0, for indexing
    running: np.ndarray  # placed on a node that is up
    down: np.ndarray  # [S, N]
    rows: np.ndarray  # [S, 1] step index for broadcasting
    a: np.ndarray  # archetype per column
    v: np.ndarray  # vCPUs per column
    scale: np.ndarray
    ar: np.ndarray  # [S, I, 3] autocorrelated noise
    load: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def shape(self) -> tuple[int, int]:
        return self.s1 - self.s0, len(self.inst_ids)


def _context(sim: Simulator, b: int) -> _Ctx:
    cfg, fleet = sim.config, sim.fleet
    s0 = b * cfg.steps_per_block
    s1 = s0 + sim.block_steps(b)
    ts = float(cfg.start or 0) + cfg.step_seconds * np.arange(s0, s1, dtype=np.float64)
    inst_ids, node_of = sim.placements.block(s0, s1)
    down = sim.placements.node_down(s0, s1, fleet.n_nodes)
    rows = np.arange(s1 - s0)[:, None]
    node_safe = np.maximum(node_of, 0)
    return _Ctx(
        sim=sim,
        b=b,
        s0=s0,
        s1=s1,
        ts=ts,
        inst_ids=inst_ids,
        node_of=node_of,
        node_safe=node_safe,
        running=(node_of >= 0) & ~down[rows, node_safe],
        down=down,
        rows=rows,
        a=fleet.inst_arch[inst_ids],
        v=fleet.inst_vcpus[inst_ids].astype(float),
        scale=fleet.inst_scale[inst_ids],
        ar=_ar_noise(sim, b, inst_ids, s1 - s0),
    )


def _load(ctx: _Ctx) -> np.ndarray:
    """Calendar pattern, random bursts (this block's and the previous one's) and wander."""
    sim, cfg, fleet = ctx.sim, ctx.sim.config, ctx.sim.fleet
    tz = fleet.cluster_tz_hours[fleet.inst_cluster[ctx.inst_ids]]
    load = deterministic_load(fleet.load, ctx.inst_ids, ctx.ts, float(cfg.start or 0), tz)
    per = cfg.steps_per_block
    for bb in (ctx.b - 1, ctx.b):
        if bb >= 0:
            rng = rng_for(cfg.seed, "bursts", bb)
            ids = sim.block_instances(bb)
            bursts = burst_events(rng, fleet.load, ids, bb * per, per, cfg.step_seconds)
            apply_bursts(load, ctx.inst_ids, ctx.s0, bursts)
    return np.clip(load * np.exp(0.08 * ctx.ar[..., 0] - 0.0032), 0.02, 3.0)


def _demand(ctx: _Ctx) -> dict[str, np.ndarray]:
    """What each instance asks of the shared resources at nominal efficiency."""
    t, a, load = ctx.sim.table, ctx.a, ctx.load
    vs = ctx.v * ctx.scale
    return {
        "vm_cpu_utilization_ratio": np.minimum(t["cpu_base"][a] * load * np.sqrt(ctx.scale), 0.98),
        "vm_memory_bandwidth_bytes_per_second": t["membw_gbps_per_vcpu"][a] * GB * vs * load,
        "vm_network_receive_bytes_per_second": t["net_rx_mbps_per_vcpu"][a] * MB * vs * load,
        "vm_network_transmit_bytes_per_second": t["net_tx_mbps_per_vcpu"][a] * MB * vs * load,
        "vm_disk_read_bytes_per_second": t["disk_read_mbps_per_vcpu"][a] * MB * vs * load**0.7,
        "vm_disk_write_bytes_per_second": t["disk_write_mbps_per_vcpu"][a] * MB * vs * load**0.7,
    }


@dataclass
class _Contention:
    totals: np.ndarray  # [S, N, 5] node demand
    c: np.ndarray  # [S, I, 5] contention on each resource
    d: np.ndarray  # [S, I, 5] performance loss on each resource
    p_clean: np.ndarray
    p: np.ndarray


def _contend(ctx: _Ctx, vm: dict[str, np.ndarray]) -> _Contention:
    sim = ctx.sim
    S, N = ctx.s1 - ctx.s0, sim.fleet.n_nodes
    cpu_frac = np.clip(vm["vm_cpu_utilization_ratio"], 0.0, 1.0)
    net = vm["vm_network_receive_bytes_per_second"] + vm["vm_network_transmit_bytes_per_second"]
    disk = vm["vm_disk_read_bytes_per_second"] + vm["vm_disk_write_bytes_per_second"]
    membw = vm["vm_memory_bandwidth_bytes_per_second"]
    dem = demand_units(ctx.a, ctx.v, cpu_frac, ctx.load, membw, net, disk)
    dem = np.where(ctx.running[..., None], dem, 0.0)
    # Summed per (step, node) in instance order, so the result never depends on chunking.
    flat = (ctx.rows * N + ctx.node_safe)[ctx.running]
    totals = np.stack(
        [
            np.bincount(flat, weights=dem[..., r][ctx.running], minlength=S * N).reshape(S, N)
            for r in range(5)
        ],
        axis=-1,
    )
    pressure = (totals[ctx.rows, ctx.node_safe] - dem) / sim.capacity5[ctx.node_safe]
    sens = sim.table["sensitivity"][ctx.a][None, :, :]
    d = degradation(sens, pressure, np.clip(ctx.load, 0.0, 1.0))
    p_clean = np.exp(-(d.sum(axis=-1) + 0.8 * d[..., 1] * d[..., 2]))
    noise = np.exp(P_NOISE_SD * ctx.ar[..., 1] - P_NOISE_SD**2 / 2)
    p = np.clip(p_clean * noise, 0.0, 1.0)
    return _Contention(totals, contention(pressure), d, p_clean, p)


def _observed(ctx: _Ctx, vm: dict[str, np.ndarray], k: _Contention) -> dict[str, np.ndarray]:
    """What the exporters report: demand as served under contention, plus measurement noise."""
    sim, fleet, t = ctx.sim, ctx.sim.fleet, ctx.sim.table
    a, v, load, ids = ctx.a, ctx.v, ctx.load, ctx.inst_ids
    S, I = ctx.shape  # noqa: E741
    w = rng_for(sim.config.seed, "white", ctx.b).standard_normal(
        (S, I, len(VM_METRIC_NAMES)), dtype=np.float32
    )

    def noisy(x: np.ndarray, metric: str, sd: float) -> np.ndarray:
        return x * (1 + sd * w[..., VM_INDEX[metric]])

    c, d, p = k.c, k.d, k.p
    sens = t["sensitivity"][a][None, :, :]
    cap = sim.capacity5[ctx.node_safe]
    node_cpu = k.totals[..., 0] / sim.capacity5[None, :, 0]
    # Steal appears as busy vCPUs outnumber free cores; a gentler knee than performance loss.
    steal = 0.15 * node_cpu**4 / (0.6**4 + node_cpu**4)
    disk_r, disk_w = vm["vm_disk_read_bytes_per_second"], vm["vm_disk_write_bytes_per_second"]
    disk_busy = np.minimum((disk_r + disk_w) / (cap[..., 4] * 0.2), 1.0)
    days = (ctx.ts[:, None] - float(sim.config.start or 0)) / SECONDS_PER_DAY
    used0 = fleet.inst_disk_base[ids]
    growth = np.maximum(fleet.inst_disk_growth[ids], 1e-4)
    prune_days = (0.85 - used0) / growth  # someone prunes old data when the disk gets full
    vs = v * ctx.scale
    rho = np.clip(0.55 * load, 0.0, 0.92)
    lat_alone = t["latency_s"][a] * (1 + 0.5 * rho / (1 - rho))
    rps_demand = t["rps_per_vcpu"][a] * vs * load
    rps_capacity = t["rps_per_vcpu"][a] * vs * 1.6 * p
    overload = np.maximum(rps_demand / np.maximum(rps_capacity, 1e-9) - 1, 0)
    # The same work takes more cycles when stalled on shared resources.
    cpu = vm["vm_cpu_utilization_ratio"] / k.p_clean**0.3
    cpu = np.clip(noisy(cpu, "vm_cpu_utilization_ratio", 0.03), 0, 1)
    ipc = t["ipc"][a] * sim.ipc_factor[ctx.node_safe]
    ipc = ipc * np.exp(-1.2 * (d[..., 1] + d[..., 2]) - 0.1 * d[..., 0])
    ipc = ipc * (1 - 0.1 * np.minimum(load, 1.5)) * (1 + 0.05 * ctx.ar[..., 2])
    net_keep = 1 - 0.3 * c[..., 3] * sens[..., 3]
    rx = vm["vm_network_receive_bytes_per_second"] * net_keep
    rx = noisy(rx, "vm_network_receive_bytes_per_second", 0.05)
    tx = vm["vm_network_transmit_bytes_per_second"] * net_keep
    tx = noisy(tx, "vm_network_transmit_bytes_per_second", 0.05)
    tx = tx + 2e3  # every guest chats a little
    # Cache misses spill into DRAM traffic; bandwidth contention throttles it.
    membw = (
        vm["vm_memory_bandwidth_bytes_per_second"] * (1 - 0.3 * c[..., 2]) * (1 + 0.3 * c[..., 1])
    )
    misses = cpu * v * CPU_GHZ * ipc * t["mpki"][a] / 1000 * (1 + 2.0 * c[..., 1])
    mem = fleet.inst_mem_util[ids] * (0.92 + 0.08 * np.minimum(load, 1.5))
    fds = t["fds"][a] * (0.5 + 0.5 * np.minimum(load, 2.0)) * np.sqrt(ctx.scale)
    err_noise = 1 + 0.2 * np.abs(w[..., VM_INDEX["vm_request_errors_per_second"]])
    disk_keep = 1 - 0.4 * c[..., 4]  # a contended disk serves less than asked
    disk_r, disk_w = disk_r * disk_keep, disk_w * disk_keep
    membw = noisy(membw, "vm_memory_bandwidth_bytes_per_second", 0.05)
    retrans = (rx + tx) / 1448 * (2e-4 + 0.01 * c[..., 3])
    served = np.minimum(rps_demand, rps_capacity)
    return {
        "vm_cpu_utilization_ratio": cpu,
        "vm_cpu_steal_ratio": steal[ctx.rows, ctx.node_safe] * (1 + 0.3 * w[..., 1]) + 0.002,
        "vm_cpu_iowait_ratio": 0.005
        + 0.05 * disk_busy
        + 0.25 * c[..., 4] * sens[..., 4]
        + 0.004 * np.abs(w[..., 2]),
        "vm_memory_utilization_ratio": noisy(mem, "vm_memory_utilization_ratio", 0.01),
        "vm_swap_used_bytes": np.broadcast_to(fleet.inst_swap0[ids], (S, I)).copy(),
        "vm_disk_read_bytes_per_second": noisy(disk_r, "vm_disk_read_bytes_per_second", 0.1),
        "vm_disk_write_bytes_per_second": noisy(disk_w, "vm_disk_write_bytes_per_second", 0.1),
        "vm_disk_used_ratio": used0
        + growth * (days % prune_days)
        + 0.0005 * w[..., VM_INDEX["vm_disk_used_ratio"]],
        "vm_network_receive_bytes_per_second": rx,
        "vm_network_transmit_bytes_per_second": tx,
        "vm_tcp_retransmits_per_second": noisy(retrans, "vm_tcp_retransmits_per_second", 0.2),
        "vm_ipc": ipc * (1 + 0.02 * w[..., VM_INDEX["vm_ipc"]]),
        "vm_llc_misses_per_second": noisy(misses, "vm_llc_misses_per_second", 0.05),
        "vm_memory_bandwidth_bytes_per_second": membw,
        "vm_request_latency_seconds": noisy(lat_alone / p, "vm_request_latency_seconds", 0.08),
        "vm_requests_per_second": noisy(served, "vm_requests_per_second", 0.04),
        "vm_request_errors_per_second": rps_demand * (0.001 + 0.02 * overload) * err_noise,
        "vm_open_fds": np.round(fds + 20 * w[..., VM_INDEX["vm_open_fds"]]),
        "vm_process_restarts_total": np.broadcast_to(fleet.inst_restarts0[ids], (S, I)).copy(),
    }


def compute_block(sim: Simulator, b: int) -> Block:
    ctx = _context(sim, b)
    ctx.load = _load(ctx)
    s0, s1, inst_ids, node_of = ctx.s0, ctx.s1, ctx.inst_ids, ctx.node_of
    vm = _demand(ctx)
    _apply(sim, s0, s1, inst_ids, node_of, vm, None, "demand")
    contended = _contend(ctx, vm)
    vm = _observed(ctx, vm, contended)
    _apply(sim, s0, s1, inst_ids, node_of, vm, None, "observed")
    serves = sim.table["serves"][ctx.a]
    for name in VM_METRIC_NAMES:
        vm[name] = np.clip(vm[name], 0.0, 1.0 if name in RATIO_METRICS else np.inf)
        if name in SERVICE_ONLY:
            vm[name] = np.where(serves, vm[name], np.nan)  # batch jobs export no such series

    host = _host_metrics(ctx, vm)
    _apply(sim, s0, s1, inst_ids, node_of, vm, host, "host")
    blank = ctx.down.copy()
    for case in sim.cases_touching(s0, s1):
        if CATALOGUE.get(case.scenario).blank_host:
            r, _, _ = _case_rows(case, sim, s0, s1, persist=False)
            blank[r, case.node] = True
    for name in HOST_RATIO_METRICS:
        host[name] = np.clip(host[name], 0.0, 1.0)
    host["host_agent_up"] = np.where(ctx.down | (host["host_agent_up"] < 0.5), 0.0, 1.0)
    host_arr = np.stack([host[n] for n in HOST_METRIC_NAMES], axis=-1)
    up_col = HOST_INDEX["host_agent_up"]
    agent = host_arr[..., up_col].copy()
    host_arr[blank] = np.nan  # nobody reports for a node that is down or has no agent
    host_arr[..., up_col] = agent  # ... except the scraper's own "up"

    vm_arr = np.stack([vm[n] for n in VM_METRIC_NAMES], axis=-1)
    vm_arr[~ctx.running] = np.nan
    p = np.where(ctx.running, contended.p, np.nan)
    vm_mask, host_mask = _masks(sim, s0, s1, inst_ids, sim.fleet.n_nodes)

    # Degraded instances print more warnings (slow queries, timeouts): the log-side symptom.
    rho = np.clip(0.55 * ctx.load, 0.0, 0.92)
    lat_alone = sim.table["latency_s"][ctx.a] * (1 + 0.5 * rho / (1 - rho))
    lat_ratio = np.nan_to_num(vm["vm_request_latency_seconds"] / lat_alone, nan=1.0)
    stress = 1 + 5 * (1 - np.nan_to_num(p, nan=1.0)) + np.clip(lat_ratio - 1, 0, 6)
    cfg = sim.config
    logs = background_logs(
        rng_for(cfg.seed, "logs", b),
        ctx.ts,
        cfg.step_seconds,
        inst_ids,
        ctx.a,
        node_of,
        ctx.running,
        ctx.load,
        stress,
        ~ctx.down,
        cfg.log_rate_scale,
    )
    scen = _scenario_logs(sim, s0, s1, inst_ids, node_of, vm_arr, host_arr)
    return Block(
        step0=s0,
        inst_ids=inst_ids.astype(np.int32),
        node_of=node_of,
        vm=vm_arr.astype(np.float32),
        host=host_arr.astype(np.float32),
        p=p.astype(np.float32),
        vm_mask=vm_mask,
        host_mask=host_mask,
        logs=LogEvents.concat([logs, scen]).sorted(),
    )


def counterfactual_p(
    sim: Simulator, b: int, placements: Sequence[Mapping[int, int]]
) -> list[np.ndarray]:
    """P [S, I] of block ``b`` (columns in ``Block.inst_ids`` order) under other placements.

    Each mapping moves instance ids to node indices for the block's steps where the instance
    runs; everything else is as simulated: the same loads and bursts, the same scenario
    effects on demand, the same P noise. With an empty mapping the result equals the block's
    own ``p``. What-if evaluations compare a model's answer with it.
    """
    ctx = _context(sim, b)
    ctx.load = _load(ctx)
    vm = _demand(ctx)
    _apply(sim, ctx.s0, ctx.s1, ctx.inst_ids, ctx.node_of, vm, None, "demand")
    col = {int(i): k for k, i in enumerate(ctx.inst_ids)}
    out = []
    for moves in placements:
        unknown = sorted(set(moves) - set(col))
        if unknown:
            raise ValueError(f"instances {unknown} do not run in block {b}")
        node_of = ctx.node_of.copy()
        for inst, node in moves.items():
            if not 0 <= node < sim.fleet.n_nodes:
                raise ValueError(f"no node {node} in a fleet of {sim.fleet.n_nodes}")
            k = col[int(inst)]
            node_of[:, k] = np.where(node_of[:, k] >= 0, node, -1)
        node_safe = np.maximum(node_of, 0)
        running = (node_of >= 0) & ~ctx.down[ctx.rows, node_safe]
        moved = replace(ctx, node_of=node_of, node_safe=node_safe, running=running)
        out.append(np.where(running, _contend(moved, vm).p, np.nan).astype(np.float32))
    return out


def _host_metrics(ctx: _Ctx, vm: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Node exporters' view: sums over the node's running instances plus the host's own."""
    sim, fleet, cfg = ctx.sim, ctx.sim.fleet, ctx.sim.config
    S, N = ctx.s1 - ctx.s0, fleet.n_nodes
    flat = (ctx.rows * N + ctx.node_safe)[ctx.running]
    v, b, s0, s1, ts, load = ctx.v, ctx.b, ctx.s0, ctx.s1, ctx.ts, ctx.load
    inst_ids, running = ctx.inst_ids, ctx.running

    def agg(x: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=np.nan_to_num(x)[running], minlength=S * N).reshape(S, N)

    w = rng_for(cfg.seed, "host-white", b).standard_normal((S, N, len(HOST_METRIC_NAMES)))
    cap = sim.capacity
    count = np.maximum(agg(np.ones_like(load)), 1.0)
    busy = agg(vm["vm_cpu_utilization_ratio"] * v)
    host_cpu = np.clip((busy + 0.03 * cap["cores"]) / cap["cores"], 0, 1) * (1 + 0.01 * w[..., 0])
    read = agg(vm["vm_disk_read_bytes_per_second"])
    write = agg(vm["vm_disk_write_bytes_per_second"])
    resident = agg(vm["vm_memory_utilization_ratio"] * fleet.inst_mem_gb[inst_ids])
    days = (ts - float(cfg.start or 0)) / SECONDS_PER_DAY
    blocked = agg(vm["vm_cpu_iowait_ratio"] * v)
    net_rx = agg(vm["vm_network_receive_bytes_per_second"])
    net_tx = agg(vm["vm_network_transmit_bytes_per_second"])
    ambient = fleet.rack_ambient_c[fleet.node_rack][None, :] + 3.0 * (fleet.node_gen == 0)
    dynamic = (cap["max_watts"] - cap["idle_watts"]) * np.clip(host_cpu, 0, 1) ** 0.8
    return {
        "host_cpu_utilization_ratio": host_cpu,
        "host_cpu_steal_ratio": agg(vm["vm_cpu_steal_ratio"]) / count,
        "host_memory_utilization_ratio": (resident + 0.06 * cap["mem_gb"]) / cap["mem_gb"],
        # Load average counts runnable and uninterruptible (I/O-waiting) tasks.
        "host_load1": np.maximum(busy + blocked + 0.5 + 0.3 * w[..., 3], 0),
        "host_disk_read_bytes_per_second": read + 2e4,
        "host_disk_write_bytes_per_second": write + 1.5e5 * (1 + 0.2 * np.abs(w[..., 5])),
        "host_disk_io_utilization_ratio": 1
        - np.exp(-1.6 * (read + write) / cap["disk"])
        + 0.01 * np.abs(w[..., 6]),
        "host_filesystem_utilization_ratio": fleet.node_fs_base[None, :]
        + 0.003 * (days[:, None] % 60)
        + 0.0005 * w[..., 7],
        "host_network_receive_bytes_per_second": net_rx + 5e4,
        "host_network_transmit_bytes_per_second": net_tx + 8e4,
        "host_ecc_errors_total": sim.counter_background("ecc", s0, s1),
        "host_disk_smart_errors_total": sim.counter_background("smart", s0, s1),
        "host_nic_link_flaps_total": sim.counter_background("flaps", s0, s1),
        "host_temperature_celsius": ambient + 30 * host_cpu + 0.5 * w[..., 13],
        "host_clock_offset_seconds": 0.0005 * w[..., 14],
        "host_power_watts": cap["idle_watts"] + dynamic * (1 + 0.01 * w[..., 15]),
        "host_agent_up": np.ones((S, N)),
    }


def _masks(
    sim: Simulator, s0: int, s1: int, inst_ids: np.ndarray, n_nodes: int
) -> tuple[np.ndarray, np.ndarray]:
    S = s1 - s0
    vm_mask = np.zeros((S, len(inst_ids)), dtype=np.uint64)
    host_mask = np.zeros((S, n_nodes), dtype=np.uint64)
    for case in sim.cases_touching(s0, s1):
        bit = np.uint64(1) << np.uint64(CATALOGUE.index(case.scenario))
        rows, _, _ = _case_rows(case, sim, s0, s1, persist=False)
        if case.level == "host":
            host_mask[rows, case.node] |= bit
            continue
        col = np.searchsorted(inst_ids, case.instance)
        if col < len(inst_ids) and inst_ids[col] == case.instance:
            vm_mask[rows, col] |= bit
    return vm_mask, host_mask


def _scenario_logs(
    sim: Simulator,
    s0: int,
    s1: int,
    inst_ids: np.ndarray,
    node_of: np.ndarray,
    vm_arr: np.ndarray,
    host_arr: np.ndarray,
) -> LogEvents:
    cfg = sim.config
    dt = cfg.step_seconds
    t_lo, t_hi = float(cfg.start or 0) + s0 * dt, float(cfg.start or 0) + s1 * dt
    cols: dict[str, list] = {f: [] for f in LogEvents.FIELDS}
    for case in sim.cases_logging(t_lo, t_hi):
        spec = CATALOGUE.get(case.scenario)
        col = np.searchsorted(inst_ids, case.instance) if case.instance >= 0 else -1
        has_col = case.instance >= 0 and col < len(inst_ids) and inst_ids[col] == case.instance
        for line in sim.case_lines(case):
            if not t_lo <= line.ts < t_hi:
                continue
            k = int((line.ts - t_lo) // dt)
            cue = spec.logs[line.cue]
            node, inst, vcol = case.node, -1, -1
            if case.level == "vm":
                inst, vcol = case.instance, (int(col) if has_col else -1)
                if vcol >= 0 and node_of[k, vcol] >= 0:
                    node = int(node_of[k, vcol])
                if cue.where == "host":
                    inst, vcol = -1, -1
            elif cue.where == "vms":
                here = np.flatnonzero(node_of[k] == case.node)
                if len(here):
                    vcol = int(here[line.seed % len(here)])
                    inst = int(inst_ids[vcol])
            value = np.nan
            if cue.value_metric is not None:
                if cue.value_metric.startswith("host_"):
                    value = host_arr[k, node, HOST_INDEX[cue.value_metric]]
                elif vcol >= 0:
                    value = vm_arr[k, vcol, VM_INDEX[cue.value_metric]]
                value = float(value) * cue.value_scale
            cols["ts_ms"].append(int(line.ts * 1000))
            cols["node"].append(node)
            cols["instance"].append(inst)
            cols["template"].append(line.template)
            cols["severity"].append(sim.template_severity[line.template])
            cols["seed"].append(line.seed & 0xFFFFFFFF)
            cols["case"].append(case.case_id)
            cols["value"].append(value)
    return (
        LogEvents.build(**{k: np.array(v) for k, v in cols.items()})
        if cols["ts_ms"]
        else LogEvents.empty()
    )
