"""Fallback on each of its reasons, capacity overrides, and the recommendation record."""

from __future__ import annotations

import numpy as np
import pytest

from models.mitigation.policy import CapacityContext, CapacityRules, PolicyConfig

from .conftest import policy

TRUSTING = dict(alpha=1.0, overlap=(0.0, 1.0), ood_quantile=1.0)  # z = 0: never falls back


@pytest.fixture(scope="module")
def probe_evidence(sim_engine, probe):
    events, _ = probe
    pol = policy(sim_engine, **TRUSTING)
    return pol, pol.evidence(events, legacy=None)


def _legacy_other_than_model(ev) -> np.ndarray:
    """A legacy action that differs from the model's choice for every event."""
    return (ev.model_action + 1) % len(ev.est.actions)


def test_out_of_distribution_events_fall_back_and_say_so(sim_engine, probe):
    events, _ = probe
    odd = events.iloc[:3].copy()
    odd.loc[odd.index[0], "fault"] = "cosmic_ray"  # a category never seen in training
    odd.loc[odd.index[1], "instances_hosted"] = 400.0  # far beyond any node in the history
    pol = policy(sim_engine)
    rec = pol.recommend(odd.iloc[0].to_dict(), legacy_action="reboot_host")
    assert rec.fallback_reason == "out_of_distribution"
    assert rec.action == "reboot_host"
    rec = pol.recommend(odd.iloc[1], legacy_action="observe")
    assert rec.fallback_reason == "out_of_distribution" and rec.action == "observe"
    assert rec.ood_score > rec.ood_threshold


def test_low_overlap_falls_back(probe_evidence):
    pol, ev = probe_evidence
    legacy = _legacy_other_than_model(ev)
    band = PolicyConfig(**{**TRUSTING, "overlap": (0.05, 0.95)})
    d = pol.decide(ev, legacy, config=band)
    prop = ev.est.propensity[np.arange(len(legacy)), ev.model_action]
    ok = np.isfinite(ev.est.ood_score)  # hard out-of-distribution cases aside
    rare = (prop < 0.05) & ok
    assert rare.any()
    assert set(d.fallback[rare]) == {"low_overlap"}
    np.testing.assert_array_equal(d.action[rare], legacy[rare])
    assert set(d.fallback[~rare & ok]) == {None}


def test_uncertain_advantage_falls_back(probe_evidence):
    pol, ev = probe_evidence
    legacy = _legacy_other_than_model(ev)
    loose = pol.decide(ev, legacy)
    strict = pol.decide(ev, legacy, config=PolicyConfig(**{**TRUSTING, "alpha": 1e-6}))
    assert loose.fallback_share < strict.fallback_share
    unsure = strict.fallback == "uncertain"
    ok = np.isfinite(ev.est.ood_score)
    # At a 1 - 1e-6 level nearly every interval includes zero; those that still exclude it
    # are the events where the model is most sure, far from zero.
    assert unsure.mean() > 0.5
    sure = ~unsure & ok
    assert np.all(strict.advantage[sure] + 4.89 * strict.advantage_se[sure] < 0)
    np.testing.assert_array_equal(strict.action[unsure], legacy[unsure])


def test_no_fallback_when_the_model_agrees_with_legacy(probe_evidence):
    pol, ev = probe_evidence
    strict = PolicyConfig(alpha=1e-6, overlap=(0.4, 0.6), ood_quantile=1.0)
    d = pol.decide(ev, ev.model_action, config=strict)
    assert set(d.fallback) == {None}
    np.testing.assert_array_equal(d.action, ev.model_action)


def test_reason_precedence_ood_then_overlap_then_uncertain(probe_evidence):
    pol, ev = probe_evidence
    legacy = _legacy_other_than_model(ev)
    everything = PolicyConfig(alpha=1e-6, overlap=(0.999, 1.0), ood_quantile=0.0)
    assert set(pol.decide(ev, legacy, config=everything).fallback) == {"out_of_distribution"}
    no_ood = PolicyConfig(alpha=1e-6, overlap=(0.999, 1.0), ood_quantile=1.0)
    ok = np.isfinite(ev.est.ood_score)
    assert set(pol.decide(ev, legacy, config=no_ood).fallback[ok]) == {"low_overlap"}


def _migrating_event(pol, events):
    ev = pol.evidence(events, legacy=None)
    i = int(np.flatnonzero(ev.model_action == pol.actions.index("live_migrate_then_repair"))[0])
    return events.iloc[[i]]


def test_migration_needs_spare_rack_capacity(sim_engine, probe):
    events, _ = probe
    pol = policy(sim_engine, **TRUSTING)
    x = _migrating_event(pol, events)
    n = float(x["instances_hosted"].iloc[0])
    free = pol.recommend(x, CapacityContext(rack_spare_slots=n), "observe")
    assert free.action == "live_migrate_then_repair" and free.override_reason is None
    full = pol.recommend(x, CapacityContext(rack_spare_slots=n - 1), "observe")
    assert full.override_reason == "rack_capacity"
    assert full.action != "live_migrate_then_repair"
    # The replacement is the best remaining action by the model's estimate.
    mu = {e.action: e.expected_downtime for e in full.estimates}
    del mu["live_migrate_then_repair"]
    assert full.action == min(mu, key=mu.get)
    unknown = pol.recommend(x, CapacityContext(rack_spare_slots=None), "observe")
    assert unknown.override_reason is None


def test_at_most_k_nodes_out_for_repair_per_cluster(sim_engine, probe):
    events, _ = probe
    pol = policy(sim_engine, **TRUSTING)
    x = _migrating_event(pol, events)
    busy = CapacityContext(cluster_out_for_repair=2)
    rec = pol.recommend(x, busy, "observe")
    assert rec.override_reason == "cluster_repair_limit"
    assert rec.action not in ("live_migrate_then_repair", "mark_out_for_repair")
    relaxed = policy(sim_engine, **TRUSTING, rules=CapacityRules(max_out_for_repair_per_cluster=3))
    assert relaxed.recommend(x, busy, "observe").override_reason is None
    # A fallback action is subject to the same rules.
    wary = policy(sim_engine, alpha=1.0, overlap=(0.0, 1.0), ood_quantile=0.0)
    rec = wary.recommend(x, busy, "mark_out_for_repair")
    assert rec.fallback_reason == "out_of_distribution"
    assert rec.override_reason == "cluster_repair_limit"
    assert rec.action != "mark_out_for_repair"


def test_cost_weight_trades_downtime_for_capacity(sim_engine, probe):
    events, _ = probe
    plain = policy(sim_engine, **TRUSTING)
    costly = policy(sim_engine, **TRUSTING, capacity_weight=20.0)
    ev0, ev1 = plain.evidence(events, None), costly.evidence(events, None)
    d0 = plain.decide(ev0, ev0.model_action)
    d1 = costly.decide(ev1, ev1.model_action)
    cap = ev1.est.mu["capacity_cost_node_hours"]
    rows = np.arange(len(events))
    assert cap[rows, d1.action].mean() < cap[rows, d0.action].mean()
    changed = d1.model_action != ev1.downtime_action
    assert changed.any()
    assert set(d1.override[changed]) == {"cost_tradeoff"}
    assert set(d0.override) == {None}


def test_recommendation_record(sim_engine, probe):
    events, _ = probe
    pol = policy(sim_engine)
    rec = pol.recommend(events.iloc[5].to_dict(), legacy_action="reboot_host")
    assert rec.legacy_action == "reboot_host"
    assert [e.action for e in rec.estimates] == list(sim_engine.actions)
    assert rec.advantage_low <= rec.advantage <= rec.advantage_high
    assert rec.interval_level == pytest.approx(0.9)
    assert rec.model_version is None  # the caller fills it in
    assert rec.fallback_reason in (None, "uncertain", "low_overlap", "out_of_distribution")
    assert 1 <= len(rec.explanation) <= 3
    covariate, _, sentence = rec.explanation[0]
    assert covariate in sim_engine.config.covariates
    assert covariate in sentence and "min" in sentence
    d = rec.to_dict()
    assert d["estimates"][0]["action"] == sim_engine.actions[0]
    default = next(e for e in rec.estimates if e.action == "mark_out_for_repair")
    assert default.effect_vs_default == 0.0


def test_recommend_without_legacy_action_uses_the_likeliest_legacy_choice(sim_engine, probe):
    events, _ = probe
    pol = policy(sim_engine)
    rec = pol.recommend(events.iloc[7].to_dict())
    best = max(rec.estimates, key=lambda e: e.propensity)
    assert rec.legacy_action == best.action


def test_action_distribution_sums_to_one(probe_evidence):
    pol, ev = probe_evidence
    probs = ev.est.propensity
    pi = pol.action_distribution(ev, probs)
    np.testing.assert_allclose(pi.sum(axis=1), 1.0)
    # With a trusting config the policy ignores the legacy draw (hard OOD cases aside).
    ok = np.isfinite(ev.est.ood_score)
    np.testing.assert_allclose(pi[np.arange(len(pi)), ev.model_action][ok], 1.0)
