"""Log templates, compact log events, their rendering to text, and background generation.

An event is a row of numbers (time, node, instance, template, severity, parameter seed, case,
value); its text is rendered only when someone asks for it. Parameters come from a
splitmix64 stream keyed by the event's seed, so rendering is deterministic, needs no
stored strings, and costs nothing for the (many) consumers that only need template counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np

from ingest.simulator.logcatalog_apps import (
    APP_TEMPLATES,
    NODE_TEMPLATES,
    VM_TEMPLATES,
    TemplateDef,
)
from ingest.simulator.logcatalog_scenarios import SCENARIO_TEMPLATES
from ingest.simulator.logparams import CONTEXT_KINDS, MASK64, PARAM_KINDS, Draw, param_kind
from ingest.simulator.workloads import ARCHETYPES, archetype_table

SEVERITY = {"D": 5, "I": 9, "N": 10, "W": 13, "E": 17, "C": 18, "F": 21}
NODE_LOG_RATE = 0.03  # lines per second per hypervisor host
VM_SYSTEM_LOG_RATE = 0.006  # guest OS lines per second per instance


@dataclass(frozen=True)
class LogTemplate:
    id: int
    key: str
    family: str  # an archetype name, "node", "vm" or "scenario"
    app: str  # syslog tag
    severity: int  # OpenTelemetry severity number
    text: str
    weight: float
    stress: bool

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _build() -> tuple[LogTemplate, ...]:
    groups: list[tuple[str, Sequence[TemplateDef]]] = [
        ("node", NODE_TEMPLATES),
        ("vm", VM_TEMPLATES),
    ]
    groups += [(a.name, APP_TEMPLATES[a.name]) for a in ARCHETYPES]
    groups.append(("scenario", SCENARIO_TEMPLATES))
    out: list[LogTemplate] = []
    for family, defs in groups:
        for d in defs:
            out.append(
                LogTemplate(
                    len(out), d.key, family, d.app, SEVERITY[d.severity], d.text, d.weight, d.stress
                )
            )
    return tuple(out)


TEMPLATES: tuple[LogTemplate, ...] = _build()
TEMPLATE_INDEX: dict[str, int] = {t.key: t.id for t in TEMPLATES}


@dataclass
class LogEvents:
    """Log events as parallel arrays (one entry per line)."""

    ts_ms: np.ndarray  # int64 epoch milliseconds
    node: np.ndarray  # int32 node index
    instance: np.ndarray  # int32 instance index, -1 for node-level lines
    template: np.ndarray  # int32 template id
    severity: np.ndarray  # int8 OpenTelemetry severity number
    seed: np.ndarray  # uint32 parameter seed
    case: np.ndarray  # int32 case id whose scenario emitted the line, -1 for background
    value: np.ndarray  # float32 number quoted by the line ({value}), NaN when none

    FIELDS = ("ts_ms", "node", "instance", "template", "severity", "seed", "case", "value")
    DTYPES = (np.int64, np.int32, np.int32, np.int32, np.int8, np.uint32, np.int32, np.float32)

    def __len__(self) -> int:
        return len(self.ts_ms)

    @classmethod
    def empty(cls) -> LogEvents:
        return cls(*(np.zeros(0, dtype=d) for d in cls.DTYPES))

    @classmethod
    def build(cls, **columns: np.ndarray) -> LogEvents:
        return cls(
            *(np.asarray(columns[f], dtype=d) for f, d in zip(cls.FIELDS, cls.DTYPES, strict=True))
        )

    @classmethod
    def concat(cls, parts: Sequence[LogEvents]) -> LogEvents:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.FIELDS))

    def take(self, index: np.ndarray) -> LogEvents:
        return LogEvents(*(getattr(self, f)[index] for f in self.FIELDS))

    def sorted(self) -> LogEvents:
        # Ties broken by source and template so the order never depends on generation order.
        order = np.lexsort((self.seed, self.template, self.instance, self.node, self.ts_ms))
        return self.take(order)

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {f: getattr(self, f) for f in self.FIELDS}


_PLACEHOLDER = re.compile(r"\{([a-z_0-9]+)\}")


def _compile(text: str) -> list[tuple[str, str | None]]:
    parts: list[tuple[str, str | None]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        parts.append((text[pos : m.start()], None))
        parts.append((m.group(1), param_kind(m.group(1))))
        pos = m.end()
    parts.append((text[pos:], None))
    return parts


_COMPILED = [_compile(t.text) for t in TEMPLATES]


@dataclass(frozen=True)
class LineContext:
    """What a rendered line may quote besides random parameters."""

    host: str  # instance name for guest lines, node name for host lines
    node: str
    vm: str
    service: str
    case_key: int  # stable per case (or rollout) so its lines share job ids and versions
    batch: str
    vm_names: Sequence[str]


def _context_value(kind: str, ctx: LineContext, ts: float, value: float, d: Draw) -> str:
    c = Draw(ctx.case_key)
    if kind == "vm":
        return ctx.vm or ctx.host
    if kind == "node":
        return ctx.node
    if kind == "service":
        return ctx.service
    if kind == "vm_any":
        return ctx.vm_names[d.next() % len(ctx.vm_names)] if ctx.vm_names else ctx.host
    if kind == "value":
        if np.isnan(value):
            return "0"
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"
    when = datetime.fromtimestamp(ts, tz=UTC)
    simple = {
        "date": lambda: when.strftime("%Y-%m-%d"),
        "iso": lambda: when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "iso_past": lambda: datetime.fromtimestamp(ts - 86400 * d.int(1, 20), tz=UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "epoch": lambda: str(int(ts)),
        "hhmm": lambda: when.strftime("%H:%M"),
        "ts_job": lambda: when.strftime("%Y-%m-%d, %H:%M:%S UTC"),
        "job": lambda: f"{c.next() & 0xFFFFFFFF:08x}",
        "job_name": lambda: c.pick(
            ("reconcile", "report", "reindex", "cleanup", "aggregate", "export")
        ),
        "version": lambda: f"v{c.int(1, 4)}.{c.int(0, 40)}.{c.int(1, 9)}",
        "version_prev": lambda: f"v{c.int(1, 4)}.{c.int(0, 40)}.0",
        "ticket": lambda: str(c.int(1000, 99999)),
        "campaign": lambda: c.pick(("spring-sale", "black-friday", "new-collection", "app-launch")),
        "flag": lambda: c.pick(("new-checkout", "reco-v2", "fast-search", "one-click")),
        "batch": lambda: ctx.batch or "1/1",
        "kernel": lambda: f"6.8.0-{c.int(40, 60)}-generic",
    }
    return simple[kind]()


def render_message(template: int, seed: int, ts: float, value: float, ctx: LineContext) -> str:
    d = Draw(int(seed))
    out = []
    for text, kind in _COMPILED[int(template)]:
        if kind is None:
            out.append(text)
        elif kind in CONTEXT_KINDS:
            out.append(_context_value(kind, ctx, ts, value, d))
        else:
            out.append(PARAM_KINDS[kind](d))
    return "".join(out)


def render_line(template: int, seed: int, ts: float, value: float, ctx: LineContext) -> str:
    """A syslog-style line: ``<ISO time> <host> <app>[<pid>]: <message>`` (kernel has no pid)."""
    t = TEMPLATES[int(template)]
    stamp = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    message = render_message(template, seed, ts, value, ctx)
    if t.app == "kernel":
        return f"{stamp} {ctx.host} kernel: {message}"
    pid = 100 + (hash_str(ctx.host + t.app) % 30000)
    return f"{stamp} {ctx.host} {t.app}[{pid}]: {message}"


def hash_str(text: str) -> int:
    h = 1469598103934665603
    for ch in text.encode():
        h = ((h ^ ch) * 1099511628211) & MASK64
    return h


# ---------------------------------------------------------------- background generation
@dataclass(frozen=True)
class _Choice:
    """Cumulative weights of several template sets packed for one vectorised searchsorted."""

    cum: np.ndarray
    ids: np.ndarray

    @classmethod
    def of(cls, sets: Sequence[Sequence[LogTemplate]]) -> _Choice:
        cum, ids = [], []
        for k, ts in enumerate(sets):
            if not ts:
                ts = [TEMPLATES[TEMPLATE_INDEX["vm.cron_cmd"]]]
            w = np.array([t.weight for t in ts], dtype=float)
            cum.append(k + np.cumsum(w) / w.sum())
            ids.append([t.id for t in ts])
        return cls(np.concatenate(cum), np.concatenate(ids).astype(np.int32))

    def draw(self, set_index: np.ndarray, u: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.cum, set_index + u, side="right")
        return self.ids[np.minimum(pos, len(self.ids) - 1)]


def _family(name: str) -> list[LogTemplate]:
    return [t for t in TEMPLATES if t.family == name]


# Set 2a is archetype a's normal templates, 2a+1 its stress templates.
APP_CHOICE = _Choice.of(
    [
        s
        for a in ARCHETYPES
        for s in (
            [t for t in _family(a.name) if not t.stress],
            [t for t in _family(a.name) if t.stress],
        )
    ]
)
STRESS_SHARE = np.array(
    [
        sum(t.weight for t in _family(a.name) if t.stress)
        / max(sum(t.weight for t in _family(a.name)), 1e-9)
        for a in ARCHETYPES
    ]
)
NODE_CHOICE = _Choice.of([_family("node")])
_LOG_RATE = archetype_table()["log_rate"]
_SEVERITIES = np.array([t.severity for t in TEMPLATES], dtype=np.int8)
VM_CHOICE = _Choice.of([_family("vm")])


def background_logs(
    rng: np.random.Generator,
    ts: np.ndarray,
    step_seconds: int,
    inst_ids: np.ndarray,
    arch: np.ndarray,
    node_of: np.ndarray,
    running: np.ndarray,
    load: np.ndarray,
    stress: np.ndarray,
    node_up: np.ndarray,
    rate_scale: float,
) -> LogEvents:
    """Ordinary log lines of one block: applications (more when busy, more warnings when
    degraded), guest OS housekeeping, and hypervisor hosts."""
    log_rate = _LOG_RATE[arch]
    lam_app = log_rate[None, :] * (0.3 + 0.7 * np.minimum(load, 2.0)) * step_seconds * rate_scale
    lam = np.where(running, lam_app + VM_SYSTEM_LOG_RATE * step_seconds * rate_scale, 0.0)
    counts = rng.poisson(lam)
    rows, cols = np.nonzero(counts)
    k = counts[rows, cols]
    rows, cols = np.repeat(rows, k), np.repeat(cols, k)
    n = len(rows)
    u_kind, u_pick, u_stress, u_time = rng.random((4, n))
    # Share of guest-OS lines among all lines from that instance at that step.
    sys_share = VM_SYSTEM_LOG_RATE * step_seconds * rate_scale / np.maximum(lam[rows, cols], 1e-12)
    a = arch[cols]
    base_share = STRESS_SHARE[a]
    s = stress[rows, cols]
    p_stress = base_share * s / (1 - base_share + base_share * s)
    set_index = 2 * a + (u_stress < p_stress)
    tmpl = np.where(
        u_kind < sys_share, VM_CHOICE.draw(np.zeros(n), u_pick), APP_CHOICE.draw(set_index, u_pick)
    )
    vm_events = LogEvents.build(
        ts_ms=((ts[rows] + u_time * step_seconds) * 1000).astype(np.int64),
        node=node_of[rows, cols],
        instance=inst_ids[cols],
        template=tmpl,
        severity=_SEVERITIES[tmpl],
        seed=rng.integers(0, 2**32, n, dtype=np.uint32),
        case=np.full(n, -1),
        value=np.full(n, np.nan),
    )
    node_counts = rng.poisson(np.where(node_up, NODE_LOG_RATE * step_seconds * rate_scale, 0.0))
    rows, nodes = np.nonzero(node_counts)
    k = node_counts[rows, nodes]
    rows, nodes = np.repeat(rows, k), np.repeat(nodes, k)
    m = len(rows)
    u_pick, u_time = rng.random((2, m))
    tmpl = NODE_CHOICE.draw(np.zeros(m), u_pick)
    node_events = LogEvents.build(
        ts_ms=((ts[rows] + u_time * step_seconds) * 1000).astype(np.int64),
        node=nodes,
        instance=np.full(m, -1),
        template=tmpl,
        severity=_SEVERITIES[tmpl],
        seed=rng.integers(0, 2**32, m, dtype=np.uint32),
        case=np.full(m, -1),
        value=np.full(m, np.nan),
    )
    return LogEvents.concat([vm_events, node_events])
