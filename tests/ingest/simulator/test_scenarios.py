"""Every scenario produces the metric and log signature its catalogue entry declares."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.simulator import (
    ARCHETYPES,
    CATALOGUE,
    TEMPLATE_INDEX,
    TEMPLATES,
    ScenarioRates,
    Simulator,
)
from ingest.simulator.metrics import HOST_INDEX, VM_INDEX
from ingest.simulator.scenarios import Effect, ScenarioSpec

from .conftest import T0, quiet_config

REQUIRED_ANOMALIES = {
    "cpu_hog", "memory_leak", "disk_filling", "disk_io_saturation", "packet_loss",
    "network_partition", "dns_failure", "connection_pool_exhaustion", "deadlock", "gc_thrashing",
    "crash_loop_oom", "bad_config_rollout", "certificate_expiry", "clock_skew", "swap_storm",
    "fd_exhaustion", "kernel_soft_lockup", "nic_flapping", "ecc_memory_errors",
    "disk_smart_failure", "cryptomining", "ssh_brute_force", "data_exfiltration", "request_flood",
}  # fmt: skip
REQUIRED_DECEPTIVE = {
    "scheduled_backup", "cron_batch_job", "rolling_deployment", "autoscaling_scale_out",
    "cache_warmup_after_restart", "announced_load_test", "traffic_surge_healthy", "log_rotation",
    "database_vacuum", "patch_reboot", "data_migration_job", "ml_training_job",
}  # fmt: skip
CASE_START = T0 + 5400  # 01:30, inside the window simulated below
WINDOW = (240, 480)  # steps 01:00-03:00


@pytest.fixture(scope="module")
def baseline():
    sim = Simulator(quiet_config())
    return sim, sim.simulate_chunk(*WINDOW)


def _target(sim: Simulator, spec: ScenarioSpec) -> dict:
    if spec.level == "host":
        return {"node": 1}
    names = [a.name for a in ARCHETYPES]
    arch = sim.fleet.inst_arch
    eligible = [i for i in range(sim.fleet.n_instances) if names[arch[i]] in spec.archetypes]
    # Prefer a request-serving instance so that latency/throughput effects can be checked too.
    serving = [i for i in eligible if ARCHETYPES[arch[i]].serves_requests]
    assert eligible, f"no {spec.archetypes} instance in the test fleet"
    return {"instance": (serving or eligible)[0]}


def _values(chunk, case, effect: Effect, rows: slice) -> np.ndarray:
    if effect.metric.startswith("host_"):
        return chunk.host[rows, case.node, HOST_INDEX[effect.metric]]
    if effect.where == "vms":
        cols = np.flatnonzero((chunk.node_of[rows] == case.node).all(axis=0))
        return chunk.vm[rows][:, cols, VM_INDEX[effect.metric]]
    col = int(np.searchsorted(chunk.instance_idx, case.instance))
    return chunk.vm[rows, col, VM_INDEX[effect.metric]]


def test_catalogue_covers_the_issue():
    assert set(CATALOGUE.names("anomaly")) >= REQUIRED_ANOMALIES
    assert set(CATALOGUE.names("deceptive")) >= REQUIRED_DECEPTIVE
    assert len(CATALOGUE.names("anomaly")) >= 24
    assert len(CATALOGUE.names("deceptive")) >= 12
    assert len(CATALOGUE) < 64  # scenario masks are uint64 bit sets
    for spec in CATALOGUE:
        assert spec.effects and spec.logs and spec.variants, spec.name
        for cue in spec.logs:
            assert cue.template in TEMPLATE_INDEX, (spec.name, cue.template)


@pytest.mark.parametrize("name", CATALOGUE.names())
def test_scenario_signature(name: str, baseline):
    """Injected at full intensity, each declared effect moves its metric in the declared
    direction versus the same run without the case, the primary effect also versus the
    window just before the case, and every declared log template is printed."""
    _, base = baseline
    spec = CATALOGUE.get(name)
    sim = Simulator(quiet_config())
    case = sim.inject(name, CASE_START, 1800, intensity=1.0, **_target(sim, spec))
    chunk = sim.simulate_chunk(*WINDOW)
    r0 = (case.start - T0) // 15 - WINDOW[0]
    r1 = (case.end - T0) // 15 - WINDOW[0]
    during, before = slice(r0, r1), slice(2 * r0 - r1, r0)
    checked = 0
    for k, effect in enumerate(spec.effects):
        with_case = _values(chunk, case, effect, during)
        if np.isnan(with_case).all():
            continue  # a request metric on a batch job: the series does not exist
        without = _values(base, case, effect, during)
        delta = np.nanmean(with_case) - np.nanmean(without)
        assert np.sign(delta) == effect.sign, (name, effect.metric, delta)
        if k == 0:
            pre = np.nanmean(_values(chunk, case, effect, before))
            assert np.sign(np.nanmean(with_case) - pre) == effect.sign, (
                name,
                effect.metric,
                "vs before",
            )
        checked += 1
    assert checked >= 1
    lines = chunk.logs.take(np.flatnonzero(chunk.logs.case == case.case_id))
    printed = {TEMPLATES[t].key for t in lines.template}
    assert set(spec.log_templates()) <= printed, set(spec.log_templates()) - printed
    lead = max((c.offset_s for c in spec.logs if c.phase == "pre"), default=0.0)
    ts = lines.ts_ms / 1000
    assert ts.min() >= case.start - lead - 10 and ts.max() <= case.end + 10


@pytest.mark.parametrize("name", CATALOGUE.names("deceptive"))
def test_deceptive_normals_are_deceptive(name: str):
    """A deceptive normal shares part of its metric signature with the anomaly it mimics, and
    its explaining log lines are printed by no anomaly and by no background source."""
    spec = CATALOGUE.get(name)
    assert spec.mimics and spec.context

    def signature(s: ScenarioSpec) -> set[tuple[str, int]]:
        return {(e.metric.split("_", 1)[1], e.sign) for e in s.effects}

    for other in spec.mimics:
        target = CATALOGUE.get(other)
        assert target.kind == "anomaly"
        assert signature(spec) & signature(target), (name, other)
    anomaly_templates = {t for s in CATALOGUE if s.kind == "anomaly" for t in s.log_templates()}
    explaining = {c.template for c in spec.logs if c.phase in ("pre", "start")}
    assert explaining and not explaining & anomaly_templates
    assert all(TEMPLATES[TEMPLATE_INDEX[t]].family == "scenario" for t in explaining)


def test_deceptive_context_precedes_or_opens_the_case(busy_sim, busy_day):
    """In a generated day, every deceptive case carries its explaining lines at its start."""
    logs = busy_day.logs
    seen = 0
    for case in busy_sim.cases:
        if case.kind != "deceptive":
            continue
        spec = CATALOGUE.get(case.scenario)
        mine = logs.take(np.flatnonzero(logs.case == case.case_id))
        early = {
            TEMPLATES[t].key
            for t, ts in zip(mine.template, mine.ts_ms, strict=True)
            if ts / 1000 <= case.start + 90
        }
        wanted = {
            c.template
            for c in spec.logs
            if c.phase in ("pre", "start") and case.start - c.offset_s >= busy_sim.config.start
        }
        assert wanted <= early, (case.scenario, wanted - early)
        seen += 1
    assert seen > 20


def test_scheduled_context_recurs_at_the_same_local_time():
    sim = Simulator(quiet_config(hours=72, rates=ScenarioRates(0, 0, 0, scheduled=True)))
    by_target: dict[tuple[str, int, int], list[int]] = {}
    for case in sim.cases:
        if case.scheduled and CATALOGUE.get(case.scenario).schedule.every_hours == 24:
            by_target.setdefault((case.scenario, case.node, case.instance), []).append(case.start)
    repeated = [starts for starts in by_target.values() if len(starts) >= 2]
    assert repeated
    for starts in repeated:
        assert len({s % 86400 for s in starts}) == 1


def test_heldout_variants_differ_from_training():
    for spec in CATALOGUE:
        train, held = spec.variants_for("train"), spec.variants_for("heldout")
        assert train and held, spec.name
        for h in held:
            assert all(
                h.intensity != t.intensity
                or h.duration_s != t.duration_s
                or h.archetypes != t.archetypes
                for t in train
            ), h.id


def test_variant_set_selects_cases():
    rates = ScenarioRates(2.0, 2.0, 1.0, scheduled=True)
    train = Simulator(quiet_config(hours=12, rates=rates, variant_set="train"))
    held = Simulator(quiet_config(hours=12, rates=rates, variant_set="heldout"))
    assert train.cases and held.cases
    assert {c.split for c in train.cases} == {"train"}
    assert {c.split for c in held.cases} == {"heldout"}
    assert {c.variant for c in train.cases}.isdisjoint({c.variant for c in held.cases})


def test_cases_overlap_normal_load_changes_and_vary(busy_sim):
    cases = [c for c in busy_sim.cases if not c.scheduled]
    assert len({round(c.intensity, 1) for c in cases}) >= 4
    assert len({c.end - c.start for c in cases}) >= 10
    assert {"anomaly", "deceptive"} <= {c.kind for c in busy_sim.cases}
    assert {"vm", "host"} <= {c.level for c in busy_sim.cases}


def test_masks_follow_cases(busy_sim, busy_day):
    for case in busy_sim.cases[:200]:
        bit = np.uint64(1) << np.uint64(CATALOGUE.index(case.scenario))
        s0 = (case.start - T0) // 15
        if case.level == "host":
            assert busy_day.host_mask[s0, case.node] & bit
        else:
            col = int(np.searchsorted(busy_day.instance_idx, case.instance))
            if busy_day.node_of[s0, col] >= 0:
                assert busy_day.vm_mask[s0, col] & bit
