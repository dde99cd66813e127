"""Unhealthy-node events: confounded legacy policy, overlap, heterogeneous effects."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.simulator import (
    ACTIONS,
    FAULTS,
    OUTCOMES,
    ScenarioRates,
    SimConfig,
    Simulator,
    expected_outcomes,
    generate_unhealthy_events,
    legacy_propensities,
    oracle,
)
from ingest.simulator.health import as_covariates

from .conftest import T0


@pytest.fixture(scope="module")
def history():
    return generate_unhealthy_events(20_000, seed=5)


def test_observed_outcome_is_the_counterfactual_of_the_action_taken(history):
    ev, cf = history.events, history.counterfactuals
    for outcome in OUTCOMES:
        picked = [cf.loc[i, f"y_{outcome}__{a}"] for i, a in enumerate(ev["action"])]
        np.testing.assert_allclose(ev[outcome], picked)


def test_counterfactuals_are_kept_apart(history):
    leaked = [
        c for c in history.events.columns if c.startswith(("y_", "mu_", "propensity", "oracle"))
    ]
    assert not leaked
    assert set(history.events["action"]) == set(ACTIONS)


def test_legacy_policy_is_confounded(history):
    """Naive mean outcome by action is biased against the true average under each action."""
    ev, cf = history.events, history.counterfactuals
    naive = ev.groupby("action")["downtime_minutes"].mean()
    true = {a: cf[f"y_downtime_minutes__{a}"].mean() for a in ACTIONS}
    naive_effect = naive["observe"] - naive["redeploy_instances"]
    true_effect = true["observe"] - true["redeploy_instances"]
    assert abs(naive_effect - true_effect) > 0.3 * abs(true_effect)
    assert max(abs(naive[a] - true[a]) / true[a] for a in ACTIONS) > 0.25
    # Confounded with severity: heavier actions for severe faults, which also fare worse.
    sev = ev.groupby("action")["severity"].mean()
    assert sev["mark_out_for_repair"] > sev["observe"] + 0.15
    assert sev["redeploy_instances"] > sev["observe"] + 0.15
    assert np.corrcoef(ev["severity"], cf["y_downtime_minutes__observe"])[0, 1] > 0.1


def test_overlap_is_present_but_not_perfect(history):
    props = history.counterfactuals[[f"propensity__{a}" for a in ACTIONS]].to_numpy()
    np.testing.assert_allclose(props.sum(axis=1), 1.0, atol=1e-5)
    assert (props.min(axis=1) > 0.003).mean() > 0.85
    assert props.min() < 0.01  # extreme strata are nearly deterministic
    ev = history.events
    for fault in FAULTS:
        taken = set(ev.loc[ev["fault"] == fault, "action"])
        assert taken == set(ACTIONS), fault


def test_effects_are_heterogeneous(history):
    cf, ev = history.counterfactuals, history.events
    assert cf["oracle_action"].nunique() >= 4
    best_by_fault = cf.groupby(ev["fault"])["oracle_action"].agg(
        lambda s: s.value_counts().index[0]
    )
    assert best_by_fault.nunique() >= 3
    # Within one fault category the best action still depends on the signals.
    memory = ev["fault"] == "memory"
    assert cf.loc[memory, "oracle_action"].nunique() >= 2
    # The oracle improves a lot on the legacy policy (Deoxys reports about half the downtime).
    mu = expected_outcomes(ev)["downtime_minutes"]
    legacy = (legacy_propensities(ev) * mu).sum(axis=1).mean()
    best = mu[np.arange(len(mu)), oracle(ev)].mean()
    assert best < 0.7 * legacy


def test_outcomes_are_noisy_but_centred(history):
    cf = history.counterfactuals
    for a in ACTIONS:
        y, mu = cf[f"y_downtime_minutes__{a}"], cf[f"mu_downtime_minutes__{a}"]
        assert np.std(y - mu) > 0.2 * np.std(mu)
        assert abs(y.mean() - mu.mean()) < 0.1 * mu.mean() + 1


def test_generator_is_deterministic(history):
    again = generate_unhealthy_events(20_000, seed=5)
    assert again.events.equals(history.events)
    other = generate_unhealthy_events(2_000, seed=6)
    assert not other.events["severity"].equals(history.events["severity"].iloc[:2000])


def test_covariates_round_trip(history):
    x = as_covariates(history.events.head(50))
    assert x["fault"].dtype.kind == "i"
    assert expected_outcomes(x)["downtime_minutes"].shape == (50, len(ACTIONS))


def test_time_series_raises_unhealthy_events_and_acts_on_them():
    sim = Simulator(
        SimConfig(
            seed=2,
            n_nodes=12,
            hours=48,
            start=T0,
            rates=ScenarioRates(0.0, 1.5, 0.0, scheduled=False),
        )
    )
    data = sim.mitigation()
    assert len(data.events) >= 10
    assert set(data.events.columns) >= {"ts", "node", "case_id", "action", "downtime_minutes"}
    assert len(data.counterfactuals) == len(data.events)
    faults = {c.case_id: c for c in sim.cases if c.level == "host"}
    for _, row in data.events.iterrows():
        case = faults[int(row["case_id"])]
        assert case.start <= row["ts"] < case.end
    reasons = set(sim.placements.down_reason)
    assert reasons & {"reboot", "crash"}
