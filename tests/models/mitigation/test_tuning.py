"""Threshold tuning: the premium the fallback may cost decides how cautious it is."""

from __future__ import annotations

import numpy as np

from models.mitigation.data import PRIMARY
from models.mitigation.ope import crossfit_nuisances
from models.mitigation.tuning import tune_thresholds

from .conftest import policy

GRID = [(1.0, 0.0, 1.0), (0.2, 0.0, 1.0), (0.01, 0.05, 0.9)]  # none -> very cautious


def test_tolerance_sets_how_cautious_the_fallback_is(sim_engine, probe):
    events, truth = probe
    pol = policy(sim_engine)
    a = np.array([sim_engine.actions.index(x) for x in events["action"]])
    y = events[PRIMARY].to_numpy(dtype=float)
    nuis = crossfit_nuisances(events, a, y, 5, unit=events["instances_hosted"].to_numpy(float),
                              trees=60)  # fmt: skip
    strict = tune_thresholds(pol, events, a, y, truth=truth, tolerance=0.0, nuisances=nuis,
                             grid=GRID)  # fmt: skip
    table = strict.table
    assert [r["fallback_share"] for r in table] == sorted(r["fallback_share"] for r in table)
    assert table[0]["fallback_share"] == 0.0
    best = int(np.argmin([r["ope_downtime"] for r in table]))
    assert strict.chosen == best  # no premium allowed: the best estimate wins
    loose = tune_thresholds(pol, events, a, y, truth=truth, tolerance=10.0, nuisances=nuis,
                            grid=GRID)  # fmt: skip
    assert loose.chosen == 2  # any premium allowed: the most cautious candidate
    assert loose.config.alpha == 0.01 and loose.config.overlap == (0.05, 0.95)
    assert loose.config.ood_quantile == 0.9
    for row in table:
        assert {"true_downtime", "ope_extra_upper", "uncertain_share"} <= set(row)
