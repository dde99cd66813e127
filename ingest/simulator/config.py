"""Simulation settings and the seeding discipline every component follows.

Every random stream is derived from ``(seed, component name, index...)`` through
``numpy.random.SeedSequence`` spawn keys. A component therefore draws the same numbers
whatever other components exist or how many numbers they consume, which is what keeps a
new scenario from reshuffling the rest of the fleet and what lets a stream be generated
hour by hour in any order (live streaming and batch export see identical data).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

RESOURCES: tuple[str, ...] = ("cpu", "llc", "membw", "net", "disk")
SECONDS_PER_DAY = 86_400
BLOCK_SECONDS = 3_600  # unit of generation: noise and logs are seeded per hour of simulated time

VariantSet = Literal["train", "heldout"]


def _key(part: str | int) -> int:
    if isinstance(part, str):
        return zlib.crc32(part.encode())
    return int(part) & 0xFFFFFFFF


def rng_for(seed: int, *parts: str | int) -> np.random.Generator:
    """An independent generator for one component (and optionally one block or case)."""
    seq = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(_key(p) for p in parts))
    return np.random.default_rng(seq)


def seed_for(seed: int, *parts: str | int) -> int:
    """A 32-bit integer seed, for the places that store a seed instead of a generator."""
    seq = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(_key(p) for p in parts))
    return int(seq.generate_state(1, dtype=np.uint32)[0])


@dataclass(frozen=True)
class ScenarioRates:
    """How often labeled cases occur; per simulated day."""

    anomaly_per_instance_day: float = 0.12
    node_fault_per_node_day: float = 0.08
    deceptive_per_instance_day: float = 0.06
    # Recurring context (backups, cron batches, vacuum, log rotation, snapshots, patch windows)
    scheduled: bool = True
    # Multiplies the number of scheduled occurrences (1.0 = a realistic calendar).
    scheduled_scale: float = 1.0


@dataclass(frozen=True)
class SimConfig:
    seed: int = 0
    n_nodes: int = 50
    n_instances: int | None = None  # default: 8 per node
    step_seconds: int = 15
    start: int | None = None  # epoch seconds; None = now, aligned down to the hour
    hours: float = 24.0
    rates: ScenarioRates = field(default_factory=ScenarioRates)
    variant_set: VariantSet = "train"
    # Restrict random cases to these scenario names (None = the whole catalogue).
    scenarios: tuple[str, ...] | None = None
    # Daily fraction of instances that leave and are replaced, and of instances rebalanced.
    churn_per_day: float = 0.1
    migrations_per_instance_day: float = 0.02
    log_rate_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.step_seconds < 1 or BLOCK_SECONDS % self.step_seconds:
            raise ValueError("step_seconds must divide 3600 (e.g. 5, 10, 15, 30, 60)")
        if self.n_nodes < 1:
            raise ValueError("n_nodes must be at least 1")
        if self.hours <= 0:
            raise ValueError("hours must be positive")
        if self.variant_set not in ("train", "heldout"):
            raise ValueError("variant_set must be 'train' or 'heldout'")
        if self.n_instances is None:
            object.__setattr__(self, "n_instances", 8 * self.n_nodes)
        if self.start is None:
            now = int(time.time())
            object.__setattr__(self, "start", now - now % BLOCK_SECONDS)
        elif self.start % self.step_seconds:
            raise ValueError("start must be a multiple of step_seconds")
        if isinstance(self.rates, dict):
            object.__setattr__(self, "rates", ScenarioRates(**self.rates))
        if self.scenarios is not None:
            object.__setattr__(self, "scenarios", tuple(self.scenarios))

    @property
    def n_steps(self) -> int:
        return round(self.hours * 3600 / self.step_seconds)

    @property
    def steps_per_block(self) -> int:
        return BLOCK_SECONDS // self.step_seconds

    @property
    def end(self) -> int:
        assert self.start is not None
        return self.start + self.n_steps * self.step_seconds

    def as_dict(self) -> dict:
        out = asdict(self)
        if out["scenarios"] is not None:
            out["scenarios"] = list(out["scenarios"])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SimConfig:
        data = dict(data)
        data["rates"] = ScenarioRates(**data.get("rates", {}))
        if data.get("scenarios") is not None:
            data["scenarios"] = tuple(data["scenarios"])
        return cls(**data)
