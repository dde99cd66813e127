"""ASD (Application Server Dataset): every ``data/processed/<entity>_train.pkl`` under the
folder; 19 metrics every 5 minutes, scaled to [0, 1], no timestamps. Same protocol as SMD.
"""

from __future__ import annotations

from pathlib import Path

from models.anomaly.datasets import Split, dataset_path
from models.anomaly.datasets.smd import interfusion_splits

PROFILE = {
    "window_steps": 48,
    "patch_steps": 4,
    "step_seconds": 300,
    "use_time": False,
    "main_metric": "pa_f1",
}


def load(path: str | Path | None = None, quick: bool = False) -> list[Split]:
    data = dataset_path("asd", path) / "data"
    folder = data / "processed"
    labels = data / "interpretation_label"
    splits = interfusion_splits(folder, "server", PROFILE, quick, labels, end_inclusive=True)
    if not splits:
        raise FileNotFoundError(f"no *_train.pkl under {folder}")
    return splits
