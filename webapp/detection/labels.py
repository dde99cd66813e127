"""People's judgements as training data for the anomaly model: labelled anomalies,
labelled incidents (through their anomaly signals) and labelled annotation regions,
each turned into the window of telemetry it was about."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from models.anomaly.novelty import NOVEL_SCENARIO
from webapp.detection.models import Anomaly, LabelSnapshot
from webapp.telemetry.models import Instance, Node

# App labels → the model's: true positive = anomaly, false positive = normal.
MODEL_LABEL = {"true_positive": "anomaly", "false_positive": "normal", "expected": "expected"}


@dataclass(frozen=True)
class Judgement:
    level: str  # vm | host
    target_id: int
    end: datetime
    label: str  # anomaly | normal | expected
    scenario: str
    source: str  # "anomaly 12", "incident 3", "annotation 7"


def judgements() -> list[Judgement]:
    from webapp.incidents.models import Annotation, Incident, Signal

    out: list[Judgement] = []
    for a in Anomaly.objects.exclude(label="").only(
        "level", "node_id", "instance_id", "end", "label", "label_scenario", "scenario"
    ):
        out.append(
            Judgement(
                a.level,
                a.instance_id if a.level == "vm" else a.node_id,
                a.end,
                MODEL_LABEL[a.label],
                # A true novelty alarm without a named scenario trains the anomaly head
                # only: "unrecognised" is not a kind of fault the scenario head could learn.
                a.label_scenario
                or (
                    a.scenario
                    if a.label == "true_positive" and a.scenario != NOVEL_SCENARIO
                    else ""
                ),
                f"anomaly {a.pk}",
            )
        )
    labelled_anomalies = {j.source for j in out}
    for incident in Incident.objects.exclude(label=""):
        for signal in Signal.objects.filter(incident=incident, kind="anomaly"):
            if f"anomaly {signal.source_id}" in labelled_anomalies:
                continue  # the anomaly's own label is more specific
            level = "vm" if signal.instance_id else "host"
            target = signal.instance_id or signal.node_id
            if target:
                out.append(
                    Judgement(
                        level,
                        target,
                        signal.end or signal.start,
                        MODEL_LABEL[incident.label],
                        incident.label_scenario,
                        f"incident {incident.pk}",
                    )
                )
    for note in Annotation.objects.exclude(label="").filter(time_end__isnull=False):
        if note.instance_id:
            out.append(
                Judgement(
                    "vm",
                    note.instance_id,
                    note.time_end,
                    MODEL_LABEL[note.label],
                    note.label_scenario,
                    f"annotation {note.pk}",
                )
            )
        elif note.node_id:
            out.append(
                Judgement(
                    "host",
                    note.node_id,
                    note.time_end,
                    MODEL_LABEL[note.label],
                    note.label_scenario,
                    f"annotation {note.pk}",
                )
            )
    return out


SNAPSHOT_WINDOWS = 2  # a snapshot keeps this many model windows before the judgement's end


def labelled_windows(metric_names: dict[str, list[str]], window_steps: int, step_seconds: int):
    """The judgements as the model's LabeledWindow rows, from each judgement's snapshot
    (taken on the way for those still in the store; it stays whole when retention has
    already cut the stored window's start) or else from the store (a judgement with
    neither is skipped)."""
    from models.anomaly.userlabels import LabeledWindow

    current = judgements()
    snapshot_judgements(metric_names, window_steps, step_seconds, current)
    kept = {(s.source, s.end): s for s in LabelSnapshot.objects.all()}
    out = []
    for j in current:
        snap = kept.get((j.source, j.end))
        window = snap and _from_snapshot(snap, j, metric_names[j.level], window_steps, step_seconds)
        window = window or _window(j, metric_names[j.level], window_steps, step_seconds)
        if window is not None:
            out.append(LabeledWindow(window, j.label, j.scenario or None))
    return out


def snapshot_judgements(
    metric_names: dict[str, list[str]],
    window_steps: int,
    step_seconds: int,
    current: list[Judgement] | None = None,
) -> int:
    """Snapshot every judgement that has none yet while its telemetry is still stored, and
    drop the snapshots of judgements people withdrew. Returns how many were taken."""
    current = judgements() if current is None else current
    wanted = {(j.source, j.end) for j in current}
    have = set(LabelSnapshot.objects.values_list("source", "end"))
    stale = have - wanted
    for source, end in stale:
        LabelSnapshot.objects.filter(source=source, end=end).delete()
    taken = 0
    for j in current:
        if (j.source, j.end) in have:
            continue
        steps = SNAPSHOT_WINDOWS * window_steps
        window = _window(j, metric_names[j.level], steps, step_seconds)
        if window is None:
            continue
        buffer = io.BytesIO()
        np.save(buffer, window.metrics.astype(np.float32), allow_pickle=False)
        LabelSnapshot.objects.get_or_create(
            source=j.source,
            end=j.end,
            defaults={
                "level": j.level,
                "target_name": window.target,
                "step_seconds": step_seconds,
                "metric_names": list(metric_names[j.level]),
                "matrix": buffer.getvalue(),
                "logs": [[float(ts), str(text)] for ts, text in window.logs],
            },
        )
        taken += 1
    return taken


def _window(j: Judgement, names: list[str], steps: int, step_seconds: int):
    """The judgement's window from the store; None when nothing is stored for it any more."""
    from models.anomaly.detector import Window
    from webapp.detection.scoring import _logs
    from webapp.detection.windows import metric_windows

    end_ms = int(j.end.timestamp() * 1000)
    matrix = metric_windows(
        j.level, [j.target_id], list(names), end_ms, steps, step_seconds * 1000
    )[j.target_id]
    if not (matrix == matrix).any():
        return None
    logs = _logs(j.level, [j.target_id], j.end - timedelta(seconds=steps * step_seconds), j.end)
    model = Instance if j.level == "vm" else Node
    name = model.objects.filter(pk=j.target_id).values_list("name", flat=True).first()
    return Window(
        name or str(j.target_id), j.level, end_ms / 1000, matrix, logs.get(j.target_id, [])
    )


def _from_snapshot(snap, j: Judgement, names: list[str], steps: int, step_seconds: int):
    """The last ``steps`` rows of a snapshot, columns by metric name (NaN for a metric the
    snapshot lacks); None when it was taken at another step or holds fewer rows."""
    from models.anomaly.detector import Window

    matrix = np.load(io.BytesIO(bytes(snap.matrix)), allow_pickle=False)
    if snap.step_seconds != step_seconds or len(matrix) < steps:
        return None
    column = {name: i for i, name in enumerate(snap.metric_names)}
    out = np.full((steps, len(names)), np.nan, np.float32)
    for k, name in enumerate(names):
        if name in column:
            out[:, k] = matrix[-steps:, column[name]]
    start = j.end.timestamp() - steps * step_seconds
    logs = [(ts, text) for ts, text in snap.logs if ts >= start]
    return Window(snap.target_name, j.level, j.end.timestamp(), out, logs)
