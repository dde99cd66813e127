"""What an alarm level would have raised here: the anomaly scores stored over the last hours
(``telltale_anomaly_score``, written by every scoring round and by the first version's
backfill) thresholded again at each level asked, their flagged samples merged into alarm
events as the live rounds merge them, and judged against the injected cases where a
simulator feed recorded them. Like an alert rule's backtest, it reads what is stored and
scores nothing, so it answers in a page load."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from models.anomaly.postprocess import Thresholds
from webapp.detection import versions
from webapp.detection.livecheck import TOLERANCE, Span, judge
from webapp.detection.models import AnomalyThreshold, ModelVersion
from webapp.detection.scoring import CLOSE_AFTER, AlarmLevels, chosen_levels
from webapp.telemetry import query
from webapp.telemetry.models import Node

BACKTEST_HOURS = 24
SCORE_METRIC = "telltale_anomaly_score"
NOVELTY_METRIC = "telltale_anomaly_novelty"
# A live round closes an anomaly CLOSE_AFTER after its last flagged round, so flagged
# rounds closer than this are one anomaly.
LIVE_MERGE_MS = int((CLOSE_AFTER + timedelta(minutes=1)).total_seconds() * 1000)


def model_levels(version) -> dict[str, float] | None:
    """A promoted anomaly version's own alarm level per level, from its artefact (JSON: a
    page need not load the network); None without a readable one."""
    if version is None:
        return None
    try:
        data = json.loads((Path(version.artefact_path) / "thresholds.json").read_text())
    except (OSError, ValueError):
        return None
    own = Thresholds.from_dict(data)
    return {level: own.for_group(level) for level, _ in AnomalyThreshold.LEVELS}


def levels_in_force() -> AlarmLevels:
    """The alarm levels scores are held to now, per level and cluster: an admin's, else the
    promoted version's own (NaN where neither is known)."""
    own = model_levels(versions.promoted(ModelVersion.KIND_ANOMALY)) or {}
    return chosen_levels(own, float("nan"))


def alarm_spans(ts: np.ndarray, values: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(first, last) flagged time of each alarm event in one target's scores (ms, sorted).
    Flagged samples are one event when closer than a live round's closing delay, or than two
    sampling steps where the scores are sparser (a backfill's every 5 minutes: one missing
    window is bridged, as the model's own event merging does)."""
    flagged = ts[values >= threshold]
    if not len(flagged):
        return []
    step = float(np.median(np.diff(ts))) if len(ts) > 1 else 0.0
    bridge = max(LIVE_MERGE_MS, 2 * step)
    breaks = np.flatnonzero(np.diff(flagged) > bridge)
    starts = np.r_[flagged[0], flagged[breaks + 1]]
    ends = np.r_[flagged[breaks], flagged[-1]]
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def backtest(
    level: str,
    levels: dict[str, float],
    hours: float = BACKTEST_HOURS,
    now=None,
    cluster: str | None = None,
    metric: str = SCORE_METRIC,
):
    """{label: figures} for each ``levels`` entry (a label such as "proposed" and its alarm
    level) over the last ``hours`` of ``level``'s stored scores (of the targets on
    ``cluster``'s nodes, or the whole fleet's): alarm events, targets alarmed, events per
    target-day, and, where injected cases were recorded, faults found, recall, precision
    and deceptive FPR. ``metric``: the stored score thresholded (``NOVELTY_METRIC`` for the
    novelty alarms)."""
    until = now or datetime.now(tz=UTC)
    since = until - timedelta(hours=hours)
    until_ms, since_ms = int(until.timestamp() * 1000), int(since.timestamp() * 1000)
    series = query.select(f'{metric}{{level="{level}"}}')
    nodes = None
    if cluster is not None:
        nodes = set(Node.objects.filter(cluster=cluster).values_list("pk", flat=True))
        series = [s for s in series if s.node_id in nodes]
    data = query.get_store().read_raw([s.id for s in series], since_ms, until_ms)
    per_target: dict[tuple, list[tuple[np.ndarray, np.ndarray, int | None]]] = {}
    for s in series:
        ts, values = data.get(s.id, (np.empty(0, np.int64), np.empty(0)))
        if len(ts):
            # An instance that moved has one series per node; it is one target.
            key = (s.instance_id,) if level == "vm" else (s.node_id,)
            per_target.setdefault(key, []).append((ts, values, s.node_id))
    target_days = len(per_target) * hours / 24
    out = {}
    for label, threshold in levels.items():
        alarms = []
        alarmed = set()
        for key, parts in per_target.items():
            for ts, values, node_id in parts:
                for first, last in alarm_spans(ts, values, threshold):
                    alarmed.add(key)
                    alarms.append(
                        Span(
                            level,
                            key[0] if level == "vm" else None,
                            node_id,
                            # A live anomaly starts a round before its first flagged one.
                            datetime.fromtimestamp(first / 1000, tz=UTC) - timedelta(minutes=1),
                            datetime.fromtimestamp(last / 1000, tz=UTC),
                        )
                    )
        figures = {
            "threshold": round(float(threshold), 1),
            "events": len(alarms),
            "targets_alarmed": len(alarmed),
            "events_per_target_day": round(len(alarms) / target_days, 3) if target_days else None,
        }
        truth = judge(alarms, since, until, TOLERANCE, level=level, nodes=nodes)
        if truth is not None:
            for key in ("faults", "faults_found", "recall", "precision", "deceptive_fpr"):
                figures[key] = truth[key]
        out[label] = figures
    return {"targets": len(per_target), "hours": hours, "rows": out}
