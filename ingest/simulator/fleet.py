"""The fleet: clusters, racks, nodes of several hardware generations, and instances.

Instances carry their whole life cycle (arrival and departure step); which node hosts
them at each moment is decided by the scheduler in ``placement``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.simulator.config import SECONDS_PER_DAY, SimConfig, rng_for
from ingest.simulator.workloads import ARCHETYPES, LoadParams, sample_load_params

GB = 1e9


@dataclass(frozen=True)
class HardwareGeneration:
    name: str
    year: int
    cores: int
    mem_gb: float
    llc_mb: float
    membw_gbps: float
    net_gbit: float
    disk_mbps: float
    ipc_factor: float  # newer cores retire more instructions per cycle
    idle_watts: float
    max_watts: float
    share: float  # fraction of racks bought in this generation


GENERATIONS: tuple[HardwareGeneration, ...] = (
    HardwareGeneration("gen1", 2017, 40, 256, 27.5, 70, 10, 600, 0.85, 170, 420, 0.2),
    HardwareGeneration("gen2", 2019, 64, 384, 38.5, 110, 25, 1200, 0.95, 190, 500, 0.35),
    HardwareGeneration("gen3", 2021, 96, 768, 64.0, 190, 25, 2500, 1.05, 210, 620, 0.3),
    HardwareGeneration("gen4", 2023, 128, 1024, 96.0, 300, 100, 4000, 1.15, 230, 760, 0.15),
)

CLUSTERS: tuple[tuple[str, float], ...] = (
    ("eu-west-1a", 1.0),
    ("us-east-2b", -5.0),
    ("ap-south-1a", 5.5),
    ("us-west-2c", -8.0),
    ("eu-central-1b", 1.0),
    ("ap-northeast-1c", 9.0),
)
NODES_PER_RACK = 12
NODES_PER_CLUSTER = 36


@dataclass
class Fleet:
    # clusters and racks
    cluster_names: list[str]
    cluster_tz_hours: np.ndarray
    rack_names: list[str]
    rack_cluster: np.ndarray
    rack_ambient_c: np.ndarray
    # nodes
    node_names: list[str]
    node_rack: np.ndarray
    node_cluster: np.ndarray
    node_gen: np.ndarray
    node_age_days: np.ndarray  # at the simulation start
    node_ecc0: np.ndarray  # counter values at the start
    node_smart0: np.ndarray
    node_flaps0: np.ndarray
    node_fs_base: np.ndarray
    # instances
    instance_names: list[str]
    inst_arch: np.ndarray
    inst_service: np.ndarray
    service_names: list[str]
    inst_vcpus: np.ndarray
    inst_mem_gb: np.ndarray
    inst_scale: np.ndarray  # per-instance usage multiplier around the archetype profile
    inst_mem_util: np.ndarray
    inst_disk_base: np.ndarray
    inst_disk_growth: np.ndarray  # fraction of the disk per day
    inst_restarts0: np.ndarray
    inst_swap0: np.ndarray  # swap in use at rest (most guests have none)
    inst_cluster: np.ndarray  # home cluster: the scheduler never moves an instance out of it
    inst_arrive: np.ndarray  # step of arrival (0 = present at the start)
    inst_depart: np.ndarray  # step of departure (n_steps = still running at the end)
    load: LoadParams

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    @property
    def n_instances(self) -> int:
        return len(self.instance_names)

    def capacity(self) -> dict[str, np.ndarray]:
        """Per-node capacity of each shared resource, in the units demand is expressed in."""
        gens = GENERATIONS
        g = self.node_gen
        return {
            "cores": np.array([gens[i].cores for i in g], dtype=float),
            "mem_gb": np.array([gens[i].mem_gb for i in g], dtype=float),
            "llc_mb": np.array([gens[i].llc_mb for i in g], dtype=float),
            "membw": np.array([gens[i].membw_gbps * GB for i in g]),
            "net": np.array([gens[i].net_gbit * GB / 8 for i in g]),
            "disk": np.array([gens[i].disk_mbps * 1e6 for i in g]),
            "ipc_factor": np.array([gens[i].ipc_factor for i in g]),
            "idle_watts": np.array([gens[i].idle_watts for i in g]),
            "max_watts": np.array([gens[i].max_watts for i in g]),
        }

    def node_labels(self, node: int) -> dict[str, str]:
        rack = int(self.node_rack[node])
        return {
            "node": self.node_names[node],
            "cluster": self.cluster_names[int(self.rack_cluster[rack])],
            "rack": self.rack_names[rack],
        }

    def instance_labels(self, inst: int, node: int) -> dict[str, str]:
        """Labels of an instance's series while it runs on ``node`` (a migration changes them)."""
        labels = self.node_labels(node)
        labels["vm"] = self.instance_names[inst]
        labels["workload"] = ARCHETYPES[int(self.inst_arch[inst])].name
        return labels

    def as_dict(self) -> dict:
        return {
            "clusters": [
                {"name": n, "tz_hours": float(tz)}
                for n, tz in zip(self.cluster_names, self.cluster_tz_hours, strict=True)
            ],
            "racks": [
                {"name": n, "cluster": self.cluster_names[int(c)], "ambient_c": round(float(a), 2)}
                for n, c, a in zip(
                    self.rack_names, self.rack_cluster, self.rack_ambient_c, strict=True
                )
            ],
            "nodes": [
                {
                    **self.node_labels(i),
                    "index": i,
                    "generation": GENERATIONS[int(self.node_gen[i])].name,
                    "age_days": round(float(self.node_age_days[i]), 1),
                }
                for i in range(self.n_nodes)
            ],
            "instances": [
                {
                    "index": i,
                    "vm": self.instance_names[i],
                    "workload": ARCHETYPES[int(self.inst_arch[i])].name,
                    "service": self.service_names[int(self.inst_service[i])],
                    "vcpus": int(self.inst_vcpus[i]),
                    "mem_gb": float(self.inst_mem_gb[i]),
                    "arrive_step": int(self.inst_arrive[i]),
                    "depart_step": int(self.inst_depart[i]),
                }
                for i in range(self.n_instances)
            ],
            "generations": [g.__dict__ for g in GENERATIONS],
        }


def build_fleet(config: SimConfig) -> Fleet:
    """Nodes and the instances that exist at some point of the simulated period."""
    rng = rng_for(config.seed, "fleet")
    n_nodes = config.n_nodes
    n_clusters = max(1, -(-n_nodes // NODES_PER_CLUSTER))
    picks = rng.permutation(len(CLUSTERS))[: min(n_clusters, len(CLUSTERS))]
    cluster_names = [CLUSTERS[i][0] for i in picks]
    cluster_tz = np.array([CLUSTERS[i][1] for i in picks])
    n_clusters = len(cluster_names)

    node_cluster = np.arange(n_nodes) % n_clusters
    rack_names: list[str] = []
    rack_cluster: list[int] = []
    node_rack = np.zeros(n_nodes, dtype=np.int32)
    node_names: list[str] = []
    for c in range(n_clusters):
        members = np.flatnonzero(node_cluster == c)
        for k, node in enumerate(members):
            r_local = k // NODES_PER_RACK
            name = f"{cluster_names[c]}-r{r_local + 1:02d}"
            if not rack_names or rack_names[-1] != name:
                rack_names.append(name)
                rack_cluster.append(c)
            node_rack[node] = len(rack_names) - 1
            node_names.append(f"{name}-n{k % NODES_PER_RACK + 1:02d}")
    n_racks = len(rack_names)
    shares = np.array([g.share for g in GENERATIONS])
    rack_gen = rng.choice(len(GENERATIONS), n_racks, p=shares / shares.sum())
    node_gen = rack_gen[node_rack]
    # A few nodes are replacements of a newer generation inside an older rack.
    swap = rng.random(n_nodes) < 0.08
    node_gen = np.where(swap, np.minimum(node_gen + 1, len(GENERATIONS) - 1), node_gen)
    start_year = 1970 + (config.start or 0) / (365.25 * SECONDS_PER_DAY)
    age_years = np.array([max(start_year - GENERATIONS[g].year, 0.1) for g in node_gen])
    node_age_days = np.maximum(age_years * 365.25 + rng.normal(0, 60, n_nodes), 20)
    old = node_age_days / 365.25
    fleet_nodes = {
        "node_ecc0": rng.poisson(3 * old).astype(float),
        "node_smart0": rng.poisson(0.3 * old).astype(float),
        "node_flaps0": rng.poisson(1 + old).astype(float),
        "node_fs_base": rng.uniform(0.15, 0.45, n_nodes),
    }

    n_steps = config.n_steps
    n0 = int(config.n_instances or 0)
    horizon_days = n_steps * config.step_seconds / SECONDS_PER_DAY
    # Half the arrivals replace departed long-lived services (keeping the population steady),
    # half are short jobs.
    n_arrivals = int(rng.poisson(2 * n0 * config.churn_per_day * horizon_days))
    n_inst = n0 + n_arrivals
    weights = np.array([0.12, 0.12, 0.16, 0.07, 0.06, 0.04, 0.07, 0.05, 0.08, 0.07, 0.09, 0.07])
    inst_arch = rng.choice(len(ARCHETYPES), n_inst, p=weights / weights.sum())
    vcpus = rng.choice([2, 4, 8, 16, 32], n_inst, p=[0.25, 0.35, 0.25, 0.12, 0.03])
    mem_per_vcpu = np.array([ARCHETYPES[a].mem_gb_per_vcpu for a in inst_arch])
    inst_mem = vcpus * mem_per_vcpu

    service_names: list[str] = []
    service_of: dict[tuple[int, int], int] = {}
    inst_service = np.zeros(n_inst, dtype=np.int32)
    for i, a in enumerate(inst_arch):
        names = ARCHETYPES[a].service_names
        which = int(rng.integers(0, len(names)))
        key = (int(a), which)
        if key not in service_of:
            service_of[key] = len(service_names)
            service_names.append(names[which])
        inst_service[i] = service_of[key]
    instance_names: list[str] = []
    seen: set[str] = set()
    for i in range(n_inst):
        while True:
            name = f"{service_names[inst_service[i]]}-{int(rng.integers(0, 16**5)):05x}"
            if name not in seen:
                break
        seen.add(name)
        instance_names.append(name)

    # Arrivals spread over the period. Instances present at the start are mostly long-lived
    # services (residual life ~ 1/churn days); arrivals are half services, half short jobs.
    arrive = np.zeros(n_inst, dtype=np.int64)
    arrive[n0:] = np.sort(rng.integers(1, max(n_steps, 2), n_arrivals))
    day_steps = SECONDS_PER_DAY / config.step_seconds
    mean_life = 1.0 / max(config.churn_per_day, 1e-6)
    short_job = (np.arange(n_inst) >= n0) & (rng.random(n_inst) < 0.5)
    life_days = np.where(
        short_job, rng.exponential(0.3, n_inst), rng.exponential(mean_life, n_inst)
    )
    depart = np.minimum(arrive + np.maximum(life_days * day_steps, 60), n_steps).astype(np.int64)

    arch_mem_util = np.array([ARCHETYPES[a].mem_util for a in inst_arch])
    return Fleet(
        cluster_names=cluster_names,
        cluster_tz_hours=cluster_tz,
        rack_names=rack_names,
        rack_cluster=np.array(rack_cluster, dtype=np.int32),
        rack_ambient_c=rng.uniform(21, 27, n_racks),
        node_names=node_names,
        node_rack=node_rack,
        node_cluster=node_cluster.astype(np.int32),
        node_gen=node_gen.astype(np.int32),
        node_age_days=node_age_days,
        **fleet_nodes,
        instance_names=instance_names,
        inst_arch=inst_arch.astype(np.int32),
        inst_service=inst_service,
        service_names=service_names,
        inst_vcpus=vcpus.astype(np.int32),
        inst_mem_gb=inst_mem.astype(float),
        inst_scale=rng.lognormal(0, 0.2, n_inst),
        inst_mem_util=np.clip(arch_mem_util + rng.normal(0, 0.06, n_inst), 0.2, 0.93),
        inst_disk_base=rng.uniform(0.2, 0.6, n_inst),
        inst_disk_growth=rng.uniform(0.0, 0.02, n_inst),
        inst_restarts0=rng.poisson(1.0, n_inst).astype(float),
        inst_swap0=np.where(rng.random(n_inst) < 0.15, rng.uniform(5e7, 5e8, n_inst), 0.0),
        inst_cluster=rng.choice(
            n_clusters, n_inst, p=np.bincount(node_cluster, minlength=n_clusters) / n_nodes
        ).astype(np.int32),
        inst_arrive=arrive,
        inst_depart=depart,
        load=sample_load_params(rng_for(config.seed, "load-params"), inst_arch),
    )
