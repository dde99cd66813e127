"""Dataset loaders: one module per dataset, each returning train/validation/test series
groups plus the labelled segments the evaluation scores against.

Real data is read where it lies (``<repo>/../shared/datasets/<NAME>`` by default,
``TELLTALE_DATASETS`` overrides the root, ``--path`` points at one dataset folder); nothing
is copied into the repository.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.anomaly.features import SeriesGroup
from models.anomaly.metrics import Segment

REPO = Path(__file__).resolve().parents[3]
FOLDERS = {"nab": "NAB", "smd": "SMD", "asd": "ASD", "bgl": "loghub", "nezha": "Nezha"}


def dataset_root() -> Path:
    return Path(os.environ.get("TELLTALE_DATASETS") or REPO.parent / "shared" / "datasets")


def dataset_path(name: str, path: str | Path | None = None) -> Path:
    """Folder of one dataset: ``path`` if given, else its folder under the dataset root."""
    return Path(path) if path else dataset_root() / FOLDERS[name]


class _ArrayUnpickler(pickle.Unpickler):
    """Only what a pickled numpy array needs; anything else is refused."""

    ALLOWED = {
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core")
        return super().find_class(module, name)


def load_array_pickle(path: str | Path) -> np.ndarray:
    data = Path(path).read_bytes()
    arr = _ArrayUnpickler(io.BytesIO(data)).load()
    if not isinstance(arr, np.ndarray):
        raise pickle.UnpicklingError(f"{path}: not a numpy array")
    return arr


@dataclass
class Split:
    """One evaluation unit (a machine, an entity, a NAB file, a fleet).

    ``train`` fits the model, ``val`` fits calibration and threshold, ``test`` is scored
    from ``test_from`` (earlier steps are history only), ``val`` from ``meta["val_from"]``
    (0 when absent) for the same reason: calibration must see the windows it will be applied
    to, full ones, not windows whose history is padding (``with_history``). ``segments`` are
    the labelled stretches of the test part in window-end time; ``windows`` (NAB) the scoring
    windows.
    """

    name: str
    train: list[SeriesGroup]
    val: list[SeriesGroup]
    test: list[SeriesGroup]
    test_from: int | list[int] = 0  # per test group when a list
    segments: list[Segment] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def steps_series(n: int, step_seconds: int, start: int = 0) -> np.ndarray:
    """Synthetic step-aligned timestamps for data published without them."""
    return start + step_seconds * np.arange(n, dtype=np.int64)


def with_history(history: SeriesGroup, test: SeriesGroup, steps: int) -> tuple[SeriesGroup, int]:
    """Prepend the last ``steps`` unlabeled steps of ``history`` so the first test (or
    validation) windows have a past (it is data from before that part, never labels).

    Without it the first ``steps`` windows are mostly padding. On ASD's validation parts such
    windows were 2.5 % of the windows but 7-10 of the top 1 % of Telltale's raw scores, which
    raised the alarm level with windows of a kind the test part never has."""
    steps = min(steps, history.n_steps)
    if steps == 0:
        return test, 0
    label = None
    if test.label is not None:
        label = np.concatenate([np.full((steps, test.n_targets), -1, np.int8), test.label])
    ts0 = test.ts[0] - steps * test.step_seconds
    ts = np.concatenate([ts0 + test.step_seconds * np.arange(steps, dtype=np.int64), test.ts])
    group = SeriesGroup(
        test.name,
        test.metric_names,
        ts,
        test.step_seconds,
        np.concatenate([history.values[-steps:], test.values]),
        test.target_names,
        None,
        label,
        None,
        dict(test.meta),
    )
    return group, steps


def label_segments_of(group: SeriesGroup, from_step: int = 0) -> list[Segment]:
    """Runs of label 1 per target, in window-end time: the window ending after step s
    has end time ts[s] + step."""
    out = []
    dt = group.step_seconds
    for k, name in enumerate(group.target_names):
        lab = group.label[from_step:, k] == 1
        idx = np.flatnonzero(lab)
        if not len(idx):
            continue
        breaks = np.flatnonzero(np.diff(idx) > 1)
        starts = np.r_[idx[0], idx[breaks + 1]] + from_step
        ends = np.r_[idx[breaks], idx[-1]] + from_step
        for a, b in zip(starts, ends, strict=True):
            out.append(Segment(frozenset([name]), float(group.ts[a] + dt), float(group.ts[b] + dt)))
    return out


def series_group(
    name: str,
    values: np.ndarray,
    step_seconds: int,
    target: str,
    label: np.ndarray | None = None,
    ts: np.ndarray | None = None,
    metric_names: list[str] | None = None,
) -> SeriesGroup:
    """One target's [T, M] matrix as a group."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        values = values[:, None]
    T, M = values.shape
    return SeriesGroup(
        name,
        metric_names or [f"{name}_{m + 1}" for m in range(M)],
        steps_series(T, step_seconds) if ts is None else np.asarray(ts, dtype=np.int64),
        step_seconds,
        values[:, None, :],
        [target],
        None,
        None if label is None else np.asarray(label, dtype=np.int8).reshape(T, 1),
    )
