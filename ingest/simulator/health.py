"""Unhealthy-node events: covariates, a confounded legacy policy, and a structural causal model.

The model follows the shape of Deoxys' setting: an unhealthy node is detected with a fault
category and diagnostic signals X; the legacy rule-based runbook picks an action A; the
outcome Y (instance downtime, interruptions, capacity cost) follows from X and A.

Honest assumptions, stated once:
- Y depends on X and A only through the functions below plus exogenous noise. Every input of
  the legacy policy is in X, so there is no hidden confounder: adjusting for X identifies the
  effects. What makes naive comparison wrong is that severity raises both the chance of a
  heavy action and the baseline downtime.
- Counterfactual outcomes share the event's exogenous noise (whether the fault escalates,
  how long repairs take), so "what would have happened under action a" is one coherent world
  per event, and the observed outcome is exactly the counterfactual of the action taken.
- Effects are heterogeneous on purpose: which action is best depends on the fault category,
  severity, utilisation, instance count and hardware generation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ingest.simulator.config import rng_for

FAULTS: tuple[str, ...] = ("disk", "memory", "nic", "kernel_hang", "power", "host_agent")
ACTIONS: tuple[str, ...] = (
    "observe",
    "reboot_host",
    "redeploy_instances",
    "live_migrate_then_repair",
    "mark_out_for_repair",
)
OUTCOMES: tuple[str, ...] = ("downtime_minutes", "interruptions", "capacity_cost_node_hours")
COVARIATES: tuple[str, ...] = (
    "fault",
    "severity",
    "error_count",
    "node_age_days",
    "hw_generation",
    "instances_hosted",
    "cpu_utilization",
    "memory_utilization",
    "recent_repairs",
)
FAULT_INDEX = {name: i for i, name in enumerate(FAULTS)}
ACTION_INDEX = {name: i for i, name in enumerate(ACTIONS)}

# Per-fault structural parameters (order of FAULTS).
_ESCALATE = np.array([0.6, 0.9, -0.3, 1.2, 0.4, -3.5])  # log-odds shift of escalating
_REBOOT_RESIDUAL = np.array([0.9, 0.8, 0.45, 0.05, 0.95, 0.05])  # risk left after a reboot
_MIGRATION_RISK = np.array([-0.5, 0.2, 2.5, 1.5, 0.0, -1.0])  # log-odds shift of a failed migration
_HARDWARE = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])  # repair needs parts and a technician

Covariates = Mapping[str, np.ndarray]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def as_covariates(x: pd.DataFrame | Covariates) -> dict[str, np.ndarray]:
    """Covariates as arrays with ``fault`` as integer codes (accepts names or codes)."""
    out = {name: np.asarray(x[name]) for name in COVARIATES}
    fault = out["fault"]
    if fault.dtype.kind in "OUS":
        out["fault"] = np.array([FAULT_INDEX[str(f)] for f in fault], dtype=np.int64)
    else:
        out["fault"] = fault.astype(np.int64)
    for name in COVARIATES[1:]:
        out[name] = out[name].astype(float)
    return out


@dataclass(frozen=True)
class _Mechanism:
    """Intermediate quantities of the SCM for a batch of events."""

    n: np.ndarray
    p_escalate: np.ndarray
    p_migration_fails: np.ndarray
    t_fail: np.ndarray
    t_reboot: np.ndarray
    t_restart: np.ndarray
    repair_hours: np.ndarray
    residual: np.ndarray


def _mechanism(x: Covariates) -> _Mechanism:
    f = x["fault"].astype(np.int64)
    sev = x["severity"]
    age_years = x["node_age_days"] / 365.25
    slow = 1 + 0.15 * (4 - x["hw_generation"])  # older hardware boots and recovers slower
    p_esc = _sigmoid(
        -2.8 + 3.8 * sev + _ESCALATE[f] + 0.25 * np.log1p(age_years) + 0.35 * x["recent_repairs"]
    )
    p_mig = _sigmoid(
        -3.0
        + 2.2 * x["cpu_utilization"]
        + 2.0 * x["memory_utilization"]
        + _MIGRATION_RISK[f]
        + 1.0 * sev * (f == FAULT_INDEX["memory"])
    )
    return _Mechanism(
        n=x["instances_hosted"],
        p_escalate=p_esc,
        p_migration_fails=p_mig,
        t_fail=55.0 * slow * (1 + 0.5 * x["memory_utilization"]),
        t_reboot=7.0 * slow,
        t_restart=6.0 + 10.0 * x["memory_utilization"],
        repair_hours=2.0 + 30.0 * _HARDWARE[f],
        residual=_REBOOT_RESIDUAL[f],
    )


def expected_outcomes(x: pd.DataFrame | Covariates) -> dict[str, np.ndarray]:
    """E[Y(a) | X] for every action: ``{outcome: array [n_events, n_actions]}``. Ground truth."""
    m = _mechanism(as_covariates(x))
    n, pe, pm = m.n, m.p_escalate, m.p_migration_fails
    down = np.stack(
        [
            n * pe * m.t_fail,
            n * m.t_reboot + n * pe * m.residual * m.t_fail,
            n * m.t_restart + n * 0.03 * m.t_fail,
            n * ((1 - pm) * 0.3 + pm * (m.t_restart + 0.5 * pe * m.t_fail)),
            n * 0.5 + n * 0.6 * pe * m.t_fail,
        ],
        axis=1,
    )
    interruptions = np.stack([n * pe, n, n, n * pm, n * 0.6 * pe], axis=1)
    capacity = np.stack(
        [
            pe * m.repair_hours,
            0.2 + pe * m.residual * m.repair_hours,
            m.repair_hours,
            m.repair_hours + 0.5,
            12.0 + m.repair_hours,
        ],
        axis=1,
    )
    return {
        "downtime_minutes": down,
        "interruptions": interruptions,
        "capacity_cost_node_hours": capacity,
    }


def realize_outcomes(
    x: pd.DataFrame | Covariates, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One draw of Y(a) for every action, sharing each event's exogenous noise across actions."""
    return realize_with_details(x, rng)[0]


def realize_with_details(
    x: pd.DataFrame | Covariates, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Realised outcomes plus what happened under each action (escalation, failed migration,
    durations), which the time-series simulator turns into node outages and restarts."""
    m = _mechanism(as_covariates(x))
    k = len(m.n)
    u_esc, u_mig = rng.random(k), rng.random(k)
    # Mean-one log-normal factors, so that E[Y(a) | X] is exactly ``expected_outcomes``.
    fail_t = m.t_fail * rng.lognormal(-(0.45**2) / 2, 0.45, k)
    reboot_t = m.t_reboot * rng.lognormal(-(0.25**2) / 2, 0.25, k)
    restart_t = m.t_restart * rng.lognormal(-(0.3**2) / 2, 0.3, k)
    repair_h = m.repair_hours * rng.lognormal(-(0.5**2) / 2, 0.5, k)
    n, pe = m.n, m.p_escalate
    mig_fails = u_mig < m.p_migration_fails
    # Whether the fault escalates to a crash under each action (same uniform, different risk).
    escalates = np.stack(
        [
            u_esc < pe,
            u_esc < pe * m.residual,
            u_esc < 0.03,
            mig_fails & (u_esc < 0.5 * pe),
            u_esc < 0.6 * pe,
        ],
        axis=1,
    )
    down = np.stack(
        [
            n * escalates[:, 0] * fail_t,
            n * reboot_t + n * escalates[:, 1] * fail_t,
            n * restart_t + n * escalates[:, 2] * fail_t,
            n * np.where(mig_fails, restart_t + escalates[:, 3] * fail_t, 0.3),
            n * 0.5 + n * escalates[:, 4] * fail_t,
        ],
        axis=1,
    )
    interruptions = np.stack(
        [n * escalates[:, 0], n, n, n * mig_fails, n * escalates[:, 4]], axis=1
    )
    capacity = np.stack(
        [
            escalates[:, 0] * repair_h,
            0.2 + escalates[:, 1] * repair_h,
            repair_h,
            repair_h + 0.5,
            12.0 + repair_h,
        ],
        axis=1,
    )
    outcomes = {
        "downtime_minutes": np.round(down, 2),
        "interruptions": interruptions.astype(float),
        "capacity_cost_node_hours": np.round(capacity, 3),
    }
    details = {
        "escalates": escalates,
        "migration_fails": mig_fails,
        "fail_minutes": fail_t,
        "reboot_minutes": reboot_t,
        "restart_minutes": restart_t,
        "repair_hours": repair_h,
    }
    return outcomes, details


def legacy_scores(x: pd.DataFrame | Covariates) -> np.ndarray:
    """The old runbook's rule scores [n_events, n_actions]: heavier actions as severity rises."""
    c = as_covariates(x)
    f, sev = c["fault"], c["severity"]
    return np.stack(
        [
            1.5 - 5.0 * sev + 1.5 * (f == FAULT_INDEX["host_agent"]),
            0.5
            + 2.0 * (f == FAULT_INDEX["kernel_hang"])
            + 1.0 * (f == FAULT_INDEX["host_agent"])
            + 0.5 * (f == FAULT_INDEX["nic"])
            - 1.5 * sev,
            -1.0 + 3.5 * sev + 0.5 * (f == FAULT_INDEX["disk"]),
            -0.5
            + 2.0 * sev
            + 1.0 * (f == FAULT_INDEX["memory"])
            - 0.08 * np.maximum(c["instances_hosted"] - 10, 0),
            -1.5 + 4.0 * sev + 0.5 * c["recent_repairs"] + 0.8 * (f == FAULT_INDEX["power"]),
        ],
        axis=1,
    )


def legacy_propensities(x: pd.DataFrame | Covariates, temperature: float = 1.0) -> np.ndarray:
    """P(A = a | X) of the legacy policy: a softmax over the rule scores, so every action
    keeps some probability (operators override the runbook now and then)."""
    z = legacy_scores(x) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def legacy_policy(
    x: pd.DataFrame | Covariates, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Actions (indices into ACTIONS) the legacy policy takes; the most likely one without rng."""
    probs = legacy_propensities(x)
    if rng is None:
        return probs.argmax(axis=1)
    u = rng.random(len(probs))[:, None]
    return (u > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, len(ACTIONS) - 1)


def oracle(x: pd.DataFrame | Covariates, outcome: str = "downtime_minutes") -> np.ndarray:
    """The action with the lowest expected outcome given X (ground truth; for scoring only)."""
    return expected_outcomes(x)[outcome].argmin(axis=1)


def sample_covariates(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Diagnostic signals of ``n`` events from a fleet-wide prior (used without a time series)."""
    fault = rng.choice(len(FAULTS), n, p=[0.24, 0.22, 0.16, 0.14, 0.08, 0.16])
    severity = np.clip(rng.beta(2.0, 3.0, n) + 0.1 * (fault == FAULT_INDEX["memory"]), 0, 1)
    gen = rng.choice([1, 2, 3, 4], n, p=[0.2, 0.35, 0.3, 0.15])
    age = np.maximum((2025 - np.array([2017, 2019, 2021, 2023])[gen - 1]) * 365.25, 30)
    age = age + rng.normal(0, 90, n)
    counting = np.isin(fault, [FAULT_INDEX["disk"], FAULT_INDEX["memory"], FAULT_INDEX["nic"]])
    errors = rng.poisson(np.where(counting, np.exp(1 + 4 * severity), 1 + 3 * severity))
    return {
        "fault": fault.astype(np.int64),
        "severity": np.round(severity, 4),
        "error_count": errors.astype(float),
        "node_age_days": np.round(np.maximum(age, 20), 1),
        "hw_generation": gen.astype(float),
        "instances_hosted": (1 + rng.poisson(7, n) * (gen / 2.5)).round().astype(float),
        "cpu_utilization": np.round(rng.beta(3, 3, n), 4),
        "memory_utilization": np.round(rng.beta(4, 3, n), 4),
        "recent_repairs": rng.poisson(0.2 + 0.15 * age / 365.25).astype(float),
    }


@dataclass
class MitigationData:
    """Observed events (X, A, Y) and, separately, the ground truth nobody trains on."""

    events: pd.DataFrame  # event_id, covariates, action, observed outcomes
    counterfactuals: pd.DataFrame  # event_id, y_<outcome>__<action>, mu_..., propensity_..., oracle


def mitigation_frames(
    x: Covariates,
    actions: np.ndarray,
    realized: dict[str, np.ndarray],
    event_ids: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
) -> MitigationData:
    c = as_covariates(x)
    rows = np.arange(len(actions))
    events = pd.DataFrame({"event_id": event_ids, **(extra or {})})
    for name in COVARIATES:
        events[name] = [FAULTS[i] for i in c[name]] if name == "fault" else c[name]
    events["action"] = [ACTIONS[a] for a in actions]
    for outcome in OUTCOMES:
        events[outcome] = realized[outcome][rows, actions]
    cf = pd.DataFrame({"event_id": event_ids})
    expected = expected_outcomes(c)
    for outcome in OUTCOMES:
        for a, action in enumerate(ACTIONS):
            cf[f"y_{outcome}__{action}"] = realized[outcome][:, a]
    for outcome in OUTCOMES:
        for a, action in enumerate(ACTIONS):
            cf[f"mu_{outcome}__{action}"] = np.round(expected[outcome][:, a], 4)
    props = legacy_propensities(c)
    for a, action in enumerate(ACTIONS):
        cf[f"propensity__{action}"] = np.round(props[:, a], 6)
    cf["oracle_action"] = [ACTIONS[a] for a in expected["downtime_minutes"].argmin(axis=1)]
    return MitigationData(events=events, counterfactuals=cf)


def generate_unhealthy_events(n: int, seed: int) -> MitigationData:
    """``n`` historical events independent of any time series, for training mitigation models."""
    x = sample_covariates(rng_for(seed, "mitigation", "covariates"), n)
    actions = legacy_policy(x, rng_for(seed, "mitigation", "policy"))
    realized = realize_outcomes(x, rng_for(seed, "mitigation", "outcomes"))
    return mitigation_frames(x, actions, realized, np.arange(n))
