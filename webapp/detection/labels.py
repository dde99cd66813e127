"""People's judgements as training data for the anomaly model: labelled anomalies,
labelled incidents (through their anomaly signals) and labelled annotation regions,
each turned into the window of telemetry it was about."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from webapp.detection.models import Anomaly
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
                a.label_scenario or (a.scenario if a.label == "true_positive" else ""),
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


def labelled_windows(metric_names: dict[str, list[str]], window_steps: int, step_seconds: int):
    """The judgements as the model's LabeledWindow rows, built from the stored telemetry
    (a judgement whose data has aged out of retention is skipped)."""
    from models.anomaly.detector import Window
    from models.anomaly.userlabels import LabeledWindow
    from webapp.detection.scoring import _logs
    from webapp.detection.windows import metric_windows

    out = []
    step_ms = step_seconds * 1000
    names = {
        "vm": dict(Instance.objects.values_list("id", "name")),
        "host": dict(Node.objects.values_list("id", "name")),
    }
    for j in judgements():
        end_ms = int(j.end.timestamp() * 1000)
        matrix = metric_windows(
            j.level, [j.target_id], list(metric_names[j.level]), end_ms, window_steps, step_ms
        )[j.target_id]
        if not (matrix == matrix).any():  # nothing stored for that time any more
            continue
        logs = _logs(
            j.level, [j.target_id], j.end - timedelta(seconds=window_steps * step_seconds), j.end
        )
        window = Window(
            names[j.level].get(j.target_id, str(j.target_id)),
            j.level,
            end_ms / 1000,
            matrix,
            logs.get(j.target_id, []),
        )
        out.append(LabeledWindow(window, j.label, j.scenario or None))
    return out
