"""Windows people labelled in the app ("anomaly", "normal", "expected"), as training data.

Each window becomes one target of a per-level group whose time axis is shifted per target
(``SeriesGroup.target_offset``), so windows from any day share one group and keep their
own time of day. Their log lines are mined with the training miner like every other line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.anomaly.datamodule import WindowShape
from models.anomaly.detector import Window
from models.anomaly.features import SeriesGroup
from models.anomaly.logmining import LogMiner
from models.anomaly.novelty import NOVEL_SCENARIO


@dataclass
class LabeledWindow:
    """A window a person judged: "anomaly", "normal" or "expected" (a deceptive normal,
    e.g. a planned job), optionally with a scenario name (new names become new classes)."""

    window: Window
    label: str
    scenario: str | None = None


def expected_names(windows: list[LabeledWindow]) -> set[str]:
    """Scenario names people gave only to windows they judged not anomalous ("expected",
    or a false positive with a cause, e.g. a deploy): what the model is to know as expected,
    like the catalogue's deceptive normals. A name also given to an anomaly is not."""
    named_normal, named_anomalous = set(), set()
    for lw in windows:
        if lw.scenario in (None, "", "normal", NOVEL_SCENARIO):
            continue
        (named_anomalous if lw.label == "anomaly" else named_normal).add(lw.scenario)
    return named_normal - named_anomalous


def user_groups(
    windows: list[LabeledWindow], shape: WindowShape, classes: list[str], miner: LogMiner
) -> tuple[list[SeriesGroup], list[np.ndarray]]:
    """User-labelled windows as one group per level (each window its own target); their
    log lines are mined with the training miner. Unknown scenarios extend ``classes``."""
    by_level: dict[str, list[LabeledWindow]] = {}
    for lw in windows:
        if lw.label not in ("anomaly", "normal", "expected"):
            raise ValueError(f"label must be anomaly, normal or expected, not {lw.label!r}")
        by_level.setdefault(lw.window.level, []).append(lw)
    groups, cluster_ids = [], []
    W, dt = shape.window_steps, shape.step_seconds
    for level, items in by_level.items():
        M = items[0].window.metrics.shape[1]
        values = np.full((W, len(items), M), np.nan, np.float32)
        label = np.zeros((W, len(items)), np.int8)
        scen = np.zeros((W, len(items)), np.int16)
        t_idx, s_idx, texts = [], [], []
        for k, lw in enumerate(items):
            m = np.asarray(lw.window.metrics, np.float32)[-W:]
            values[W - len(m) :, k] = m
            # "unrecognised" names no kind of fault: such a window trains the anomaly head only.
            scenario = None if lw.scenario == NOVEL_SCENARIO else lw.scenario
            name = scenario or ("expected" if lw.label == "expected" else None)
            if lw.label == "normal" and not scenario:
                name = "normal"
            if name is not None and name not in classes:
                classes.append(name)
            label[:, k] = 1 if lw.label == "anomaly" else 0
            scen[:, k] = classes.index(name) if name is not None else -1
            start = float(lw.window.end) - W * dt
            for ts, text in lw.window.logs:
                s = int((float(ts) - start) // dt)
                if 0 <= s < W:
                    t_idx.append(k)
                    s_idx.append(s)
                    texts.append(text)
        offsets = np.array([int(lw.window.end) - W * dt for lw in items], dtype=np.int64)
        group = SeriesGroup(
            level,
            [],
            np.arange(W, dtype=np.int64) * dt,
            dt,
            values,
            [lw.window.target for lw in items],
            None,
            label,
            scen,
            {"user": True},
            offsets,
        )
        group.meta["log_rows"] = (np.array(t_idx, np.int64), np.array(s_idx, np.int64))
        groups.append(group)
        cluster_ids.append(miner.mine(texts) if texts else np.zeros(0, np.int64))
    return groups, cluster_ids
