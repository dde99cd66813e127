"""Unhealthy-node histories as frames: the schema, row-level validation, the simulator's
events with their ground truth kept apart, and the covariate matrix the models see.

History schema (one row per event; CSV with a header, or a DataFrame):

| column | required | type and range |
|---|---|---|
| ``fault`` | yes | non-empty category name (``disk``, ``memory``, ...; see below) |
| ``severity`` | yes | float in [0, 1] |
| ``error_count`` | yes | float >= 0 |
| ``node_age_days`` | yes | float >= 0 |
| ``hw_generation`` | yes | float >= 1 |
| ``instances_hosted`` | yes | float >= 1 (downtime is modelled per hosted instance) |
| ``cpu_utilization``, ``memory_utilization`` | yes | float in [0, 1] |
| ``recent_repairs`` | yes | float >= 0 (repairs in the last 90 days) |
| ``action`` | yes | one of ``ACTIONS`` |
| ``downtime_minutes`` | yes | float >= 0, summed over the node's instances |
| ``interruptions`` | no | float in [0, instances_hosted] |
| ``capacity_cost_node_hours`` | no | float >= 0 |
| ``hours_since_last_event`` | no | float >= 0; a covariate only when the engine config lists it |
| ``event_id`` | no | unique |

New fault names are accepted; an event whose name was unseen in training is flagged out of
distribution by the engine. Other columns (``ts``, ``node``, ``cluster``, ...) pass through.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.simulator.health import (
    ACTIONS,
    COVARIATES,
    OUTCOMES,
    generate_unhealthy_events,
)

__all__ = [
    "ACTIONS",
    "COVARIATES",
    "OUTCOMES",
    "Featurizer",
    "RowError",
    "SimTruth",
    "data_hash",
    "read_history_csv",
    "simulated_history",
    "validate_history",
]

PRIMARY = "downtime_minutes"
OPTIONAL_COVARIATES = ("hours_since_last_event",)
# (low, high) inclusive bounds; None = unbounded on that side.
_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "severity": (0.0, 1.0),
    "error_count": (0.0, None),
    "node_age_days": (0.0, None),
    "hw_generation": (1.0, None),
    "instances_hosted": (1.0, None),
    "cpu_utilization": (0.0, 1.0),
    "memory_utilization": (0.0, 1.0),
    "recent_repairs": (0.0, None),
    "downtime_minutes": (0.0, None),
    "interruptions": (0.0, None),
    "capacity_cost_node_hours": (0.0, None),
    "hours_since_last_event": (0.0, None),
}
REQUIRED = (*COVARIATES, "action", PRIMARY)


@dataclass(frozen=True)
class RowError:
    """One problem in an imported history. ``row`` is the 0-based position in the input
    (CSV line ``row + 2`` with the header), ``None`` when the whole file is affected."""

    row: int | None
    column: str | None
    message: str


def validate_history(
    frame: pd.DataFrame, actions: tuple[str, ...] = ACTIONS
) -> tuple[pd.DataFrame, list[RowError]]:
    """Rows that satisfy the schema (typed, original index kept) and one error per problem.

    A missing required column rejects the file (empty frame, one error per column); otherwise
    every bad row is reported and left out, and the good rows are returned.
    """
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        errors = [RowError(None, c, "required column is missing") for c in missing]
        return frame.iloc[0:0].copy(), errors
    errors: list[RowError] = []
    bad = np.zeros(len(frame), dtype=bool)
    out = frame.copy()

    fault = out["fault"]
    fault_text = fault.astype("string").str.strip()
    empty = fault.isna().to_numpy() | (fault_text.fillna("") == "").to_numpy()
    for pos in np.flatnonzero(empty):
        errors.append(RowError(int(pos), "fault", "fault category is empty"))
    bad |= empty
    out["fault"] = fault_text.fillna("").astype(object)

    action = out["action"].astype("string").str.strip().fillna("")
    unknown = ~action.isin(actions).to_numpy()
    for pos in np.flatnonzero(unknown):
        errors.append(
            RowError(int(pos), "action", f"unknown action {action.iloc[pos]!r}; expected one "
                     f"of {', '.join(actions)}")
        )  # fmt: skip
    bad |= unknown
    out["action"] = action.astype(object)

    for column, (low, high) in _BOUNDS.items():
        if column not in out.columns:
            continue
        values = pd.to_numeric(out[column], errors="coerce").to_numpy(dtype=float)
        for pos in np.flatnonzero(~np.isfinite(values)):
            errors.append(RowError(int(pos), column, f"not a number: {frame[column].iloc[pos]!r}"))
        problem = ~np.isfinite(values)
        finite = np.where(np.isfinite(values), values, 0.0)
        for limit, side in ((low, "below"), (high, "above")):
            if limit is None:
                continue
            outside = np.isfinite(values) & (finite < limit if side == "below" else finite > limit)
            for pos in np.flatnonzero(outside):
                errors.append(RowError(int(pos), column, f"{values[pos]:g} is {side} {limit:g}"))
            problem |= outside
        bad |= problem
        out[column] = values

    if "interruptions" in out.columns:
        over = np.asarray(out["interruptions"] > out["instances_hosted"]) & ~bad
        for pos in np.flatnonzero(over):
            errors.append(
                RowError(int(pos), "interruptions", "more interruptions than instances hosted")
            )
        bad |= over
    if "event_id" in out.columns:
        dup = out["event_id"].duplicated().to_numpy() & out["event_id"].notna().to_numpy()
        for pos in np.flatnonzero(dup):
            errors.append(RowError(int(pos), "event_id", "duplicate event_id"))
        bad |= dup
    errors.sort(key=lambda e: (-1 if e.row is None else e.row, e.column or ""))
    return out.loc[~bad].copy(), errors


def read_history_csv(path: str | Path, actions: tuple[str, ...] = ACTIONS):
    """``validate_history`` on a CSV file; an unreadable file is one whole-file error."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return pd.DataFrame(columns=list(REQUIRED)), [RowError(None, None, str(exc))]
    return validate_history(frame, actions)


def data_hash(frame: pd.DataFrame, columns: tuple[str, ...] | None = None) -> str:
    """A content hash of the training rows (column order fixed), recorded with each model."""
    cols = list(columns) if columns else sorted(frame.columns)
    digest = hashlib.sha256()
    digest.update(",".join(cols).encode())
    digest.update(pd.util.hash_pandas_object(frame[cols], index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class SimTruth:
    """What the simulator knows and a model never sees: E[Y(a) | X] for every action
    (``mu[outcome]`` is [n_events, n_actions] in ``ACTIONS`` order) and the one realised
    draw of Y(a) in the event's world (``y``, same shape). Scoring only."""

    mu: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    instances: np.ndarray

    @property
    def oracle(self) -> np.ndarray:
        return self.mu[PRIMARY].argmin(axis=1)


def simulated_history(n: int, seed: int) -> tuple[pd.DataFrame, SimTruth]:
    """``n`` logged events of fleet ``seed`` (X, A, Y) and, apart, their ground truth."""
    data = generate_unhealthy_events(n, seed)
    cf = data.counterfactuals
    mu = {
        outcome: np.stack([cf[f"mu_{outcome}__{a}"].to_numpy() for a in ACTIONS], axis=1)
        for outcome in OUTCOMES
    }
    y = {
        outcome: np.stack([cf[f"y_{outcome}__{a}"].to_numpy() for a in ACTIONS], axis=1)
        for outcome in OUTCOMES
    }
    events = data.events
    return events, SimTruth(mu, y, events["instances_hosted"].to_numpy(dtype=float))


class Featurizer:
    """Covariates -> float matrix: one-hot columns for each categorical covariate (categories
    learnt from the training rows, so an unseen one becomes all zeros and is caught by the
    OOD detector), then the numeric covariates as they are."""

    def __init__(self, covariates: tuple[str, ...], categorical: tuple[str, ...]) -> None:
        self.covariates = tuple(covariates)
        self.categorical = tuple(c for c in categorical if c in covariates)
        self.numeric = tuple(c for c in covariates if c not in self.categorical)
        self.categories: dict[str, tuple[str, ...]] = {}

    def fit(self, frame: pd.DataFrame) -> Featurizer:
        for col in self.categorical:
            self.categories[col] = tuple(sorted(str(v) for v in frame[col].unique()))
        return self

    @property
    def feature_names(self) -> list[str]:
        names = [f"{c}={v}" for c in self.categorical for v in self.categories[c]]
        return names + list(self.numeric)

    @property
    def feature_covariate(self) -> list[str]:
        """The covariate behind each feature column (one-hot columns map to their source)."""
        return [c for c in self.categorical for _ in self.categories[c]] + list(self.numeric)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        parts = []
        for col in self.categorical:
            values = frame[col].astype(str).to_numpy()
            parts.append(
                np.stack([values == v for v in self.categories[col]], axis=1).astype(float)
            )
        parts.append(frame[list(self.numeric)].to_numpy(dtype=float))
        return np.hstack(parts)

    def unknown_category(self, frame: pd.DataFrame) -> np.ndarray:
        """True where a categorical covariate takes a value never seen in training."""
        flag = np.zeros(len(frame), dtype=bool)
        for col in self.categorical:
            flag |= ~frame[col].astype(str).isin(self.categories[col]).to_numpy()
        return flag


def as_frame(x: dict | pd.Series | pd.DataFrame) -> pd.DataFrame:
    """One event given as a dict or a Series (or already a frame) as a one-row frame."""
    if isinstance(x, pd.DataFrame):
        return x
    if isinstance(x, pd.Series):
        return x.to_frame().T.infer_objects()
    return pd.DataFrame([dict(x)])
