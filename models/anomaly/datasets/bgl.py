"""loghub BGL 2k: per-line alert labels (first token of the raw line, ``-`` = normal).

The model sees ``type component level content`` of each line (``RAS KERNEL FATAL data TLB
error interrupt``); the label token, timestamps and node names are not input. Lines are in
time order; the first half is the training part (its last fifth calibrates), the second
half is test. Each line is scored with the previous seven lines as context (window of 8
lines, one line per patch); the label of a window is its last line's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.anomaly.datasets import Split, dataset_path, label_segments_of
from models.anomaly.features import SeriesGroup

PROFILE = {
    "window_steps": 8,
    "patch_steps": 1,
    "step_seconds": 1,
    "use_time": False,
    "main_metric": "f1",
}
TRAIN_SHARE = 0.5
VAL_SHARE = 0.2  # of the training part
QUICK_LINES = 400


def read_lines(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    messages, labels, ts = [], [], []
    for raw in path.read_text(errors="replace").splitlines():
        tokens = raw.split()
        if len(tokens) < 9:
            continue
        labels.append(0 if tokens[0] == "-" else 1)
        ts.append(int(tokens[1]) if tokens[1].isdigit() else 0)
        messages.append(" ".join(tokens[6:]))
    return messages, np.asarray(labels, np.int8), np.asarray(ts, np.int64)


def _group(lines: range, labels: np.ndarray) -> SeriesGroup:
    n = len(lines)
    return SeriesGroup(
        "bgl",
        [],
        np.arange(lines.start, lines.stop, dtype=np.int64),
        1,
        np.zeros((n, 1, 0), np.float32),
        ["BGL"],
        None,
        labels[lines.start : lines.stop].reshape(n, 1),
        None,
        {"lines": lines},
    )


def load(path: str | Path | None = None, quick: bool = False) -> list[Split]:
    root = dataset_path("bgl", path)
    files = sorted(root.glob("**/BGL*.log")) if root.is_dir() else [root]
    if not files:
        raise FileNotFoundError(f"no BGL*.log under {root}")
    splits = []
    W = PROFILE["window_steps"]
    for f in files:
        messages, labels, ts = read_lines(f)
        if quick:
            messages, labels, ts = messages[:QUICK_LINES], labels[:QUICK_LINES], ts[:QUICK_LINES]
        n = len(messages)
        n_train = int(n * TRAIN_SHARE)
        n_fit = int(n_train * (1 - VAL_SHARE))
        # Groups keep absolute line numbers; earlier lines serve as history of later parts.
        fit = _group(range(0, n_fit), labels)
        val = _group(range(max(0, n_fit - W + 1), n_train), labels)
        test = _group(range(max(0, n_train - W + 1), n), labels)
        val.label[: n_fit - val.meta["lines"].start] = -1
        test.label[: n_train - test.meta["lines"].start] = -1
        hist_val = n_fit - val.meta["lines"].start
        hist = n_train - test.meta["lines"].start
        splits.append(
            Split(
                f.stem,
                [fit],
                [val],
                [test],
                test_from=hist,
                segments=label_segments_of(test, hist),
                meta={"messages": messages, "times": ts, "val_from": hist_val},
            )
        )
    return splits
