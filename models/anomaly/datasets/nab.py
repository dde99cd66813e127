"""NAB: every ``data/<category>/<file>.csv`` under the folder, scored with
``labels/combined_windows.json``.

NAB has no training split; its first 15 % (at most 750 rows) is the probationary period that
detectors may learn from and that is never scored. Here the first two thirds of it fit the
model and the last third calibrates and sets the threshold (its windows reach back into the
first two thirds for their history, as the test part's reach into the probationary period);
the rest of the file is test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from models.anomaly.datasets import Split, dataset_path, series_group, with_history
from models.anomaly.metrics import Segment

PROFILE = {
    "window_steps": 48,
    "patch_steps": 4,
    "step_seconds": 300,
    "use_time": True,
    "main_metric": "nab_score",
    # NAB is a streaming benchmark with no training split: scores are calibrated causally
    # (on everything before them, a day at a time) and alerts closer than 4 h are one event.
    "online_block": 288,
    "event_gap": 48,
}
QUICK_FILES = 3


def probation(n: int) -> int:
    return min(math.floor(0.15 * n), 750)


def _epoch(text: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(text, utc=True)
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def load(path: str | Path | None = None, quick: bool = False) -> list[Split]:
    root = dataset_path("nab", path)
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    files = sorted((root / "data").glob("*/*.csv"))
    if not files:
        raise FileNotFoundError(f"no data/*/*.csv under {root}")
    if quick:
        files = [f for f in files if windows.get(f"{f.parent.name}/{f.name}")][:QUICK_FILES]
    splits = []
    W = PROFILE["window_steps"]
    for f in files:
        key = f"{f.parent.name}/{f.name}"
        frame = pd.read_csv(f)
        ts = _epoch(frame["timestamp"])
        values = frame["value"].to_numpy(np.float32)
        dt = int(np.median(np.diff(ts))) if len(ts) > 1 else 300
        spans = [
            (float(_epoch(pd.Series([a]))[0]), float(_epoch(pd.Series([b]))[0]))
            for a, b in windows.get(key, [])
        ]
        label = np.zeros(len(ts), np.int8)
        for a, b in spans:
            label[(ts >= a) & (ts <= b)] = 1
        n_prob = probation(len(ts))
        cut = max(W + 1, (2 * n_prob) // 3)
        fit = series_group("nab", values[:cut], dt, key, ts=ts[:cut], metric_names=["value"])
        val = series_group(
            "nab", values[cut:n_prob], dt, key, ts=ts[cut:n_prob], metric_names=["value"]
        )
        val, val_hist = with_history(fit, val, W - 1)
        val.ts[:val_hist] = ts[cut - val_hist : cut]
        history = series_group(
            "nab", values[:n_prob], dt, key, ts=ts[:n_prob], metric_names=["value"]
        )
        test = series_group(
            "nab", values[n_prob:], dt, key, label[n_prob:], ts=ts[n_prob:], metric_names=["value"]
        )
        test, hist = with_history(history, test, W - 1)
        test.ts[:hist] = ts[n_prob - hist : n_prob]
        segments = [Segment(frozenset([key]), a + dt, b + dt) for a, b in spans]
        splits.append(
            Split(
                key,
                [fit],
                [val],
                [test],
                test_from=hist,
                segments=segments,
                meta={
                    "windows": spans,
                    "times": ts,
                    "probation": n_prob,
                    "step": dt,
                    "val_from": val_hist,
                },
            )
        )
    return splits
