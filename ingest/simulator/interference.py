"""Contention on shared resources and the performance ratio P it causes.

For a victim on a node, the neighbours' combined demand on each shared resource r (cpu,
llc, membw, net, disk) is expressed as a fraction q_r of the node's capacity. Contention is
a Hill curve c_r(q) = q^g / (k^g + q^g): nearly free below the knee k, steep around it,
saturating above (queues and cache thrashing behave this way). The victim loses

    d_r = w_r * s_r * c_r(q_r) * (0.5 + 0.5 * activity)

of its performance on each resource (s_r its sensitivity, w_r how much that resource can
hurt at most, activity how busy the victim itself is), plus an interaction term because
cache misses turn into memory traffic: P = exp(-(sum_r d_r + 0.8 * d_llc * d_membw)).

P is therefore monotone non-increasing in every neighbour pressure, exactly unchanged by
pressure on a resource the victim is insensitive to, and in (0, 1]. The simulator adds
autocorrelated multiplicative noise (runs on real hosts never repeat exactly) and clips at 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ingest.simulator.config import RESOURCES
from ingest.simulator.fleet import GB, GENERATIONS
from ingest.simulator.workloads import ARCHETYPE_INDEX, MB, archetype_table

KNEE = np.array([0.75, 0.7, 0.6, 0.7, 0.6])
STEEPNESS = np.array([5.0, 2.5, 3.0, 4.0, 3.0])
WEIGHT = np.array([0.9, 0.5, 0.7, 0.6, 0.8])
LLC_MEMBW_INTERACTION = 0.8
P_NOISE_SD = 0.025

_TABLE = archetype_table()


def contention(pressure: np.ndarray) -> np.ndarray:
    """Hill contention per resource; ``pressure`` has the resource axis last."""
    q = np.maximum(pressure, 0.0)
    qg = q**STEEPNESS
    return qg / (KNEE**STEEPNESS + qg)


def degradation(sensitivity: np.ndarray, pressure: np.ndarray, activity: np.ndarray) -> np.ndarray:
    """d_r per resource (same shape as ``pressure``)."""
    act = 0.5 + 0.5 * np.clip(activity, 0.0, 1.0)
    return WEIGHT * sensitivity * contention(pressure) * act[..., None]


def performance_ratio(
    sensitivity: np.ndarray, pressure: np.ndarray, activity: np.ndarray
) -> np.ndarray:
    """Noise-free P from neighbour pressure [..., 5], sensitivity [..., 5] and activity [...]."""
    d = degradation(sensitivity, pressure, activity)
    return np.exp(-(d.sum(axis=-1) + LLC_MEMBW_INTERACTION * d[..., 1] * d[..., 2]))


def demand_units(
    arch: np.ndarray,
    vcpus: np.ndarray,
    cpu_frac: np.ndarray,
    activity: np.ndarray,
    membw: np.ndarray,
    net: np.ndarray,
    disk: np.ndarray,
) -> np.ndarray:
    """Resource demand [..., 5] in capacity units: cores, LLC MB, bytes/s, bytes/s, bytes/s."""
    llc = _TABLE["llc_mb_per_vcpu"][arch] * vcpus * (0.4 + 0.6 * np.clip(activity, 0.0, 1.5))
    return np.stack([cpu_frac * vcpus, llc, membw, net, disk], axis=-1)


def capacity_units(generation: np.ndarray) -> np.ndarray:
    """Node capacity [..., 5] in the units of ``demand_units``."""
    g = np.asarray(generation)
    table = np.array(
        [
            [h.cores, h.llc_mb, h.membw_gbps * GB, h.net_gbit * GB / 8, h.disk_mbps * MB]
            for h in GENERATIONS
        ]
    )
    return table[g]


@dataclass(frozen=True)
class PlacedInstance:
    """An instance in a what-if placement: its workload, size and load (1 = nominal)."""

    workload: str
    vcpus: int = 4
    load: float = 0.7
    scale: float = 1.0

    def demand(self) -> np.ndarray:
        a = np.array([ARCHETYPE_INDEX[self.workload]])
        lv = np.array([self.load])
        v = np.array([float(self.vcpus)])
        s = self.scale
        cpu = np.minimum(_TABLE["cpu_base"][a] * lv, 1.0)
        membw = _TABLE["membw_gbps_per_vcpu"][a] * GB * v * lv * s
        net = (
            (_TABLE["net_rx_mbps_per_vcpu"][a] + _TABLE["net_tx_mbps_per_vcpu"][a])
            * MB
            * v
            * lv
            * s
        )
        disk = (
            (_TABLE["disk_read_mbps_per_vcpu"][a] + _TABLE["disk_write_mbps_per_vcpu"][a])
            * MB
            * v
            * lv
            * s
        )
        return demand_units(a, v, cpu, lv, membw, net, disk)[0]


def predict_p_given_placement(
    victim: PlacedInstance,
    neighbours: Sequence[PlacedInstance],
    generation: int | str = 1,
    extra_pressure: Sequence[float] | None = None,
) -> float:
    """Ground-truth expected P of ``victim`` next to ``neighbours`` on a node of ``generation``.

    For evaluation and what-if questions only (it is the answer a model should learn).
    ``extra_pressure`` adds raw pressure per resource (fractions of capacity, in the order of
    RESOURCES), which is how tests probe one resource at a time.
    """
    gen = (
        generation
        if isinstance(generation, int)
        else [g.name for g in GENERATIONS].index(generation)
    )
    cap = capacity_units(np.array(gen))
    pressure = np.zeros(len(RESOURCES))
    for n in neighbours:
        pressure += n.demand() / cap
    if extra_pressure is not None:
        pressure += np.asarray(extra_pressure, dtype=float)
    sens = _TABLE["sensitivity"][ARCHETYPE_INDEX[victim.workload]]
    return float(performance_ratio(sens, pressure, np.array(min(victim.load, 1.0))))
