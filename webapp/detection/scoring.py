"""Scoring the fleet with the promoted anomaly model, once a minute: windows from the store,
scores as the ``telltale_anomaly_score`` series (``telltale_anomaly_novelty`` where the
version's novelty calibration knows the target, and ``telltale_anomaly_alarm`` where they
alarm), anomalous stretches as Anomaly rows (and
incident signals). Running it twice for the same minute changes nothing."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import transaction
from django.db.models import Q

from ingest.types import MetricBatch, SeriesSamples
from models.anomaly.novelty import NOVEL_SCENARIO
from models.anomaly.postprocess import Thresholds
from webapp.detection import novelty as novelty_module
from webapp.detection import versions
from webapp.detection.models import Anomaly, AnomalyThreshold, ModelVersion
from webapp.detection.windows import metric_windows
from webapp.telemetry import writer
from webapp.telemetry.models import Instance, LogRecord, Node

log = logging.getLogger(__name__)

ACTIVE_WITHIN = timedelta(minutes=10)  # targets that sent data this recently are scored
CLOSE_AFTER = timedelta(minutes=3)  # an anomaly ends after this long below the threshold
CRITICAL_SCORE = 90.0


def _load(path: str):
    from models.anomaly.detector import AnomalyDetector

    return AnomalyDetector.load(path)


def _logs(level: str, ids: list[int], start: datetime, end: datetime) -> dict[int, list]:
    """(ts, template text or message) per target for the window."""
    field = "instance_id" if level == "vm" else "node_id"
    rows = LogRecord.objects.filter(**{f"{field}__in": ids}, ts__gte=start, ts__lt=end)
    if level != "vm":
        rows = rows.filter(instance__isnull=True)
    out: dict[int, list] = defaultdict(list)
    for target, ts, template, message in rows.values_list(
        field, "ts", "template__template", "message"
    ):
        out[target].append((ts.timestamp(), template or message))
    return out


@dataclass(frozen=True)
class AlarmLevels:
    """What every round, backfill and replay alarms at: per level, a cluster's level (an
    admin's ``AnomalyThreshold``), else the fleet's (an admin's, else the detector's own)."""

    fleet: Thresholds
    clusters: dict[tuple[str, str], float]

    def value(self, level: str, cluster: str = "") -> float:
        return self.clusters.get((level, cluster), self.fleet.for_group(level))

    def thresholds(self, cluster: str = "") -> Thresholds:
        """The detector's thresholds for windows of ``cluster``'s targets."""
        own = {level: v for (level, c), v in self.clusters.items() if c == cluster}
        return Thresholds(self.fleet.default, {**self.fleet.groups, **own})


def chosen_levels(own: dict[str, float], default: float) -> AlarmLevels:
    """The admins' levels (``AnomalyThreshold``) over a version's ``own`` per level."""
    chosen = AnomalyThreshold.objects.filter(signal=AnomalyThreshold.SCORE).values_list(
        "level", "cluster", "value"
    )
    fleet = {**own, **{level: value for level, cluster, value in chosen if not cluster}}
    clusters = {(level, cluster): value for level, cluster, value in chosen if cluster}
    return AlarmLevels(Thresholds(default, fleet), clusters)


def alarm_levels(detector) -> AlarmLevels:
    base = detector.thresholds
    own = {level: base.for_group(level) for level in detector.metric_names}
    return chosen_levels(own, base.default)


def cluster_of(level: str, target) -> str:
    """The cluster whose alarm level a target is held to: its node's."""
    if level == "vm":
        return target.node.cluster if target.node_id else ""
    return target.cluster


def score_at_levels(
    detector,
    level: str,
    rows,
    windows,
    levels: AlarmLevels,
    explain="anomalous",
    novelty: dict | None = None,
):
    """The windows scored, each flagged (and explained) at its target's cluster's level, and
    on novelty where the version's novelty calibration (``novelty``) is passed and novelty
    alarms are on."""
    clusters = {r.name: cluster_of(level, r) for r in rows}
    groups: dict[str, list] = defaultdict(list)
    for window in windows:
        groups[clusters[window.target]].append(window)
    novelty_levels = novelty_module.levels()
    never = Thresholds(default=float("inf"))  # novelty off: still computed and charted
    settling = warming_up(windows, detector.step_seconds)
    return [
        replace(score, is_anomalous=False, novel=False) if score.target in settling else score
        for cluster, part in groups.items()
        for score in detector.score(
            part,
            explain=explain,
            thresholds=levels.thresholds(cluster),
            novelty=novelty,
            novelty_levels=novelty_levels.thresholds(cluster) if novelty_levels else never,
        )
    ]


# A target alarms once its telemetry fills this share of the model's window. The model
# judges a window's end against the rest of it; a target that began sending minutes ago
# gives it an hour of silence and then everything at once, which is how a fault that
# starts to log looks. The demo's own node (about 12,000 log lines an hour) scored 100 with
# 7 minutes of history and 47 with 10, and 8 with its log lines left out.
WARM_UP_SHARE = 0.5


def warming_up(windows, step_seconds: int) -> set[str]:
    """The targets of ``windows`` too new to alarm: their telemetry fills less than
    ``WARM_UP_SHARE`` of the window."""
    return {w.target for w in windows if history_share(w, step_seconds) < WARM_UP_SHARE}


def history_share(window, step_seconds: int) -> float:
    """The share of ``window`` from its target's first sample or log line in it to its end:
    1 for a target that sent all along, less for one whose telemetry began inside it."""
    steps = len(window.metrics)
    if not steps:
        return 1.0
    has_metrics = ~np.isnan(window.metrics).all(axis=1)
    first = int(np.argmax(has_metrics)) if has_metrics.any() else steps
    if window.logs:
        start = window.end - steps * step_seconds
        first_log = min(ts for ts, _ in window.logs)
        first = min(first, max(0, int((first_log - start) // step_seconds)))
    return 1.0 - first / steps


def targets(level: str, now: datetime):
    model = Instance if level == "vm" else Node
    qs = model.objects.filter(last_seen__gte=now - ACTIVE_WITHIN)
    if level == "vm":
        qs = qs.select_related("node")
    return list(qs)


def windows_for(detector, level: str, rows, end_ms: int):
    from models.anomaly.detector import Window

    step_ms = detector.step_seconds * 1000
    steps = detector.window_steps
    ids = [r.pk for r in rows]
    matrices = metric_windows(
        level, ids, list(detector.metric_names[level]), end_ms, steps, step_ms
    )
    end = datetime.fromtimestamp(end_ms / 1000, tz=UTC)
    logs = _logs(level, ids, end - timedelta(milliseconds=steps * step_ms), end)
    return [Window(r.name, level, end_ms / 1000, matrices[r.pk], logs.get(r.pk, [])) for r in rows]


def with_data(windows: list) -> list:
    """The windows with a sample or a log line. One without says nothing about its target
    (stopped, or its data is late): scoring it would judge an empty window."""
    return [w for w in windows if w.logs or not np.isnan(w.metrics).all()]


def score_fleet(now_ms: int | None = None) -> dict:
    version, detector = versions.load_promoted(ModelVersion.KIND_ANOMALY, _load)
    if detector is None:
        return {"scored": 0, "reason": "no promoted anomaly model"}
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    end_ms = now_ms - now_ms % 60_000
    now = datetime.fromtimestamp(end_ms / 1000, tz=UTC)
    counts = {
        "scored": 0,
        "anomalous": 0,
        "opened": 0,
        "closed": 0,
        "without_data": 0,
        "warming_up": 0,  # scored, but too new to alarm (``WARM_UP_SHARE``)
    }
    levels = alarm_levels(detector)
    novelty = novelty_module.in_force(version)
    samples = []
    for level in ("vm", "host"):
        rows = targets(level, now)
        if not rows:
            continue
        windows = windows_for(detector, level, rows, end_ms)
        scorable = with_data(windows)
        counts["without_data"] += len(windows) - len(scorable)
        windows = scorable
        counts["warming_up"] += len(warming_up(windows, detector.step_seconds))
        scores = score_at_levels(detector, level, rows, windows, levels, novelty=novelty)
        by_name = {r.name: r for r in rows}
        for score in scores:
            target = by_name[score.target]
            samples.extend(_score_samples(level, target, score, end_ms))
            counts["scored"] += 1
            if score.is_anomalous:
                counts["anomalous"] += 1
                counts["opened"] += _extend_or_open(version, level, target, score, now)
        counts["closed"] += _close_quiet(level, now)
    writer.write_metrics(
        MetricBatch(series=samples), source=writer.DERIVED_SOURCE, client="anomaly"
    )
    return counts


def _target_filter(level: str, target) -> Q:
    return Q(instance=target) if level == "vm" else Q(node=target, instance__isnull=True)


@transaction.atomic
def _extend_or_open(version, level: str, target, score, now: datetime) -> int:
    from webapp.incidents.services import record_signal

    attribution = {
        "metrics": [[name, round(float(share), 4)] for name, share in score.metrics],
        "templates": [[text, round(float(share), 4)] for text, share in score.templates],
    }
    current = (
        Anomaly.objects.select_for_update()
        .filter(_target_filter(level, target), status=Anomaly.OPEN)
        .order_by("-end")
        .first()
    )
    opened = 0
    if current is None:
        current = Anomaly.objects.create(
            level=level,
            node=target if level == "host" else None,
            instance=target if level == "vm" else None,
            start=now - timedelta(minutes=1),
            end=now,
            score=score.alarm_score,
            raw_score=float(score.raw),
            scenario=score.scenario or "",
            scenario_probability=float(score.scenario_probability or 0.0),
            attribution=attribution,
            model_version=version,
        )
        opened = 1
    else:
        fields = ["end"]
        current.end = max(current.end, now)
        if current.backfilled:  # under way at the promotion and still going: live now
            current.backfilled = False
            fields.append("backfilled")
        if _outranks(score, current):
            current.score = score.alarm_score
            current.raw_score = float(score.raw)
            current.scenario = score.scenario or current.scenario
            current.scenario_probability = float(score.scenario_probability or 0.0)
            current.attribution = attribution
            fields += ["score", "raw_score", "scenario", "scenario_probability", "attribution"]
        current.save(update_fields=fields)
    record_signal(
        "anomaly",
        current.pk,
        title=f"{current.scenario or 'anomaly'} (score {current.score:.0f})",
        start=current.start,
        # Novelty says "unlike anything before", not what is wrong: never critical alone.
        severity="critical"
        if current.score >= CRITICAL_SCORE and current.scenario != NOVEL_SCENARIO
        else "warning",
        node=current.node,
        instance=current.instance,
        details={"attribution": attribution},
    )
    return opened


def _outranks(score, current: Anomaly) -> bool:
    """Whether a window's alarm names the open anomaly from now on: a learnt scenario always
    wins over novelty (it says what is wrong), otherwise the higher score."""
    was_novel = current.scenario == NOVEL_SCENARIO
    if score.novel != was_novel:
        return was_novel
    return score.alarm_score > current.score


def _close_quiet(level: str, now: datetime) -> int:
    from webapp.incidents.services import record_signal

    closed = 0
    stale = Anomaly.objects.filter(status=Anomaly.OPEN, level=level, end__lt=now - CLOSE_AFTER)
    for anomaly in stale.select_related("node", "instance"):
        anomaly.status = Anomaly.CLOSED
        anomaly.save(update_fields=["status"])
        closed += 1
        if anomaly.backfilled:  # it ended before any live round saw it: it never signalled
            continue
        record_signal(
            "anomaly",
            anomaly.pk,
            title=f"{anomaly.scenario or 'anomaly'} (score {anomaly.score:.0f})",
            start=anomaly.start,
            end=anomaly.end,
            node=anomaly.node,
            instance=anomaly.instance,
        )
    return closed


BACKFILL_EVERY = timedelta(minutes=5)


def backfill(version_id: int, hours: float | None = None) -> dict:
    """Score the ``hours`` before ``version_id`` was promoted, every ``BACKFILL_EVERY``, as
    the live rounds would have: the ``telltale_anomaly_score`` series and the anomalies
    (marked backfilled). Run once, when the first anomaly version is promoted, so a new
    install's charts and anomaly list do not begin at the promotion. No incident signal is
    raised, so nothing pages for the past. An event still under way at the promotion is one
    anomaly with the live rounds': it is left open for them to extend (and signal), or, if
    a live round opened one already, that one's start moves back to the event's. Idempotent:
    samples already stored are kept, and an event overlapping a stored anomaly of its target
    is skipped."""
    from django.conf import settings

    hours = settings.TELLTALE_BACKFILL_HOURS if hours is None else hours
    version = ModelVersion.objects.get(pk=version_id)
    if not hours or version.promoted_at is None:
        return {"scored": 0, "opened": 0}
    detector = _load(version.artefact_path)
    until_ms = int(version.promoted_at.timestamp() * 1000) // 60_000 * 60_000
    every_ms = int(BACKFILL_EVERY.total_seconds() * 1000)
    since = datetime.fromtimestamp(until_ms / 1000 - hours * 3600, tz=UTC)
    counts = {"scored": 0, "opened": 0}
    levels = alarm_levels(detector)
    for level in ("vm", "host"):
        model = Instance if level == "vm" else Node
        recent = model.objects.filter(last_seen__gte=since)
        rows = list(recent.select_related("node") if level == "vm" else recent)
        by_name = {r.name: r for r in rows}
        found: dict[str, list] = defaultdict(list)
        for end_ms in range(until_ms - int(hours * 3_600_000) + every_ms, until_ms, every_ms):
            windows = with_data(windows_for(detector, level, rows, end_ms))
            scores = score_at_levels(detector, level, rows, windows, levels)
            samples = [
                s for sc in scores for s in _score_samples(level, by_name[sc.target], sc, end_ms)
            ]
            writer.write_metrics(
                MetricBatch(series=samples), source=writer.DERIVED_SOURCE, client="anomaly"
            )
            for score in scores:
                found[score.target].append(score)
            counts["scored"] += len(scores)
        for name, scores in found.items():
            raw = {sc.end: sc.raw for sc in scores}
            threshold = levels.value(level, cluster_of(level, by_name[name]))
            for event in detector.events(scores, threshold=threshold):
                counts["opened"] += _backfilled_anomaly(
                    version,
                    level,
                    by_name[name],
                    event,
                    raw.get(event.peak_time, 0.0),
                    under_way=event.end * 1000 >= until_ms - every_ms,
                )
    return counts


def _score_samples(level: str, target, score, end_ms: int) -> list[SeriesSamples]:
    """The window's score, and the same score as ``telltale_anomaly_alarm`` where the window
    alarms at the level in force (0 where it does not): what anomaly alert rules read, so
    that every page is an anomaly on the list, whatever the alarm level."""
    labels = {"level": level}
    if level == "vm":
        labels["vm"] = target.name
        if target.node_id:
            labels["node"] = target.node.name
    else:
        labels["node"] = target.name
    alarm = score.alarm_score if score.is_anomalous else 0.0
    values = [("telltale_anomaly_score", float(score.score)), ("telltale_anomaly_alarm", alarm)]
    if score.novelty is not None:
        values.append(("telltale_anomaly_novelty", float(score.novelty)))
    return [
        SeriesSamples(tuple(sorted({**labels, "__name__": name}.items())), [end_ms], [value])
        for name, value in values
    ]


@transaction.atomic
def _backfilled_anomaly(version, level: str, target, event, raw: float, *, under_way: bool) -> int:
    # The event began somewhere in the BACKFILL_EVERY before its first flagged window.
    start = datetime.fromtimestamp(event.start, tz=UTC) - BACKFILL_EVERY
    end = datetime.fromtimestamp(event.end, tz=UTC)
    mine = Anomaly.objects.select_for_update().filter(_target_filter(level, target))
    if under_way:
        # A live round may have opened it already: the same anomaly, begun earlier.
        live = mine.filter(
            status=Anomaly.OPEN, start__lte=end + BACKFILL_EVERY + CLOSE_AFTER
        ).first()
        if live is not None:
            if start < live.start:
                live.start = start
                live.save(update_fields=["start"])
            return 0
    if mine.filter(start__lte=end, end__gte=start).exists():
        return 0
    Anomaly.objects.create(
        level=level,
        node=target if level == "host" else None,
        instance=target if level == "vm" else None,
        start=start,
        end=end,
        # Left open, the live rounds extend it while it lasts, or close it within minutes.
        status=Anomaly.OPEN if under_way else Anomaly.CLOSED,
        score=float(event.peak),
        raw_score=float(raw),
        scenario=event.scenario or "",
        scenario_probability=float(event.scenario_probability or 0.0),
        attribution={
            "metrics": [[name, round(float(share), 4)] for name, share in event.metrics],
            "templates": [[text, round(float(share), 4)] for text, share in event.templates],
        },
        model_version=version,
        backfilled=True,
    )
    return 1


REPLAY_HOURS = 24
REPLAY_EVERY = timedelta(minutes=15)
REPLAY_TARGETS = 100  # per level: the most recently seen


def replay(detectors: Sequence, now_ms: int, hours: float = REPLAY_HOURS) -> list[dict]:
    """What each of ``detectors`` would have raised on this fleet over the last ``hours``:
    the windows of up to ``REPLAY_TARGETS`` recently seen targets per level, every
    ``REPLAY_EVERY``, scored as the live rounds score them, and their flagged windows merged
    into alarm events per target. Detectors that read the same window shape share each
    window read. On its own this measures noise, not accuracy: a version trained on
    simulated fleets may alarm more (or less) on a real fleet than its validation said.
    Where a simulator feed recorded the cases it injected, the events are also judged
    against them (as ``manage.py live_check`` judges stored anomalies). Each result's
    ``events`` lists the alarm events themselves (with the case each overlaps, where cases
    were recorded). Nothing is written."""
    end_ms = now_ms - now_ms % 60_000
    every_ms = int(REPLAY_EVERY.total_seconds() * 1000)
    ends = range(end_ms - int(hours * 3_600_000) + every_ms, end_ms + 1, every_ms)
    until = datetime.fromtimestamp(end_ms / 1000, tz=UTC)
    since = until - timedelta(hours=hours)
    rows: dict[tuple[str, str], Instance | Node] = {}
    scores: list[dict[tuple[str, str], list]] = [defaultdict(list) for _ in detectors]
    # Each version at the alarm levels admins chose, as it would be served here.
    levels = [alarm_levels(detector) for detector in detectors]
    for level in ("vm", "host"):
        model = Instance if level == "vm" else Node
        seen = model.objects.filter(last_seen__gte=since).order_by("-last_seen")
        recent = list((seen.select_related("node") if level == "vm" else seen)[:REPLAY_TARGETS])
        rows.update({(level, r.name): r for r in recent})
        for end in ends:
            read: dict[tuple, list] = {}
            for k, detector in enumerate(detectors):
                shape = (
                    detector.window_steps,
                    detector.step_seconds,
                    tuple(detector.metric_names[level]),
                )
                if shape not in read:
                    read[shape] = with_data(windows_for(detector, level, recent, end))
                windows = read[shape]
                scored = score_at_levels(detector, level, recent, windows, levels[k], "none")
                for score in scored:
                    scores[k][(level, score.target)].append(score)
    return [
        _replayed(detector, found, rows, since, until, hours, chosen)
        for detector, found, chosen in zip(detectors, scores, levels, strict=True)
    ]


def _replayed(
    detector, scores: dict, rows: dict, since, until, hours: float, levels: AlarmLevels
) -> dict:
    """One detector's replay figures from its scores per (level, target name)."""
    from webapp.detection.livecheck import TOLERANCE, Span, judge

    alarms, events = [], []
    for (level, name), found in scores.items():
        row = rows[(level, name)]
        threshold = levels.value(level, cluster_of(level, row))
        for event in detector.events(found, threshold=threshold):
            alarms.append(
                Span(
                    level,
                    row.pk if level == "vm" else None,
                    row.node_id if level == "vm" else row.pk,
                    # The event began somewhere in the REPLAY_EVERY before its first
                    # flagged window; judge() adds the live rounds' tolerance on top.
                    datetime.fromtimestamp(event.start, tz=UTC) - REPLAY_EVERY,
                    datetime.fromtimestamp(event.end, tz=UTC),
                    event.scenario,
                )
            )
            events.append(
                {
                    "level": level,
                    "target": name,
                    "start": alarms[-1].start.isoformat(),
                    "end": alarms[-1].end.isoformat(),
                    "peak": round(float(event.peak), 1),
                    "scenario": event.scenario or "",
                }
            )
    windows = sum(len(found) for found in scores.values())
    target_days = windows * REPLAY_EVERY.total_seconds() / 86_400  # a window per REPLAY_EVERY
    out = {
        "replay_hours": hours,
        "replay_targets": len(scores),
        "replay_windows": windows,
        "replay_alarm_events": len(alarms),
        "replay_alarms_per_target_day": round(len(alarms) / target_days, 3)
        if target_days
        else None,
    }
    truth = judge(alarms, since, until, TOLERANCE)
    if truth is not None:
        keys = ("faults", "faults_found", "recall", "precision", "deceptive_fpr")
        out.update({f"replay_{key}": truth[key] for key in keys})
        for event, case in zip(events, truth["alarm_cases"], strict=True):
            event["case"] = case
    out["events"] = sorted(events, key=lambda e: (e["start"], e["level"], e["target"]))
    return out
