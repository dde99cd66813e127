"""The scenario catalogue, as data.

Each entry declares what a scenario does to the metrics (effects with direction and shape),
which log templates it emits and when, how long and how strong it usually is, where it can
occur, and for deceptive normals what context explains it and which anomaly it imitates.
``inject`` turns entries into labeled cases and applies them; the tests check every entry
against what the simulator actually emits.

Effect ops, with intensity I in (0, 1] and shape s(t) in [0, 1]:
- ``mul``: x * (1 + mag * I * s)          relative change (mag < 0 lowers)
- ``add``: x + mag * I * s                absolute change in the metric's unit
- ``to``:  x + (mag - x) * s * (0.5 + 0.5 I)   pulls the metric toward a level
- ``count``: counter + mag * I * minutes since start (persists after the case: counters never fall)
- ``bump``: counter + mag from the start on
"""

from __future__ import annotations

from dataclasses import dataclass, field

SERVICES = (
    "kv_cache",
    "oltp_db",
    "web_serving",
    "web_search",
    "media_streaming",
    "object_storage",
    "message_broker",
)
BATCH = ("inmem_analytics", "graph_analytics", "ml_training", "batch_etl", "video_transcoding")
ALL = SERVICES + BATCH
JVM = ("web_search", "message_broker", "web_serving", "inmem_analytics", "graph_analytics")
STORAGE = ("oltp_db", "object_storage", "kv_cache", "message_broker")

ALIASES = {
    "cpu": "vm_cpu_utilization_ratio",
    "steal": "vm_cpu_steal_ratio",
    "iowait": "vm_cpu_iowait_ratio",
    "mem": "vm_memory_utilization_ratio",
    "swap": "vm_swap_used_bytes",
    "disk_r": "vm_disk_read_bytes_per_second",
    "disk_w": "vm_disk_write_bytes_per_second",
    "disk_used": "vm_disk_used_ratio",
    "net_rx": "vm_network_receive_bytes_per_second",
    "net_tx": "vm_network_transmit_bytes_per_second",
    "retrans": "vm_tcp_retransmits_per_second",
    "ipc": "vm_ipc",
    "llc": "vm_llc_misses_per_second",
    "membw": "vm_memory_bandwidth_bytes_per_second",
    "lat": "vm_request_latency_seconds",
    "rps": "vm_requests_per_second",
    "err": "vm_request_errors_per_second",
    "fds": "vm_open_fds",
    "restarts": "vm_process_restarts_total",
    "h.cpu": "host_cpu_utilization_ratio",
    "h.load1": "host_load1",
    "h.disk_w": "host_disk_write_bytes_per_second",
    "h.io": "host_disk_io_utilization_ratio",
    "h.fs": "host_filesystem_utilization_ratio",
    "h.ecc": "host_ecc_errors_total",
    "h.smart": "host_disk_smart_errors_total",
    "h.flaps": "host_nic_link_flaps_total",
    "h.temp": "host_temperature_celsius",
    "h.clock": "host_clock_offset_seconds",
    "h.power": "host_power_watts",
    "h.up": "host_agent_up",
}
SHAPES = ("step", "ramp", "spike", "decay", "saw", "pulse")


@dataclass(frozen=True)
class Effect:
    metric: str
    op: str
    mag: float
    shape: str = "step"
    where: str = "self"  # self: the case target; vms: every instance on the target node
    direction: int = 0  # for "to": +1 when the level is above normal, -1 below

    @property
    def sign(self) -> int:
        if self.op == "to":
            return self.direction
        return 1 if self.mag > 0 else -1


@dataclass(frozen=True)
class LogCue:
    template: str
    phase: str  # pre | start | during | end
    rate_per_min: float = 0.0  # during: expected lines per minute at intensity 1 (at least one)
    offset_s: float = 0.0  # pre: seconds before the start; start/end: delay after the moment
    value_metric: str | None = None  # fills {value} from this metric at the line's time
    value_scale: float = 1.0
    where: str = "self"  # self: the target; host: the target's node; vms: an instance on it


@dataclass(frozen=True)
class Variant:
    id: str
    split: str  # train | heldout
    intensity: tuple[float, float]
    duration_s: tuple[float, float]
    archetypes: tuple[str, ...] | None  # None: node-level


@dataclass(frozen=True)
class Schedule:
    """Recurring context: when a deceptive-normal scenario happens on a calendar."""

    every_hours: float  # 24 = daily
    hours: tuple[float, float]  # local hour window the occurrence is drawn in (once per target)
    fraction: float  # share of eligible targets that have this job
    probability: float = 1.0  # chance each occurrence actually happens


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    kind: str  # anomaly | deceptive
    level: str  # vm | host
    description: str
    effects: tuple[Effect, ...]
    logs: tuple[LogCue, ...]
    variants: tuple[Variant, ...]
    context: str = ""  # what explains a deceptive normal
    mimics: tuple[str, ...] = ()
    schedule: Schedule | None = None
    fault: str | None = None  # unhealthy-node fault category this raises
    node_down: bool = False  # node (and its instances) stop reporting during the case
    blank_host: bool = False  # host metrics stop (agent gone) but instances keep running
    rollout: bool = False  # hits a service's instances one after another
    weight: float = 1.0  # relative frequency among random cases

    @property
    def archetypes(self) -> tuple[str, ...]:
        seen: list[str] = []
        for v in self.variants:
            for a in v.archetypes or ():
                if a not in seen:
                    seen.append(a)
        return tuple(seen)

    def variants_for(self, split: str) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.split == split)

    def log_templates(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.template for c in self.logs))


def E(
    metric: str, op: str, mag: float, shape: str = "step", where: str = "self", d: int = 0
) -> Effect:
    return Effect(ALIASES.get(metric, metric), op, mag, shape, where, d)


def L(template: str, phase: str, rate: float = 0.0, offset: float = 0.0, **kw) -> LogCue:
    if "value_metric" in kw and kw["value_metric"] in ALIASES:
        kw["value_metric"] = ALIASES[kw["value_metric"]]
    return LogCue(template, phase, rate, offset, **kw)


def variants(
    name: str,
    intensity: tuple[float, float],
    minutes: tuple[float, float],
    archetypes: tuple[str, ...] | None = None,
) -> tuple[Variant, ...]:
    """Training variant plus held-out ones: fainter, longer, and (for instance scenarios) on
    archetypes the training variant never touches."""
    lo, hi = intensity
    d = (minutes[0] * 60, minutes[1] * 60)
    if archetypes is None:
        train_arch = held_arch = None
    elif len(archetypes) >= 3:
        held_arch = archetypes[2::3]
        train_arch = tuple(a for a in archetypes if a not in held_arch)
    else:
        train_arch = held_arch = archetypes
    out = [
        Variant(f"{name}/train", "train", (lo, hi), d, train_arch),
        Variant(f"{name}/heldout-faint", "heldout", (max(lo * 0.45, 0.1), lo), d, train_arch),
        Variant(f"{name}/heldout-long", "heldout", (lo, hi), (d[1], d[1] * 2.5), train_arch),
    ]
    if archetypes is not None and held_arch != train_arch:
        out.append(Variant(f"{name}/heldout-archetype", "heldout", (lo, hi), d, held_arch))
    return tuple(out)


@dataclass(frozen=True)
class Catalogue:
    specs: tuple[ScenarioSpec, ...] = field(default_factory=tuple)

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def get(self, name: str) -> ScenarioSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def index(self, name: str) -> int:
        return next(i for i, s in enumerate(self.specs) if s.name == name)

    def names(self, kind: str | None = None) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs if kind is None or s.kind == kind)


@dataclass
class Case:
    """One labeled occurrence of a scenario: the ground truth a detector is scored against."""

    case_id: int
    kind: str  # anomaly | deceptive
    scenario: str
    level: str  # vm | host
    node: int  # node index (for vm cases: the node at the start)
    instance: int  # instance index, -1 for host cases
    start: int  # epoch seconds, inclusive
    end: int  # epoch seconds, exclusive
    intensity: float
    variant: str
    split: str  # train | heldout | injected
    context: str = ""  # for deceptive normals: the explaining context
    group: int = -1  # rollout id shared by the cases of one rolling deployment
    group_pos: int = 0
    group_size: int = 1
    scheduled: bool = False
    injected: bool = False

    def as_dict(self) -> dict:
        return dict(self.__dict__)
