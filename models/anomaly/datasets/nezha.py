"""Nezha (TrainTicket, 2023-01-29): pod metrics every minute plus the pod logs that were
published, around 28 fault injections (``rca_data/<day>/<day>-fault_list.json``).

Reference protocol (the dataset defines no split, and the day has no fault-free stretch
before its faults: 28 injections 4-10 minutes apart from 08:43 to 15:42): the model is fit on
the fault-free reference hours 16:00-18:59 UTC and calibrated on 19:00-19:59; test is
everything else: 08:41-15:59 (all 28 injections: 13 exception, 11 return, 4 CPU contention)
and 20:00-23:59 (fault-free, false alarms only). No test data or label is used for fitting or
threshold choice, but training data lies *after* the incidents, which a live deployment
would not have. Evaluation is per incident over the whole system: an incident is detected
when any pod alarms within [inject_time, inject_time + 5 min]; the 10 minutes after that are
recovery (neither hit nor false alarm); any other alarm is false. Logs were published only
for three short stretches inside the test period, so no log line is available to train on.
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
REFERENCE = (16, 20)  # fault-free hours (UTC): fit on all but the last, calibrate on that
SPLIT_QUICK = 10.5


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
        day0 = (t0 // 86_400) * 86_400

        def step(hour: float, day0=day0, t0=t0) -> int:
            return int((day0 + hour * 3600 - t0) // 60)

        fit_lo, val_lo, ref_hi = step(REFERENCE[0]), step(REFERENCE[1] - 1), step(REFERENCE[1])
        first_test_end = T
        if quick:  # an hour of reference, half an hour of calibration, four hours of test
            fit_lo, val_lo = val_lo - 60, val_lo
            ref_hi = val_lo + 30
            first_test_end = min(T, step(SPLIT_QUICK))
        label = np.zeros((T, len(pods)), np.int8)
        segments = []
        for when, pod, kind in injections:
            s = int((when - t0) // 60)
            if s >= min(fit_lo, first_test_end):
                continue
            hi = s + K_MINUTES + 1
            rec = hi + RECOVERY_MINUTES
            label[s:hi] = 1
            label[hi:rec][label[hi:rec] == 0] = -1
            system = frozenset(["system"])
            end = when + (K_MINUTES + 1) * 60
            segments.append(Segment(system, when + 1, end, "anomaly", kind, meta={"pod": pod}))
            segments.append(Segment(system, end, float(ts[0] + rec * 60), "ignore", kind))
        raw_logs = {"log_ts": log_ts, "log_target": log_target, "messages": messages}
        W = PROFILE["window_steps"]
        part = _Parts(names, ts, values, pods, label, raw_logs)
        morning = part(0, min(fit_lo, first_test_end), True)
        evening = part(ref_hi - W + 1, T if not quick else ref_hi + 60, True)
        evening.label[: W - 1] = -1
        splits.append(
            Split(
                day_dir.name,
                [part(fit_lo, val_lo, False)],
                [part(val_lo - W + 1, ref_hi, False)],
                [morning, evening],
                test_from=[PROFILE["patch_steps"], W - 1],
                segments=segments,
                meta={"injections": injections, "val_from": W - 1},
            )
        )
    if not splits:
        raise FileNotFoundError(f"no rca_data/<day>/ with fault list and metrics under {root}")
    return splits
