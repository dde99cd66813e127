"""Small simulations shared by the simulator tests (built once per session)."""

from __future__ import annotations

import pytest

from ingest.simulator import ScenarioRates, SimConfig, Simulator

T0 = 1736121600  # 2025-01-06 00:00 UTC, a Monday
QUIET = ScenarioRates(0.0, 0.0, 0.0, scheduled=False)


def quiet_config(**overrides) -> SimConfig:
    """A fleet with no random or scheduled cases, no churn: a clean baseline for injection."""
    values = dict(
        seed=3, n_nodes=4, n_instances=48, hours=4, start=T0, rates=QUIET,
        churn_per_day=0.0, migrations_per_instance_day=0.0,
    )  # fmt: skip
    values.update(overrides)
    return SimConfig(**values)


@pytest.fixture(scope="session")
def busy_sim() -> Simulator:
    """A day of a small fleet with every kind of case turned up, for statistics."""
    rates = ScenarioRates(1.0, 1.5, 0.5, scheduled=True)
    return Simulator(SimConfig(seed=11, n_nodes=8, hours=24, start=T0, rates=rates))


@pytest.fixture(scope="session")
def busy_day(busy_sim: Simulator):
    return busy_sim.simulate_chunk(0, busy_sim.n_steps)
