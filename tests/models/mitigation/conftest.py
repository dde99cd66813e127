"""Small fitted engines shared by the mitigation tests (fitted once per session)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.mitigation.data import OUTCOMES, simulated_history
from models.mitigation.engine import CausalEngine, EngineConfig
from models.mitigation.policy import Policy, PolicyConfig

SMALL = dict(n_estimators=60, min_samples_leaf=10, nuisance_trees=60, explain_sample=800)


@pytest.fixture(scope="session")
def sim_events():
    return simulated_history(2500, seed=1000)


@pytest.fixture(scope="session")
def sim_engine(sim_events) -> CausalEngine:
    events, _ = sim_events
    cfg = EngineConfig(outcomes=("downtime_minutes", "capacity_cost_node_hours"), **SMALL)
    return CausalEngine().fit(events, events["action"], events[list(OUTCOMES)], cfg)


@pytest.fixture(scope="session")
def probe():
    """Fresh events from another fleet to ask the engine about."""
    return simulated_history(1500, seed=1001)


def policy(engine: CausalEngine, **overrides) -> Policy:
    return Policy(engine, PolicyConfig(**overrides))


def synthetic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Three actions with known heterogeneous effects and confounded assignment:
    theta_b(x) = 1 + x1, theta_c(x) = 1.5 * (x2 > 0) - 1; P(A | X) depends on x1 and x3,
    which also move the baseline outcome. Returns (X, A, Y, true effects [n, 2])."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.uniform(-1, 1, (n, 3)), columns=["x1", "x2", "x3"])
    logits = np.stack([np.zeros(n), 1.2 * X["x1"], 0.8 * X["x3"]], axis=1)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    a = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, 2)
    theta = np.stack([1 + X["x1"], 1.5 * (X["x2"] > 0) - 1.0], axis=1)
    base = 1.0 + X["x1"] + 0.5 * X["x3"] ** 2
    y = base + np.where(a == 1, theta[:, 0], 0) + np.where(a == 2, theta[:, 1], 0)
    y = y + rng.normal(0, 0.5, n)
    return X, np.array(["a", "b", "c"])[a], y.to_numpy(), theta
