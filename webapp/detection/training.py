"""How each kind of model is trained inside the app: its data (the simulator's training
fleets plus what people labelled or recorded here), its artefact directory, its progress,
and its comparison with the promoted version. Called by ``versions.run_training``."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from webapp.detection import scoring, versions
from webapp.detection.models import ModelVersion

log = logging.getLogger(__name__)


class _ProgressHandler(logging.Handler):
    """Training code logs its epochs; the Models page shows the latest such line."""

    def __init__(self, version_id: int):
        super().__init__(logging.INFO)
        self.version_id = version_id

    def emit(self, record: logging.LogRecord) -> None:
        try:
            versions.report_progress(self.version_id, message=record.getMessage()[:300])
        except Exception:  # progress is best effort; training must not fail over it
            log.debug("progress not recorded", exc_info=True)


def _with_progress(version: ModelVersion, logger_names: tuple[str, ...], fn):
    handler = _ProgressHandler(version.pk)
    loggers = [logging.getLogger(name) for name in logger_names]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(min(logger.level or logging.INFO, logging.INFO))
    try:
        return fn()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _flatten(metrics: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, int | float | str | bool) or value is None:
            out[name] = round(value, 4) if isinstance(value, float) else value
    return out


def _compare(candidate: dict, promoted: ModelVersion | None, keys: list[str]) -> dict:
    if promoted is None:
        return {}
    return {
        key: {"candidate": candidate.get(key), "promoted": promoted.metrics.get(key)}
        for key in keys
    }


# --- anomaly ---------------------------------------------------------------------------
def labelled_history_agreement(detector, windows) -> dict:
    """How a detector does on the windows people judged: anomalies it flags and normal or
    expected ones it leaves alone."""
    if not windows:
        return {"labelled_windows": 0}
    scores = detector.score([w.window for w in windows], explain="none")
    hits = sum(
        (s.is_anomalous == (w.label == "anomaly")) for s, w in zip(scores, windows, strict=True)
    )
    return {"labelled_windows": len(windows), "labelled_agreement": round(hits / len(windows), 4)}


def train_anomaly(version: ModelVersion) -> dict:
    from models.anomaly.detector import AnomalyDetector
    from models.anomaly.train import ModelConfig, TrainConfig, train
    from webapp.detection.labels import labelled_windows

    options = dict(version.config.get("train", {}))
    quick = options.pop("quick", False)
    model_options = options.pop("model", {})
    base = TrainConfig.quick() if quick else TrainConfig()
    model = ModelConfig(**{**asdict(base.model), **model_options})
    windows = labelled_windows(_metric_names(), model.window_steps, model.step_seconds)
    cfg = TrainConfig(
        **{
            **{
                k: v
                for k, v in asdict(base).items()
                if k not in ("model", "extra_windows", "out_dir")
            },
            **options,
        },
        model=model,
        extra_windows=windows,
        out_dir=version.artefact_path,
    )
    result = _with_progress(version, ("models.anomaly.train",), lambda: train(cfg))
    metrics = _flatten(result.metrics.get("validation", {}), "validation.")
    metrics["train_windows"] = result.metrics.get("train_windows")
    # The validation fleet's seed says whether two versions' figures share their data.
    metrics["validation_fleet_seed"] = result.metrics.get("val_seed")
    metrics.update(labelled_history_agreement(result.detector, windows))
    promoted = versions.promoted(ModelVersion.KIND_ANOMALY)
    comparison = _compare(
        metrics,
        promoted,
        [k for k in metrics if k.startswith("validation")],
    )
    # Both versions replayed over the same recent hours of this fleet: how noisy each would
    # be here, which a simulated validation fleet cannot say of a real one.
    current = AnomalyDetector.load(promoted.artefact_path) if promoted is not None else None
    replay, *before = scoring.replay(
        [result.detector, *([current] if current else [])], int(time.time() * 1000)
    )
    replay_events = replayed_alarms(
        replay.pop("events"), before[0].pop("events") if before else None
    )
    metrics.update({f"fleet_replay.{k}": v for k, v in replay.items()})
    if current is not None and windows:
        agreement = labelled_history_agreement(current, windows)
        comparison["labelled_agreement"] = {
            "candidate": metrics.get("labelled_agreement"),
            "promoted": agreement.get("labelled_agreement"),
        }
    if before and replay["replay_windows"]:
        for key in [k for k in replay if k not in ("replay_hours", "replay_targets")]:
            comparison[f"fleet_replay.{key} (same windows)"] = {
                "candidate": replay[key],
                "promoted": before[0].get(key),
            }
    return {
        "metrics": metrics,
        "comparison": comparison,
        "data_hash": result.data_hash,
        "label_count": len(windows),
        "config": {
            "train": version.config.get("train", {}),
            "seconds": result.metrics.get("seconds", {}),
        },
        "replay": {
            "hours": replay["replay_hours"],
            "every_minutes": int(scoring.REPLAY_EVERY.total_seconds() // 60),
            "promoted_version": promoted.version if current is not None else None,
            **replay_events,
        },
        "promote_if_first": True,
    }


def replayed_alarms(events: list[dict], promoted: list[dict] | None) -> dict:
    """The alarm events a version's replay raised, each marked with whether the promoted
    version raised one on the same target at an overlapping time (None without a promoted
    version), and the promoted version's events this one did not raise: what promoting it
    would add and take away, alarm by alarm."""
    if promoted is None:
        return {"events": [{**e, "promoted_too": None} for e in events], "promoted_only": []}

    def overlap(a: dict, b: dict) -> bool:
        same = (a["level"], a["target"]) == (b["level"], b["target"])
        return same and a["start"] <= b["end"] and b["start"] <= a["end"]

    return {
        "events": [{**e, "promoted_too": any(overlap(e, p) for p in promoted)} for e in events],
        "promoted_only": [p for p in promoted if not any(overlap(p, e) for e in events)],
    }


def snapshot_labels() -> int:
    """Keep the telemetry of new judgements (labelled anomalies, incidents, annotations)
    before retention deletes it, at the anomaly model's default window."""
    from models.anomaly.train import ModelConfig
    from webapp.detection.labels import snapshot_judgements

    model = ModelConfig()
    return snapshot_judgements(_metric_names(), model.window_steps, model.step_seconds)


def _metric_names() -> dict[str, list[str]]:
    from ingest.simulator import HOST_METRIC_NAMES, VM_METRIC_NAMES

    return {"vm": list(VM_METRIC_NAMES), "host": list(HOST_METRIC_NAMES)}


# --- mitigation --------------------------------------------------------------------------
def recorded_history():
    """Closed events with an action and a measured outcome, as the engine's history frame."""
    import pandas as pd

    from webapp.mitigation.engine import COVARIATES
    from webapp.mitigation.models import ActionOutcome

    rows = []
    for outcome in ActionOutcome.objects.filter(downtime_minutes__isnull=False).select_related(
        "event", "action"
    ):
        signals = outcome.event.signals or {}
        if not all(name in signals for name in COVARIATES[1:]):
            continue
        rows.append(
            {
                "fault": outcome.event.fault_category,
                **{name: signals[name] for name in COVARIATES[1:]},
                "action": outcome.action.key,
                "downtime_minutes": outcome.downtime_minutes,
                "interruptions": outcome.interruptions,
                "capacity_cost_node_hours": outcome.capacity_cost,
                "ts": outcome.event.start.isoformat(),
            }
        )
    return pd.DataFrame(rows)


def train_mitigation(version: ModelVersion) -> dict:
    import pandas as pd

    from models.mitigation.data import simulated_history, validate_history
    from models.mitigation.train import Splits, TrainConfig, train

    options = dict(version.config.get("train", {}))
    cfg = TrainConfig.from_dict({**options, "out_dir": version.artefact_path})
    simulated, _ = simulated_history(cfg.n_events, cfg.seed)
    val, val_truth = simulated_history(cfg.val_events, cfg.validation_seed)
    recorded, errors = (
        validate_history(recorded_history()) if len(recorded_history()) else (pd.DataFrame(), [])
    )
    train_frame = (
        pd.concat([simulated, recorded], ignore_index=True) if len(recorded) else simulated
    )
    result = _with_progress(
        version,
        ("models.mitigation.train", "models.mitigation.engine", "models.mitigation.tuning"),
        lambda: train(cfg, Splits(train_frame, val, val_truth, errors)),
    )
    metrics = _flatten(result.metrics)
    metrics["recorded_events"] = len(recorded)
    promoted = versions.promoted(ModelVersion.KIND_MITIGATION)
    keys = [k for k in metrics if k.startswith("tuning.")][:12]
    return {
        "metrics": metrics,
        "comparison": _compare(metrics, promoted, keys),
        "data_hash": result.data_hash,
        "label_count": len(recorded),
        "promote_if_first": True,
    }


# --- interference ------------------------------------------------------------------------
def train_interference(version: ModelVersion) -> dict:
    from models.interference.train import TrainConfig, train

    options = dict(version.config.get("train", {}))
    for key in ("seeds", "exclude_archetypes", "quantiles", "members"):
        if key in options:
            options[key] = tuple(options[key])
    cfg = TrainConfig(**{**options, "out_dir": version.artefact_path})
    result = _with_progress(version, ("models.interference.train",), lambda: train(cfg))
    metrics = _flatten(result.metrics)
    promoted = versions.promoted(ModelVersion.KIND_INTERFERENCE)
    keys = [k for k in metrics if "mae" in k or "coverage" in k][:10]
    comparison = _compare(metrics, promoted, keys)
    if promoted is not None:
        comparison.update(interference_head_to_head(promoted, result))
    return {
        "metrics": metrics,
        "comparison": comparison,
        "data_hash": result.data_hash,
        "promote_if_first": True,
    }


def interference_head_to_head(promoted: ModelVersion, result) -> dict:
    """Both versions scored on the new version's held-out windows: the stored figures above
    were each measured on its own validation data, which differs when the configuration
    does. Whether the promoted version held those workloads out too is said, since a version
    that trained on them is favoured."""
    from models.interference.predictor import InterferencePredictor

    prefix = "same held-out windows: "
    try:
        theirs = InterferencePredictor.load(promoted.artefact_path).score_windows(
            result.val, result.metric_names
        )
        mine = InterferencePredictor.load(result.out_dir).score_windows(
            result.val, result.metric_names
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        return {f"{prefix}not compared": {"candidate": "–", "promoted": str(exc)[:200]}}
    try:
        theirs_held_out = json.loads((Path(promoted.artefact_path) / "metrics.json").read_text())[
            "val_groups"
        ]
    except (OSError, ValueError, KeyError):
        theirs_held_out = None
    if theirs_held_out is None:
        both = "unknown"
    elif set(result.metrics["val_groups"]) <= set(theirs_held_out):
        both = "yes"
    else:
        both = "no: it trained on some of these workloads"
    rows = {
        f"{prefix}{key}": {"candidate": round(mine[key], 4), "promoted": round(theirs[key], 4)}
        for key in ("mae_pp", "coverage", "interval_width")
    }
    rows[f"{prefix}held out by both"] = {
        "candidate": "yes",
        "promoted": both,
    }
    return rows


TRAINERS = {
    ModelVersion.KIND_ANOMALY: train_anomaly,
    ModelVersion.KIND_INTERFERENCE: train_interference,
    ModelVersion.KIND_MITIGATION: train_mitigation,
}
