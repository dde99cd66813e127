"""Nezha (TrainTicket, 2023-01-29): pod metrics every minute plus the pod logs that were
published, around 28 fault injections (``rca_data/<day>/<day>-fault_list.json``).

Time-ordered split (the dataset defines none): everything before 10:00 UTC is the training
part (12 injections inside, unlabelled for the model; its last 20 minutes calibrate), the
rest of the day is test: 16 injections (12 code-level, 4 CPU contention) and the fault-free
evening. Evaluation is per incident over the whole system: an incident is detected when any
pod alarms within [inject_time, inject_time + 5 min]; the 10 minutes after that are recovery
(neither hit nor false alarm); any other alarm is false.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

from models.anomaly.datasets import Split, dataset_path
from models.anomaly.features import SeriesGroup
from models.anomaly.metrics import Segment

PROFILE = {
    "window_steps": 20,
    "patch_steps": 4,
    "step_seconds": 60,
    "use_time": True,
    "main_metric": "event_f1",
    "system": True,
}
K_MINUTES = 5
RECOVERY_MINUTES = 10
SPLIT_HOUR = 10
VAL_MINUTES = 20


def _epoch(text: str) -> int:
    return (
        int(pd.Timestamp(text, tz="UTC").timestamp())
        if "+" not in text
        else int(pd.Timestamp(text).timestamp())
    )


def read_logs(
    day_dirs: list[Path], pods: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    ts, target, messages = [], [], []
    for folder in day_dirs:
        for f in sorted(folder.glob("log/*.csv")):
            with f.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    pod = pods.get(row["PodName"])
                    if pod is None:
                        continue
                    try:
                        message = json.loads(row["Log"]).get("log", "")
                    except json.JSONDecodeError:
                        message = row["Log"]
                    ts.append(int(row["TimeUnixNano"]) / 1e9)
                    target.append(pod)
                    messages.append(message.strip())
    return np.asarray(ts, np.float64), np.asarray(target, np.int64), messages


class _Parts:
    """Time slices of one day as groups (labels only where asked)."""

    def __init__(self, names, ts, values, pods, label, raw_logs):
        self.names, self.ts, self.values, self.pods = names, ts, values, pods
        self.label, self.raw_logs = label, raw_logs

    def __call__(self, lo: int, hi: int, labelled: bool) -> SeriesGroup:
        lo = max(lo, 0)
        return SeriesGroup(
            "pod",
            self.names,
            self.ts[lo:hi],
            60,
            self.values[lo:hi],
            self.pods,
            None,
            self.label[lo:hi].copy() if labelled else None,
            None,
            dict(self.raw_logs),
        )


def load(path: str | Path | None = None, quick: bool = False) -> list[Split]:
    root = dataset_path("nezha", path)
    splits = []
    for day_dir in sorted((root / "rca_data").glob("*")):
        faults_file = next(day_dir.glob("*fault_list.json"), None)
        metric_files = sorted(day_dir.glob("metric/*_metric.csv"))
        if faults_file is None or not metric_files:
            continue
        frames = [pd.read_csv(f) for f in metric_files]
        names = [c for c in frames[0].columns if c not in ("Time", "TimeStamp", "PodName")]
        pods = [str(fr["PodName"].iloc[0]) for fr in frames]
        t0 = min(int(fr["TimeStamp"].min()) // 60 * 60 for fr in frames)
        t1 = max(int(fr["TimeStamp"].max()) // 60 * 60 for fr in frames)
        T = (t1 - t0) // 60 + 1
        values = np.full((T, len(pods), len(names)), np.nan, np.float32)
        for k, fr in enumerate(frames):
            rows = (fr["TimeStamp"].to_numpy(np.int64) // 60 * 60 - t0) // 60
            values[rows, k] = fr[names].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
        ts = t0 + 60 * np.arange(T, dtype=np.int64)
        faults = [f for hour in json.loads(faults_file.read_text()).values() for f in hour]
        injections = sorted(
            (_epoch(f["inject_time"]), f["inject_pod"], f["inject_type"]) for f in faults
        )
        log_dirs = [day_dir, root / "construct_data" / day_dir.name]
        log_ts, log_target, messages = read_logs(
            [d for d in log_dirs if d.is_dir()], {p: i for i, p in enumerate(pods)}
        )
        split_ts = (t0 // 86_400) * 86_400 + SPLIT_HOUR * 3600
        split_step = int((split_ts - t0) // 60)
        val_step = split_step - VAL_MINUTES
        if quick:
            T = min(T, split_step + 180)
            values, ts = values[:T], ts[:T]
        label = np.zeros((T, len(pods)), np.int8)
        segments = []
        for when, pod, kind in injections:
            s = int((when - t0) // 60)
            if s < split_step or s >= T:
                continue  # training-part incidents stay unlabelled
            hi = min(s + K_MINUTES + 1, T)
            rec = min(hi + RECOVERY_MINUTES, T)
            label[s:hi] = 1
            label[hi:rec][label[hi:rec] == 0] = -1
            system = frozenset(["system"])
            end = when + (K_MINUTES + 1) * 60
            segments.append(Segment(system, when + 1, end, "anomaly", kind, meta={"pod": pod}))
            segments.append(Segment(system, end, float(ts[0] + rec * 60), "ignore", kind))
        raw_logs = {"log_ts": log_ts, "log_target": log_target, "messages": messages}
        W = PROFILE["window_steps"]
        part = _Parts(names, ts, values, pods, label, raw_logs)
        test = part(split_step - W + 1, T, True)
        test.label[: W - 1] = -1
        splits.append(
            Split(
                day_dir.name,
                [part(0, val_step, False)],
                [part(val_step - W + 1, split_step, False)],
                [test],
                test_from=W - 1,
                segments=segments,
                meta={"injections": injections, "val_from": W - 1},
            )
        )
    if not splits:
        raise FileNotFoundError(f"no rca_data/<day>/ with fault list and metrics under {root}")
    return splits
