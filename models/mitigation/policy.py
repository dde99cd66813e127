"""From effect estimates to one action per event: the best action when the model can be
trusted, the legacy runbook's action when it cannot (and why), and capacity rules that
override either.

Order of decisions for an event x whose legacy action is l:
1. c = argmin_a objective(a), objective = E[downtime(a)] + w_c E[capacity(a)]
   + w_i E[interruptions(a)] (weights 0 by default: downtime only).
2. Fallback to l, first reason that applies:
   ``out_of_distribution`` (OOD score above the training quantile, or an unseen category /
   a covariate far outside the training range; applies even when c == l, since then the
   estimates themselves are not to be trusted), and, only when c != l,
   ``low_overlap`` (the estimated logging propensity of c is outside the overlap band: few
   comparable past events took c, so its effect is an extrapolation) and
   ``uncertain`` (the 1 - alpha interval of objective(c) - objective(l) includes zero).
3. Capacity overrides on the action from 2: a migration needs spare instance slots on the
   rack (``rack_capacity``); at most K nodes of a cluster out for repair
   (``cluster_repair_limit``). A blocked action is replaced by the allowed action with the
   best estimated objective. With non-zero cost weights, an event whose model choice differs
   from the downtime-only choice is marked ``cost_tradeoff``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from models.mitigation.data import PRIMARY, as_frame
from models.mitigation.engine import CausalEngine, Estimates

FALLBACK_REASONS = ("out_of_distribution", "low_overlap", "uncertain")
OVERRIDE_REASONS = ("rack_capacity", "cluster_repair_limit", "cost_tradeoff")
CAPACITY = "capacity_cost_node_hours"
INTERRUPTIONS = "interruptions"


@dataclass(frozen=True)
class CapacityRules:
    migration_needs_rack_capacity: bool = True
    max_out_for_repair_per_cluster: int | None = 2
    migration_actions: tuple[str, ...] = ("live_migrate_then_repair",)
    repair_actions: tuple[str, ...] = ("live_migrate_then_repair", "mark_out_for_repair")


@dataclass(frozen=True)
class PolicyConfig:
    alpha: float = 0.1  # the "uncertain" check uses intervals at level 1 - alpha (two-sided)
    # Level of the intervals a Recommendation shows, whatever the tuned fallback level is.
    display_alpha: float = 0.1
    overlap: tuple[float, float] = (0.01, 0.99)
    ood_quantile: float = 0.995
    capacity_weight: float = 0.0  # downtime minutes one node-hour of capacity is worth
    interruption_weight: float = 0.0  # downtime minutes one interruption is worth
    rules: CapacityRules = field(default_factory=CapacityRules)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PolicyConfig:
        d = dict(d)
        rules = d.pop("rules", {}) or {}
        for k in ("migration_actions", "repair_actions"):
            if k in rules:
                rules[k] = tuple(rules[k])
        if "overlap" in d:
            d["overlap"] = tuple(d["overlap"])
        return cls(rules=CapacityRules(**rules), **d)

    def weights(self) -> dict[str, float]:
        w = {PRIMARY: 1.0}
        if self.capacity_weight:
            w[CAPACITY] = self.capacity_weight
        if self.interruption_weight:
            w[INTERRUPTIONS] = self.interruption_weight
        return w


@dataclass(frozen=True)
class CapacityContext:
    """What the capacity rules need to know about the event's surroundings.
    ``rack_spare_slots=None`` means unknown and is not treated as a shortage."""

    rack_spare_slots: float | None = None
    cluster_out_for_repair: int = 0


@dataclass
class ActionEstimate:
    action: str
    expected_downtime: float
    low: float  # interval of the expected downtime from the effect interval (the default
    high: float  # action's own level is a point estimate, common to all actions)
    effect_vs_default: float
    propensity: float


@dataclass
class Recommendation:
    action: str  # what to do
    model_action: str  # what the model alone would do
    legacy_action: str
    estimates: list[ActionEstimate]
    advantage: float  # objective(model_action) - objective(legacy), minutes; < 0 = better
    advantage_low: float  # interval at ``interval_level`` (PolicyConfig.display_alpha)
    advantage_high: float
    interval_level: float
    fallback_reason: str | None
    override_reason: str | None
    explanation: list[tuple[str, float, str]]
    propensity: float  # estimated logging propensity of model_action
    ood_score: float
    ood_threshold: float
    model_version: str | None = None  # filled by the caller that knows the promoted version

    def to_dict(self) -> dict:
        d = asdict(self)
        d["explanation"] = [list(r) for r in self.explanation]
        return d


@dataclass
class Evidence:
    """Everything a decision needs that does not depend on thresholds or contexts, so that
    threshold tuning re-decides a batch without asking the forest again."""

    frame: pd.DataFrame
    est: Estimates
    objective: np.ndarray  # [n, K]
    model_action: np.ndarray  # [n]
    downtime_action: np.ndarray  # [n]
    contrasts: dict[int, tuple[np.ndarray, np.ndarray]]  # legacy l -> (point, se) of c vs l


@dataclass
class Decisions:
    action: np.ndarray
    model_action: np.ndarray
    legacy: np.ndarray
    fallback: np.ndarray  # object array of reason or None
    override: np.ndarray
    advantage: np.ndarray
    advantage_se: np.ndarray

    @property
    def fallback_share(self) -> float:
        return float(np.mean([r is not None for r in self.fallback]))

    @property
    def override_share(self) -> float:
        return float(np.mean([r is not None for r in self.override]))


def _contexts(contexts, n: int) -> tuple[np.ndarray, np.ndarray]:
    spare, out = np.full(n, np.nan), np.zeros(n)
    if contexts is None:
        return spare, out
    if isinstance(contexts, CapacityContext):
        contexts = [contexts] * n
    for i, ctx in enumerate(contexts):
        if ctx is not None:
            spare[i] = np.nan if ctx.rack_spare_slots is None else ctx.rack_spare_slots
            out[i] = ctx.cluster_out_for_repair
    return spare, out


class Policy:
    def __init__(self, engine: CausalEngine, config: PolicyConfig | None = None) -> None:
        self.engine = engine
        self.config = config or PolicyConfig()
        self.actions = engine.actions

    # -- batch ---------------------------------------------------------------------------
    def evidence(self, frame: pd.DataFrame, legacy: np.ndarray | None = None) -> Evidence:
        """Estimates for ``frame``; contrasts against ``legacy`` (indices per event), or
        against every action when ``legacy`` is None (needed to evaluate the policy
        off-policy, where the legacy action is a random draw)."""
        weights = self.config.weights()
        missing = [o for o in weights if o not in self.engine.config.outcomes]
        if missing:
            raise ValueError(f"the engine was not fitted on {missing}; refit with those outcomes")
        est = self.engine.estimate(frame, tuple(weights))
        objective = sum(w * est.mu[o] for o, w in weights.items())
        c = objective.argmin(axis=1)
        ev = Evidence(frame, est, objective, c, est.mu[PRIMARY].argmin(axis=1), {})
        wanted = range(len(self.actions)) if legacy is None else np.unique(legacy)
        for lv in wanted:
            t0 = np.full(len(frame), int(lv))
            point, var = np.zeros(len(frame)), np.zeros(len(frame))
            for outcome, w in weights.items():
                p, s = self.engine.contrast(frame, outcome, t0, c)
                point += w * p
                var += (w * s) ** 2  # outcomes' errors treated as independent
            ev.contrasts[int(lv)] = (point, np.sqrt(var))
        return ev

    def decide(
        self,
        ev: Evidence,
        legacy: np.ndarray,
        contexts=None,
        config: PolicyConfig | None = None,
    ) -> Decisions:
        cfg = config or self.config
        n = len(legacy)
        rows = np.arange(n)
        legacy = np.asarray(legacy, dtype=int)
        c = ev.model_action
        point, se = np.zeros(n), np.zeros(n)
        for lv in np.unique(legacy):
            sel = legacy == lv
            point[sel] = ev.contrasts[int(lv)][0][sel]
            se[sel] = ev.contrasts[int(lv)][1][sel]
        z = norm.ppf(1 - cfg.alpha / 2)
        prop_c = ev.est.propensity[rows, c]
        differs = c != legacy
        # Hard violations (score inf) count even when the quantile check is switched off.
        score = ev.est.ood_score
        ood = np.isinf(score) | (score > self.engine.ood.threshold(cfg.ood_quantile))
        low_overlap = differs & ((prop_c < cfg.overlap[0]) | (prop_c > cfg.overlap[1]))
        uncertain = differs & (point + z * se >= 0)
        fallback = np.full(n, None, dtype=object)
        fallback[uncertain] = "uncertain"
        fallback[low_overlap] = "low_overlap"
        fallback[ood] = "out_of_distribution"
        fell_back = ood | low_overlap | uncertain
        action = np.where(fell_back, legacy, c)

        override = np.full(n, None, dtype=object)
        weighted = set(cfg.weights()) != {PRIMARY}
        if weighted:
            override[~fell_back & (c != ev.downtime_action)] = "cost_tradeoff"
        allowed, full = self._allowed(ev.frame, contexts, cfg.rules)
        blocked = ~allowed[rows, action]
        if blocked.any():
            repair = [self.actions.index(a) for a in cfg.rules.repair_actions if a in self.actions]
            by_cluster = full & np.isin(action, repair)
            override[blocked] = np.where(by_cluster, "cluster_repair_limit", "rack_capacity")[
                blocked
            ]
            masked = np.where(allowed, ev.objective, np.inf)
            action = np.where(blocked, masked.argmin(axis=1), action)
        return Decisions(action, c, legacy, fallback, override, point, se)

    def _allowed(
        self, frame: pd.DataFrame, contexts, rules: CapacityRules
    ) -> tuple[np.ndarray, np.ndarray]:
        """[n, K] mask of actions the capacity rules allow, and where the cluster is full."""
        n, k = len(frame), len(self.actions)
        allowed = np.ones((n, k), dtype=bool)
        spare, out = _contexts(contexts, n)
        instances = frame["instances_hosted"].to_numpy(dtype=float)
        migration = [self.actions.index(a) for a in rules.migration_actions if a in self.actions]
        repair = [self.actions.index(a) for a in rules.repair_actions if a in self.actions]
        full = np.zeros(n, dtype=bool)
        if rules.max_out_for_repair_per_cluster is not None:
            full = out >= rules.max_out_for_repair_per_cluster
            allowed[np.ix_(full, repair)] = False
        if rules.migration_needs_rack_capacity:
            short = ~np.isnan(spare) & (np.nan_to_num(spare, nan=np.inf) < instances)
            allowed[np.ix_(short, migration)] = False
        # Some action must stay possible: the first one (observe) needs no capacity.
        allowed[~allowed.any(axis=1), 0] = True
        return allowed, full

    def action_distribution(
        self, ev: Evidence, legacy_probs: np.ndarray, contexts=None, config=None
    ) -> np.ndarray:
        """P(policy takes a | x) [n, K] when the legacy action is a draw from
        ``legacy_probs`` (estimated from logged data), as off-policy evaluation needs."""
        n, k = legacy_probs.shape
        pi = np.zeros((n, k))
        for lv in range(k):
            d = self.decide(ev, np.full(n, lv), contexts, config)
            pi[np.arange(n), d.action] += legacy_probs[:, lv]
        return pi

    # -- one event -----------------------------------------------------------------------
    def recommend(
        self,
        x: dict | pd.Series | pd.DataFrame,
        context: CapacityContext | None = None,
        legacy_action: str | None = None,
    ) -> Recommendation:
        """The recommendation for one event. Without ``legacy_action`` the legacy action is
        taken to be the one the legacy policy most often chose for such events (the
        estimated propensity's argmax)."""
        frame = as_frame(x)
        if legacy_action is None:
            z = self.engine.featurizer.transform(frame)
            legacy = int(self.engine.propensity_model.predict_proba(z)[0].argmax())
        else:
            legacy = self.actions.index(legacy_action)
        ev = self.evidence(frame, np.array([legacy]))
        d = self.decide(ev, np.array([legacy]), [context] if context else None)
        est = ev.est
        z = norm.ppf(1 - self.config.display_alpha / 2)
        mu, th, se = est.mu[PRIMARY][0], est.theta[PRIMARY][0], est.theta_se[PRIMARY][0]
        estimates = [
            ActionEstimate(
                action=a,
                expected_downtime=round(float(mu[i]), 2),
                low=round(float(mu[i] - z * se[i]), 2),
                high=round(float(mu[i] + z * se[i]), 2),
                effect_vs_default=round(float(th[i]), 2),
                propensity=round(float(est.propensity[0, i]), 4),
            )
            for i, a in enumerate(self.actions)
        ]
        c = int(d.model_action[0])
        # Explain the model's choice against the legacy action, or against the runner-up
        # when the two agree (there is no advantage over legacy to explain then).
        other = legacy if c != legacy else int(np.argsort(ev.objective[0])[1])
        reasons = self.engine.explain(frame, c, other)
        adv, adv_se = float(d.advantage[0]), float(d.advantage_se[0])
        return Recommendation(
            action=self.actions[int(d.action[0])],
            model_action=self.actions[c],
            legacy_action=self.actions[legacy],
            estimates=estimates,
            advantage=round(adv, 2),
            advantage_low=round(float(adv - z * adv_se), 2),
            advantage_high=round(float(adv + z * adv_se), 2),
            interval_level=1 - self.config.display_alpha,
            fallback_reason=d.fallback[0],
            override_reason=d.override[0],
            explanation=[tuple(r) for r in reasons],
            propensity=round(float(est.propensity[0, c]), 4),
            ood_score=float(est.ood_score[0]),
            ood_threshold=self.engine.ood.threshold(self.config.ood_quantile),
        )
