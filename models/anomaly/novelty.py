"""Novelty: how unlike its own usual a target's window is, calibrated on the fleet's own
windows.

A model trained with labels scores what it learnt (the simulator's scenarios); a fault it
was never shown, such as a host saturated by a workload it has not seen, scores nothing.
Its forecast branch still says how badly the last five minutes were predicted
(``raw_scores(..., "forecast")``). That error depends on the target: a host that sends
fewer metrics than the training fleets, or scaled otherwise, is predicted worse all the
time. So the error is first divided by the target's own typical error (the median over its
recent windows), then calibrated over the whole fleet's recent windows, unlabelled, with
the excursion-declustered ``Calibrator``: an incident in the calibration part counts once.

A target with fewer than ``MIN_WINDOWS`` recent windows has no novelty score until the next
fit: its usual error is not known yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ingest.simulator import CATALOGUE
from models.anomaly.postprocess import Calibrator

MIN_WINDOWS = 16  # four hours of windows sampled every 15 minutes
SCALE_FLOOR = 1e-3  # a target predicted perfectly would otherwise divide by zero
NOVEL_SCENARIO = "unrecognised"
# 95 is p = 10^-5.7: one window in about 500,000 of the calibration part's normalised
# errors, on a pooled and declustered tail (docs/anomaly.md, "Novelty": 90 raised five
# false alarm events on one of three simulated fleets, 95 one).
NOVELTY_LEVEL = 95.0
# Scenarios the scenario head knows as expected (deceptive normals): a window it takes for
# one of them does not alarm on novelty, however unusual (a backup is unusual, and known).
EXPECTED_CLASSES = frozenset([*CATALOGUE.names("deceptive"), "expected"])


@dataclass
class FleetNovelty:
    """One level's novelty calibration: each target's usual error and the calibrator of the
    errors divided by it."""

    calibrator: Calibrator
    scales: dict[str, float] = field(default_factory=dict)
    windows: int = 0

    @classmethod
    def fit(cls, raw_by_target: dict[str, np.ndarray]) -> FleetNovelty:
        """``raw_by_target``: each target's forecast errors in time order (NaN where a window
        is missing, which ends an excursion)."""
        scales: dict[str, float] = {}
        values, series = [], []
        for i, (target, raw) in enumerate(sorted(raw_by_target.items())):
            raw = np.asarray(raw, dtype=np.float64)
            finite = raw[np.isfinite(raw)]
            if len(finite) < MIN_WINDOWS:
                continue
            scale = max(float(np.median(finite)), SCALE_FLOOR)
            scales[target] = scale
            values.append(raw / scale)
            series.append(np.full(len(raw), i, np.int64))
        if not scales:
            raise ValueError(
                f"novelty calibration needs a target with at least {MIN_WINDOWS} windows"
            )
        raw = np.concatenate(values)
        return cls(Calibrator.fit(raw, np.concatenate(series)), scales, int(np.isfinite(raw).sum()))

    def score(self, target: str, raw: float) -> float | None:
        """The calibrated novelty (0 to 100) of one window, None for a target not yet known."""
        return self.score_many([target], np.array([raw]))[0]

    def score_many(self, targets: list[str], raw: np.ndarray) -> list[float | None]:
        """``score`` of many windows in one calibration pass."""
        scale = np.array([self.scales.get(t, np.nan) for t in targets], dtype=np.float64)
        ratio = np.asarray(raw, dtype=np.float64) / scale
        known = np.isfinite(ratio)
        calibrated = np.full(len(targets), np.nan)
        if known.any():
            calibrated[known] = self.calibrator.transform(ratio[known])
        return [float(v) if ok else None for v, ok in zip(calibrated, known, strict=True)]

    def as_dict(self) -> dict:
        return {
            "calibrator": self.calibrator.as_dict(),
            "scales": self.scales,
            "windows": self.windows,
        }

    @classmethod
    def from_dict(cls, data: dict) -> FleetNovelty:
        return cls(
            Calibrator.from_dict(data["calibrator"]),
            {k: float(v) for k, v in data.get("scales", {}).items()},
            int(data.get("windows", 0)),
        )
