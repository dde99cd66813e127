"""The promoted anomaly model's novelty calibration, fitted on the fleet's own windows
(``models.anomaly.novelty``): every few hours, the windows of the last day are sampled
every ``SAMPLE_EVERY`` and each target's forecast error of each metric is judged against
its own usual error of that metric. What the scoring rounds read back as ``in_force``."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings

from models.anomaly.novelty import FleetNovelty
from models.anomaly.postprocess import Thresholds
from webapp.detection import services, versions
from webapp.detection.models import AnomalyThreshold, ModelVersion, NoveltyCalibration
from webapp.telemetry.models import Instance, Node

SAMPLE_EVERY = timedelta(minutes=15)


def fit(
    version_id: int | None = None,
    hours: float | None = None,
    now_ms: int | None = None,
    every: timedelta = SAMPLE_EVERY,
) -> dict:
    """Fit ``version_id``'s (default: the promoted anomaly version's) novelty calibration of
    each level on its windows ending every ``every`` over the last ``hours``
    (``TELLTALE_NOVELTY_HOURS``). A level whose targets have too little history yet keeps
    its previous fit, if any."""
    from webapp.detection.scoring import _load, windows_for, with_data

    if version_id is None:
        version = versions.promoted(ModelVersion.KIND_ANOMALY)
    else:
        version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None or version.kind != ModelVersion.KIND_ANOMALY or not version.artefact_path:
        return {"fitted": [], "reason": "no anomaly version to calibrate"}
    hours = settings.TELLTALE_NOVELTY_HOURS if hours is None else hours
    detector = _load(version.artefact_path)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    every_ms = int(every.total_seconds() * 1000)
    until_ms = now_ms - now_ms % every_ms
    since_ms = until_ms - int(hours * 3_600_000)
    since = datetime.fromtimestamp(since_ms / 1000, tz=UTC)
    until = datetime.fromtimestamp(until_ms / 1000, tz=UTC)
    out: dict = {"fitted": [], "skipped": {}}
    for level in ("vm", "host"):
        model = Instance if level == "vm" else Node
        rows = list(model.objects.filter(last_seen__gte=since))
        gap = np.full(len(detector.specs[level].metric_names), np.nan)
        errors: dict[str, list[np.ndarray]] = defaultdict(list)
        for end_ms in range(since_ms + every_ms, until_ms + 1, every_ms):
            windows = with_data(windows_for(detector, level, rows, end_ms))
            scored = {w.target for w in windows}
            for s in detector.score(windows, explain="none") if windows else []:
                # Each metric's error: judged against that metric's usual, one metric
                # always forecast badly does not hide the others.
                errors[s.target].append(gap if s.novelty_errors is None else s.novelty_errors)
            for name in {r.name for r in rows} - scored:  # a gap ends an excursion
                errors[name].append(gap)
        try:
            fleet = FleetNovelty.fit({k: np.asarray(v) for k, v in errors.items()})
            fleet.metric_names = list(detector.specs[level].metric_names)
        except ValueError as exc:
            out["skipped"][level] = str(exc)
            continue
        services.save_novelty_calibration(version, level, fleet, since, until)
        out["fitted"].append(level)
        out[level] = {"targets": len(fleet.scales), "windows": fleet.windows}
    return out


def in_force(version) -> dict:
    """level -> FleetNovelty of ``version`` (empty until its first fit)."""
    return {
        row.level: FleetNovelty.from_dict(row.data)
        for row in NoveltyCalibration.objects.filter(version=version)
    }


def levels():
    """The novelty levels windows alarm at (``scoring.AlarmLevels``), per level and cluster:
    an admin's (``AnomalyThreshold`` of signal novelty), else TELLTALE_NOVELTY_LEVEL; None
    when novelty alarms are off (the setting is 0)."""
    from webapp.detection.scoring import AlarmLevels

    default = float(settings.TELLTALE_NOVELTY_LEVEL)
    if default <= 0:
        return None
    chosen = AnomalyThreshold.objects.filter(signal=AnomalyThreshold.NOVELTY).values_list(
        "level", "cluster", "value"
    )
    fleet = {level: value for level, cluster, value in chosen if not cluster}
    clusters = {(level, cluster): value for level, cluster, value in chosen if cluster}
    return AlarmLevels(Thresholds(default, fleet), clusters)
