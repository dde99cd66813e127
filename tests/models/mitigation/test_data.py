"""History schema: row-level validation errors the import page can show."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.mitigation.data import (
    COVARIATES,
    Featurizer,
    RowError,
    read_history_csv,
    simulated_history,
    validate_history,
)


def _good(n: int = 5) -> pd.DataFrame:
    events, _ = simulated_history(n, seed=3)
    return events


def test_simulator_events_are_valid_and_keep_truth_apart():
    events, truth = simulated_history(200, seed=3)
    clean, errors = validate_history(events)
    assert errors == []
    assert len(clean) == 200
    assert not [c for c in events.columns if c.startswith(("mu_", "y_", "propensity"))]
    assert truth.mu["downtime_minutes"].shape == (200, 5)
    np.testing.assert_array_equal(truth.oracle, truth.mu["downtime_minutes"].argmin(axis=1))


def test_bad_rows_are_reported_and_left_out():
    frame = _good(8)
    # As read from a hand-edited CSV: any cell can hold text.
    frame = frame.astype(object)
    frame.loc[0, "severity"] = 1.5
    frame.loc[1, "action"] = "pray"
    frame.loc[2, "downtime_minutes"] = "ten"
    frame.loc[3, "fault"] = "  "
    frame.loc[4, "interruptions"] = frame.loc[4, "instances_hosted"] + 1
    frame.loc[5, "event_id"] = frame.loc[6, "event_id"]
    frame.loc[7, "instances_hosted"] = 0
    clean, errors = validate_history(frame)
    got = {(e.row, e.column) for e in errors}
    assert got == {
        (0, "severity"),
        (1, "action"),
        (2, "downtime_minutes"),
        (3, "fault"),
        (4, "interruptions"),
        (6, "event_id"),
        (7, "instances_hosted"),
    }
    assert list(clean.index) == [5]
    msg = next(e.message for e in errors if e.row == 0)
    assert "above 1" in msg
    assert "unknown action 'pray'" in next(e.message for e in errors if e.row == 1)
    assert clean["severity"].dtype == float


def test_a_missing_required_column_rejects_the_file():
    frame = _good().drop(columns=["severity", "action"])
    clean, errors = validate_history(frame)
    assert clean.empty
    assert {(e.row, e.column) for e in errors} == {(None, "severity"), (None, "action")}


def test_optional_columns_may_be_absent_and_new_faults_are_accepted():
    frame = _good().drop(columns=["interruptions", "capacity_cost_node_hours", "event_id"])
    frame.loc[0, "fault"] = "gpu"
    clean, errors = validate_history(frame)
    assert errors == [] and len(clean) == len(frame)


def test_csv_round_trip_and_unreadable_file(tmp_path):
    path = tmp_path / "history.csv"
    _good(20).to_csv(path, index=False)
    clean, errors = read_history_csv(path)
    assert errors == [] and len(clean) == 20
    clean, errors = read_history_csv(tmp_path / "missing.csv")
    assert clean.empty and isinstance(errors[0], RowError) and errors[0].row is None


def test_featurizer_one_hot_and_unknown_categories():
    frame = _good(50)
    feat = Featurizer(COVARIATES, ("fault",)).fit(frame)
    Z = feat.transform(frame)
    k = len(feat.categories["fault"])
    assert Z.shape == (50, k + len(COVARIATES) - 1)
    np.testing.assert_allclose(Z[:, :k].sum(axis=1), 1.0)
    odd = frame.iloc[:2].copy()
    odd.loc[odd.index[0], "fault"] = "gpu"
    assert feat.unknown_category(odd).tolist() == [True, False]
    assert feat.transform(odd)[0, :k].sum() == 0
