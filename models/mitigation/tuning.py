"""Choosing the fallback thresholds (interval level, overlap band, OOD quantile) on a
validation split that the engine was not fitted on, from logged data only.

Every candidate is scored by the doubly-robust estimate of its mean downtime (see ``ope``);
the simulator's truth, when there is one, is reported next to it but never used to choose.
The rule: take the candidate with the best estimated value; among all candidates, choose
the most cautious one (highest fallback share) whose extra downtime over that best one is,
with 95 % one-sided confidence, at most ``tolerance`` x the legacy policy's estimated mean
downtime. The fallback is insurance and the tolerance its premium; the confidence bound
(from the paired per-event scores, so the events' shared noise cancels) keeps a noisy
estimate from making the premium look cheaper than it is.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from models.mitigation.data import PRIMARY, SimTruth
from models.mitigation.ope import Nuisances, crossfit_nuisances, dr_scores
from models.mitigation.policy import FALLBACK_REASONS, Policy, PolicyConfig

ALPHAS = (1.0, 0.6, 0.4, 0.2, 0.1, 0.05)  # 1.0: z = 0, never "uncertain"
OVERLAP_LOWS = (0.0, 0.002, 0.005, 0.01, 0.02)
OOD_QUANTILES = (0.99, 0.995, 0.999, 1.0)


@dataclass
class TuningResult:
    config: PolicyConfig
    table: list[dict]  # one row per candidate
    chosen: int  # index into table
    legacy_value: float  # estimated mean downtime of the logged (legacy) policy
    tolerance: float

    def summary(self) -> dict:
        return {
            "chosen": self.table[self.chosen],
            "legacy_ope": round(self.legacy_value, 3),
            "tolerance": self.tolerance,
            "candidates": self.table,
        }


def tune_thresholds(
    policy: Policy,
    frame: pd.DataFrame,
    actions: np.ndarray,
    y: np.ndarray,
    *,
    truth: SimTruth | None = None,
    tolerance: float = 0.01,
    nuisances: Nuisances | None = None,
    grid: list[tuple[float, float, float]] | None = None,
    seed: int = 0,
) -> TuningResult:
    """``actions``: logged action indices; ``y``: logged downtime. Returns the chosen
    PolicyConfig (the policy's config with tuned thresholds) and the trade-off table."""
    eng = policy.engine
    k = len(policy.actions)
    a_idx = np.asarray(actions, dtype=int)
    if nuisances is None:
        nuisances = crossfit_nuisances(
            frame, a_idx, y, k,
            unit=frame[eng.config.per_unit[PRIMARY]].to_numpy(dtype=float)
            if PRIMARY in eng.config.per_unit else None,
            covariates=eng.config.covariates, categorical=eng.config.categorical,
            trees=eng.config.nuisance_trees, seed=seed,
        )  # fmt: skip
    ev = policy.evidence(frame, legacy=None)
    # The legacy policy is the logging policy, so its P(a | x) is the propensity itself.
    legacy_scores = dr_scores(nuisances.propensity, a_idx, y, nuisances)
    legacy_value = float(legacy_scores.mean())
    rows = np.arange(len(y))
    grid = grid or list(itertools.product(ALPHAS, OVERLAP_LOWS, OOD_QUANTILES))
    table, scores = [], []
    for alpha, low, q in grid:
        cfg = replace(policy.config, alpha=alpha, overlap=(low, 1.0 - low), ood_quantile=q)
        logged = policy.decide(ev, a_idx, config=cfg)
        pi = policy.action_distribution(ev, nuisances.propensity, config=cfg)
        psi = dr_scores(pi, a_idx, y, nuisances)
        row = {
            "alpha": alpha,
            "overlap_low": low,
            "ood_quantile": q,
            "fallback_share": round(logged.fallback_share, 4),
            **{
                f"{reason}_share": round(float(np.mean(logged.fallback == reason)), 4)
                for reason in FALLBACK_REASONS
            },
            "ope_downtime": round(float(psi.mean()), 3),
            "ope_se": round(float(psi.std(ddof=1) / np.sqrt(len(psi))), 3),
            # Paired with the legacy scores: the difference is far more precise than either.
            "ope_reduction": round(1 - float(psi.mean()) / legacy_value, 4),
        }
        if truth is not None:
            mu = truth.mu[PRIMARY]
            row["true_downtime"] = round(float(mu[rows, logged.action].mean()), 3)
            legacy_true = float(mu[rows, a_idx].mean())
            row["true_reduction"] = round(1 - row["true_downtime"] / legacy_true, 4)
        table.append(row)
        scores.append(psi)
    best = int(np.argmin([r["ope_downtime"] for r in table]))
    ok = []
    for i, psi in enumerate(scores):
        extra = psi - scores[best]
        upper = extra.mean() + 1.645 * extra.std(ddof=1) / np.sqrt(len(extra))
        table[i]["ope_extra_upper"] = round(float(upper), 3)
        if upper <= tolerance * legacy_value:
            ok.append(i)
    ok = ok or [best]
    # Most cautious first; among equals the stricter interval, then the wider overlap band.
    chosen = max(
        ok,
        key=lambda i: (
            table[i]["fallback_share"],
            -table[i]["alpha"],
            table[i]["overlap_low"],
            -table[i]["ood_quantile"],
        ),
    )
    pick = table[chosen]
    config = replace(
        policy.config,
        alpha=pick["alpha"],
        overlap=(pick["overlap_low"], 1.0 - pick["overlap_low"]),
        ood_quantile=pick["ood_quantile"],
    )
    return TuningResult(config, table, chosen, legacy_value, tolerance)
