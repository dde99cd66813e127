"""The causal engine: how much each mitigation action changes an event's outcome compared
with the legacy default action, with confidence intervals.

One econml ``CausalForestDML`` per modelled outcome, with the action as a discrete
multi-valued treatment whose control category is the default action. The nuisance models
E[Y | X] and P(A | X) are gradient-boosted (LightGBM) and cross-fitted by econml (``cv``
folds); the final causal forest uses honest splitting and bootstrap-of-little-bags
intervals. Outcomes that add up over a node's instances (downtime, interruptions) are
modelled per hosted instance: E[Y(a) | X] / n and the argmin over actions are unchanged
because n is a covariate, but the forest no longer has to learn the multiplicative instance
count in every leaf, which cuts the regret of the resulting policy noticeably.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from econml.dml import CausalForestDML
from lightgbm import LGBMClassifier, LGBMRegressor

from models.mitigation.data import ACTIONS, COVARIATES, PRIMARY, Featurizer
from models.mitigation.explain import Explainer
from models.mitigation.ood import OODDetector

log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    actions: tuple[str, ...] = ACTIONS
    # Control category of every effect; "auto" = the action the legacy policy logged most.
    default_action: str = "auto"
    covariates: tuple[str, ...] = COVARIATES
    categorical: tuple[str, ...] = ("fault",)
    outcomes: tuple[str, ...] = (PRIMARY,)
    # Outcome -> covariate it is summed over; those outcomes are modelled per unit.
    per_unit: dict[str, str] = field(
        default_factory=lambda: {PRIMARY: "instances_hosted", "interruptions": "instances_hosted"}
    )
    cv: int = 3
    n_estimators: int = 400  # a multiple of 4, econml's sub-forest size for the intervals
    # Chosen on the validation fleet (seed 1001) at 100k events; larger leaves trade some
    # interval coverage for lower policy regret (docs/mitigation.md, "Settings").
    min_samples_leaf: int = 40
    max_samples: float = 0.4
    max_features: float = 0.6
    nuisance_trees: int = 200
    nuisance_learning_rate: float = 0.05
    nuisance_leaves: int = 15
    nuisance_min_child: int = 20
    explain_sample: int = 4000
    random_state: int = 0
    n_jobs: int = 2

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> EngineConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("actions", "covariates", "categorical", "outcomes"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)


@dataclass
class Estimates:
    """Model output for a batch of events; arrays are [n_events, n_actions] in
    ``actions`` order unless noted. Everything is in the outcome's own units."""

    actions: tuple[str, ...]
    default: int
    mu: dict[str, np.ndarray]  # E[Y(a) | X]
    theta: dict[str, np.ndarray]  # E[Y(a) - Y(default) | X]; 0 in the default column
    theta_se: dict[str, np.ndarray]  # its standard error; 0 in the default column
    propensity: np.ndarray  # P(A = a | X) of the logging (legacy) policy, estimated
    ood_score: np.ndarray  # [n_events], see OODDetector.score


def _lgbm_regressor(cfg: EngineConfig, seed: int) -> LGBMRegressor:
    return LGBMRegressor(
        n_estimators=cfg.nuisance_trees,
        learning_rate=cfg.nuisance_learning_rate,
        num_leaves=cfg.nuisance_leaves,
        min_child_samples=cfg.nuisance_min_child,
        subsample=0.8,
        subsample_freq=1,
        random_state=seed,
        verbose=-1,
        n_jobs=1,  # one thread each: the boxes these run on are shared and small
    )


def _lgbm_classifier(cfg: EngineConfig, seed: int) -> LGBMClassifier:
    return LGBMClassifier(
        n_estimators=cfg.nuisance_trees,
        learning_rate=cfg.nuisance_learning_rate,
        num_leaves=cfg.nuisance_leaves,
        min_child_samples=cfg.nuisance_min_child,
        subsample=0.8,
        subsample_freq=1,
        random_state=seed,
        verbose=-1,
        n_jobs=1,
    )


class CausalEngine:
    """``CausalEngine().fit(X, A, Y, config)``; then ``estimate(frame)``/``contrast(...)``."""

    def fit(
        self,
        X: pd.DataFrame,
        A: np.ndarray | pd.Series | list[str],
        Y: pd.DataFrame | dict[str, np.ndarray],
        config: EngineConfig | None = None,
    ) -> CausalEngine:
        cfg = config or EngineConfig()
        started = time.perf_counter()
        self.config = cfg
        self.actions = tuple(cfg.actions)
        A = np.asarray(A, dtype=object)
        counts = pd.Series(A).value_counts()
        too_few = [a for a in self.actions if counts.get(a, 0) < 4 * cfg.cv]
        if too_few:
            raise ValueError(
                f"too few logged events for {', '.join(too_few)}: the effect of an action "
                "that was (almost) never taken cannot be estimated"
            )
        if not set(counts.index) <= set(self.actions):
            unknown = sorted(set(counts.index) - set(self.actions))
            raise ValueError(f"unknown actions in A: {unknown}")
        default = counts.idxmax() if cfg.default_action == "auto" else cfg.default_action
        self.default = self.actions.index(default)
        self.featurizer = Featurizer(cfg.covariates, cfg.categorical).fit(X)
        Z = self.featurizer.transform(X)
        a_idx = np.array([self.actions.index(a) for a in A])
        categories = [default] + [a for a in self.actions if a != default]

        self.forests: dict[str, CausalForestDML] = {}
        self.outcome_models: dict[str, LGBMRegressor] = {}
        nuisance_scores = {}
        for k, outcome in enumerate(cfg.outcomes):
            y = np.asarray(Y[outcome], dtype=float) / self._unit(X, outcome)
            forest = CausalForestDML(
                model_y=_lgbm_regressor(cfg, cfg.random_state + k),
                model_t=_lgbm_classifier(cfg, cfg.random_state + k),
                discrete_treatment=True,
                categories=categories,
                cv=cfg.cv,
                n_estimators=cfg.n_estimators,
                min_samples_leaf=cfg.min_samples_leaf,
                max_samples=cfg.max_samples,
                max_features=cfg.max_features,
                honest=True,
                inference=True,
                n_jobs=cfg.n_jobs,
                random_state=cfg.random_state + k,
            )
            with warnings.catch_warnings():
                # econml warns that LightGBM lacks sample_weight plumbing it does not use here
                warnings.simplefilter("ignore")
                forest.fit(y, A, X=Z)
            # Single events are predicted one at a time in the app: no process pool for those.
            for grf in forest.model_final_.estimators_:
                grf.n_jobs = 1
            self.forests[outcome] = forest
            self.outcome_models[outcome] = _lgbm_regressor(cfg, cfg.random_state + 100 + k).fit(
                Z, y
            )
            nuisance_scores[outcome] = {
                "y_r2": float(np.mean(forest.nuisance_scores_y)),
                "t_score": float(np.mean(forest.nuisance_scores_t)),
            }
            log.info(
                "causal forest %d/%d (%s) fitted at %.0fs: nuisance %s",
                k + 1,
                len(cfg.outcomes),
                outcome,
                time.perf_counter() - started,
                {key: round(v, 3) for key, v in nuisance_scores[outcome].items()},
            )
        self.propensity_model = _lgbm_classifier(cfg, cfg.random_state + 200).fit(Z, a_idx)
        self.ood = OODDetector(random_state=cfg.random_state).fit(X, self.featurizer)

        rng = np.random.default_rng(cfg.random_state)
        sample = rng.choice(len(X), size=min(cfg.explain_sample, len(X)), replace=False)
        theta_unit = self._theta_unit(Z[sample], PRIMARY if PRIMARY in cfg.outcomes else
                                      cfg.outcomes[0])  # fmt: skip
        self.explainer = Explainer(self.featurizer, self.actions, self.default).fit(
            X.iloc[sample], Z[sample], theta_unit
        )
        props = self.propensity_model.predict_proba(Z)
        self.metrics = {
            "n_events": len(X),
            "action_counts": {a: int(counts.get(a, 0)) for a in self.actions},
            "default_action": default,
            "nuisance": nuisance_scores,
            "share_all_propensities_above_1pct": float((props.min(axis=1) >= 0.01).mean()),
            "explainer_r2": self.explainer.fidelity,
            "fit_seconds": round(time.perf_counter() - started, 2),
        }
        return self

    def _unit(self, X: pd.DataFrame, outcome: str) -> np.ndarray:
        col = self.config.per_unit.get(outcome)
        if col is None:
            return np.ones(len(X))
        return np.maximum(X[col].to_numpy(dtype=float), 1.0)

    def _theta_unit(self, Z: np.ndarray, outcome: str) -> np.ndarray:
        """Per-unit effects [n, n_actions] vs the default (0 in the default column)."""
        raw = self.forests[outcome].const_marginal_effect(Z).reshape(len(Z), -1)
        return self._to_action_order(raw)

    def _to_action_order(self, per_treatment: np.ndarray) -> np.ndarray:
        out = np.zeros((per_treatment.shape[0], len(self.actions)))
        others = [i for i in range(len(self.actions)) if i != self.default]
        out[:, others] = per_treatment
        return out

    def estimate(self, X: pd.DataFrame, outcomes: tuple[str, ...] | None = None) -> Estimates:
        Z = self.featurizer.transform(X)
        props = self.propensity_model.predict_proba(Z)
        mu, theta, theta_se = {}, {}, {}
        for outcome in outcomes or self.config.outcomes:
            unit = self._unit(X, outcome)[:, None]
            inf = self.forests[outcome].const_marginal_effect_inference(Z)
            th = self._to_action_order(inf.point_estimate.reshape(len(Z), -1))
            se = self._to_action_order(inf.stderr.reshape(len(Z), -1))
            # E[Y | X] = sum_a P(a | X) E[Y(a) | X], so the default's level is the mean
            # outcome minus the propensity-weighted effects.
            base = self.outcome_models[outcome].predict(Z) - (props * th).sum(axis=1)
            mu[outcome] = (base[:, None] + th) * unit
            theta[outcome] = th * unit
            theta_se[outcome] = se * unit
        return Estimates(
            actions=self.actions,
            default=self.default,
            mu=mu,
            theta=theta,
            theta_se=theta_se,
            propensity=props,
            ood_score=self.ood.score(X),
        )

    def contrast(
        self, X: pd.DataFrame, outcome: str, t0: np.ndarray, t1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """E[Y(t1) - Y(t0) | X] and its standard error per event (t0, t1: action indices).

        Uses the forest's joint variance of the two effects, which is tighter than treating
        them as independent when both are estimated in the same leaves."""
        point, se = np.zeros(len(X)), np.zeros(len(X))
        differ = np.asarray(t0) != np.asarray(t1)
        if differ.any():
            sub = X.iloc[np.flatnonzero(differ)]
            names = np.array(self.actions, dtype=object)
            inf = self.forests[outcome].effect_inference(
                self.featurizer.transform(sub),
                T0=names[np.asarray(t0)[differ]],
                T1=names[np.asarray(t1)[differ]],
            )
            unit = self._unit(sub, outcome)
            point[differ] = inf.point_estimate.reshape(-1) * unit
            se[differ] = inf.stderr.reshape(-1) * unit
        return point, se

    def explain(self, x: pd.DataFrame, better: int, worse: int, top: int = 3):
        """Covariates behind E[Y(better) - Y(worse) | x] for one event, in plain words."""
        unit = float(self._unit(x, PRIMARY if PRIMARY in self.config.outcomes else
                                self.config.outcomes[0])[0])  # fmt: skip
        return self.explainer.explain(x, self.featurizer.transform(x), better, worse, unit, top)
