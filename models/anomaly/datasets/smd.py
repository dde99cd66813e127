"""SMD (Server Machine Dataset): every ``processed/<machine>_train.pkl`` under the folder.

38 metrics per minute, already min-max scaled, no timestamps (time features are off). The
first 80 % of ``train`` fits the model, its last 20 % calibrates and sets the threshold;
``test`` is scored against ``test_label`` with the tail of ``train`` as history.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.anomaly.datasets import (
    Split,
    dataset_path,
    label_segments_of,
    load_array_pickle,
    series_group,
    with_history,
)
from models.anomaly.features import SeriesGroup

PROFILE = {
    "window_steps": 60,
    "patch_steps": 5,
    "step_seconds": 60,
    "use_time": False,
    "main_metric": "pa_f1",
}
VAL_SHARE = 0.2
QUICK_ROWS = (3000, 2000)


def interfusion_splits(
    folder: Path,
    group: str,
    profile: dict,
    quick: bool = False,
    interpretation: Path | None = None,
    end_inclusive: bool = False,
) -> list[Split]:
    """InterFusion/OmniAnomaly pickles (``<entity>_train.pkl``, ``_test.pkl``,
    ``_test_label.pkl``), one split per entity, in name order. ``interpretation``: the folder
    of ``<entity>.txt`` root-cause labels (``start-end:d1,d2,...``; SMD's ``end`` is
    exclusive, ASD's inclusive), kept as ``meta["interpretation"]``."""
    splits = []
    W, dt = profile["window_steps"], profile["step_seconds"]
    for train_path in sorted(folder.glob("*_train.pkl")):
        entity = train_path.name[: -len("_train.pkl")]
        train = load_array_pickle(train_path).astype(np.float32)
        test = load_array_pickle(folder / f"{entity}_test.pkl").astype(np.float32)
        label = load_array_pickle(folder / f"{entity}_test_label.pkl").astype(np.int8).ravel()
        if quick:
            train, test, label = (
                train[-QUICK_ROWS[0] :],
                test[: QUICK_ROWS[1]],
                label[: QUICK_ROWS[1]],
            )
        cut = int(len(train) * (1 - VAL_SHARE))
        fit = series_group(group, train[:cut], dt, entity)
        val = series_group(group, train[cut:], dt, entity)
        val.ts = val.ts + cut * dt
        val, val_hist = with_history(fit, val, W - 1)
        test_group = series_group(group, test, dt, entity, label)
        test_group.ts = test_group.ts + len(train) * dt
        full_train = series_group(group, train, dt, entity)
        test_group, hist = with_history(full_train, test_group, W - 1)
        splits.append(
            Split(
                entity,
                [fit],
                [val],
                [test_group],
                test_from=hist,
                segments=label_segments_of(test_group, hist),
                meta={
                    "train_rows": len(train),
                    "test_rows": len(test),
                    "metrics": train.shape[1],
                    "val_from": val_hist,
                    "interpretation": root_causes(
                        interpretation, entity, test_group, hist, end_inclusive, len(test)
                    ),
                },
            )
        )
    return splits


def root_causes(
    folder: Path | None,
    entity: str,
    test: SeriesGroup,
    hist: int,
    end_inclusive: bool,
    rows: int,
) -> list[dict]:
    """Labelled segments with the metrics judged responsible, in window-end time (as
    ``label_segments_of``): [{"start", "end", "metrics": [names]}]; [] without labels."""
    path = None if folder is None else folder / f"{entity}.txt"
    if path is None or not path.exists():
        return []
    out = []
    for line in path.read_text().split():
        span, _, dims = line.partition(":")
        a, _, b = span.partition("-")
        first, last = int(a), int(b) - (0 if end_inclusive else 1)
        if last >= rows or not dims:
            continue  # outside a --quick slice
        names = [test.metric_names[int(d) - 1] for d in dims.split(",") if d]
        start, end = test.window_end_ts(np.array([hist + first, hist + last]) + 1)
        out.append({"start": float(start), "end": float(end), "metrics": names})
    return out


def load(path: str | Path | None = None, quick: bool = False) -> list[Split]:
    root = dataset_path("smd", path)
    labels = root / "ServerMachineDataset" / "interpretation_label"
    splits = interfusion_splits(root / "processed", "machine", PROFILE, quick, labels)
    if not splits:
        raise FileNotFoundError(f"no *_train.pkl under {root / 'processed'}")
    return splits
