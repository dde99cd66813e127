"""Serving API of the context anomaly model (stable; the app calls only this).

    from models.anomaly.detector import AnomalyDetector, Window

    det = AnomalyDetector.load("var/models/anomaly/<version>")
    det.metric_names        # {"vm": [19 vm_* names], "host": [17 host_* names]}
    det.window_steps        # samples per window (240 = one hour at 15 s)
    det.step_seconds        # 15

    scores = det.score([
        Window(target="vm-0042", level="vm", end=1736150400.0,
               metrics=matrix,            # float32 [window_steps, len(det.metric_names["vm"])]
               logs=[(1736150391.2, "Backup of <*> started"), ...]),
        ...
    ])
    # WindowScore: target, level, end, raw, score (0-100), is_anomalous, scenario,
    #              scenario_probability, metrics [(name, share)], templates [(text, share)]
    events = det.events(scores_of_one_target)      # -> [Event(start, end, peak, ...)]

    # Training (the artefact directory is what load() reads):
    from models.anomaly.train import LabeledWindow, TrainConfig, train
    train(TrainConfig(out_dir="var/models/anomaly/<version>",
                      extra_windows=[LabeledWindow(window, "expected", "nightly_export")]))

Windows
    ``metrics`` has one row per step ending at ``end`` (the last row is the step that starts
    at ``end - step_seconds``), columns in ``metric_names[level]`` order, NaN where a sample
    is missing. ``logs`` holds the lines of the same hour as ``(ts_seconds, text)``. ``text``
    may be the drain3 template the app mined at ingest (fast: each distinct template is looked
    up once and cached) or the raw message (mined here with the same drain3 configuration,
    about 30 µs a line). Lines outside the window are ignored.

Scores
    ``raw`` is the model's score (anomaly logit when the model was trained with labels,
    normalised forecast error otherwise); ``score`` is its calibration on validation windows:
    50 = one normal window in a thousand scores this high, 67 one in ten thousand, 100 one in
    a million. ``is_anomalous`` applies the threshold of the window's level (artefact
    ``thresholds.json``; ``score(..., thresholds=...)`` overrides). Scenario: the most likely
    class ("normal", an anomaly, or an expected/deceptive-normal scenario) and its probability.
    Attribution: the top 5 metrics and templates, ranked, each with its share of the window's
    total attribution; computed for anomalous windows only unless ``explain="all"``
    (``explain="none"`` skips it).

Events
    ``events(scores, threshold=None, max_gap=1)`` merges one target's flagged windows (gaps of
    up to ``max_gap`` windows bridged) into ``postprocess.Event(target, start, end, peak,
    peak_time, n_points, mean, scenario, scenario_probability, metrics, templates)``; the
    scenario and attribution accumulate over the event's windows. The steps are also
    available separately in ``models.anomaly.postprocess``.

Throughput: windows are scored in batches of ``batch_size``; 1,000 VM windows with template
texts take about 0.5 s on one thread of the 2-core machine, 4.4 s as raw messages
(benchmarks/scoring.py). One
detector may be shared by threads (the miner is locked); torch threads are the caller's
choice (one per worker process when the cores are shared).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from models.anomaly.attribution import attribute
from models.anomaly.components import ContextEncoder
from models.anomaly.datamodule import Batch, WindowShape, assemble
from models.anomaly.features import FeatureSpec, SeriesGroup
from models.anomaly.logmining import LogMiner, TemplateTable
from models.anomaly.module import DEFAULT_TOPK, raw_scores, scaled_forecast_errors, top_errors
from models.anomaly.novelty import EXPECTED_CLASSES, NOVEL_SCENARIO, NOVELTY_LEVEL, FleetNovelty
from models.anomaly.postprocess import (
    Calibrator,
    Event,
    Thresholds,
    merge_attributions,
    merge_events,
)

ARTEFACT_FILES = (
    "model.pt",
    "config.json",
    "features.json",
    "calibration.json",
    "thresholds.json",
    "templates.json",
    "metrics.json",
)


@dataclass
class Window:
    target: str
    level: str  # "vm" | "host" (any group the model was trained on)
    end: float  # epoch seconds, end of the window (exclusive)
    metrics: np.ndarray  # float32 [window_steps, M]
    logs: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class WindowScore:
    target: str
    level: str
    end: float
    raw: float
    score: float
    is_anomalous: bool
    scenario: str
    scenario_probability: float
    metrics: list[tuple[str, float]] = field(default_factory=list)
    templates: list[tuple[str, float]] = field(default_factory=list)
    # Novelty (``models.anomaly.novelty``): the forecast error, and its calibration on the
    # fleet's own windows where one was passed in and the target is known to it.
    novelty_raw: float | None = None
    novelty_errors: tuple[float, ...] | None = None  # each metric's forecast error
    novelty: float | None = None
    novel: bool = False  # alarmed on novelty alone: no learnt scenario explains the window

    @property
    def alarm_score(self) -> float:
        """The calibrated score the window alarmed on (its score when it did not)."""
        return float(self.novelty) if self.novel and self.novelty is not None else self.score


class AnomalyDetector:
    def __init__(
        self,
        net: ContextEncoder,
        specs: dict[str, FeatureSpec],
        shape: WindowShape,
        mode: str,
        classes: list[str],
        table: TemplateTable | None,
        seed_templates: list[str] | None = None,
        calibrators: dict[str, Calibrator] | None = None,
        thresholds: Thresholds | None = None,
        err_scale: dict[str, list[float]] | None = None,
        config: dict | None = None,
        metrics: dict | None = None,
        topk: int = DEFAULT_TOPK,
        err_scale_targets: dict[str, dict[str, list[float]]] | None = None,
        expected_classes: list[str] | None = None,
    ):
        self.net = net.eval()
        self.specs = specs
        self.shape = shape
        self.mode = mode
        self.classes = classes
        # Scenarios a window may be taken for without alarming on novelty: the catalogue's
        # deceptive normals and what people labelled expected (``userlabels.expected_names``).
        self.expected_classes = (
            [c for c in classes if c in EXPECTED_CLASSES]
            if expected_classes is None
            else list(expected_classes)
        )
        self.table = table
        self.calibrators = calibrators or {}
        self.thresholds = thresholds or Thresholds()
        self.err_scale = err_scale or {}
        # group -> target -> per-metric error scale, where the scored targets are the
        # training ones (see ``train.error_scale``); other targets use ``err_scale``.
        self.err_scale_targets = err_scale_targets or {}
        self.config = config or {}
        self.metrics = metrics or {}
        self.topk = topk
        self._seed_templates = list(seed_templates or [])
        self._miner: LogMiner | None = None
        self._text_index: dict[str, int] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ properties
    @property
    def metric_names(self) -> dict[str, list[str]]:
        return {g: list(s.metric_names) for g, s in self.specs.items()}

    @property
    def window_steps(self) -> int:
        return self.shape.window_steps

    @property
    def step_seconds(self) -> int:
        return self.shape.step_seconds

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), d / "model.pt")
        cfg = {
            "net": self.net.init_args,
            "shape": vars(self.shape),
            "mode": self.mode,
            "classes": self.classes,
            "expected_classes": self.expected_classes,
            "err_scale": self.err_scale,
            "err_scale_targets": self.err_scale_targets,
            "topk": self.topk,
            "train": self.config,
        }
        _dump(d / "config.json", cfg)
        _dump(d / "features.json", {g: s.as_dict() for g, s in self.specs.items()})
        _dump(d / "calibration.json", {g: c.as_dict() for g, c in self.calibrators.items()})
        _dump(d / "thresholds.json", self.thresholds.as_dict())
        templates = self._seed_templates or (self.table.texts if self.table else [])
        _dump(d / "templates.json", {"templates": templates})
        _dump(d / "metrics.json", self.metrics)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> AnomalyDetector:
        d = Path(directory)
        cfg = json.loads((d / "config.json").read_text())
        net = ContextEncoder(**cfg["net"])
        net.load_state_dict(torch.load(d / "model.pt", map_location="cpu", weights_only=True))
        specs = {
            g: FeatureSpec.from_dict(s)
            for g, s in json.loads((d / "features.json").read_text()).items()
        }
        cal = {
            g: Calibrator.from_dict(c)
            for g, c in json.loads((d / "calibration.json").read_text()).items()
        }
        templates = json.loads((d / "templates.json").read_text())["templates"]
        vocab = cfg["net"].get("vocab_size", 0)
        table = TemplateTable(vocab) if vocab else None
        det = cls(
            net,
            specs,
            WindowShape(**cfg["shape"]),
            cfg["mode"],
            cfg["classes"],
            table,
            seed_templates=templates,
            calibrators=cal,
            thresholds=Thresholds.from_dict(json.loads((d / "thresholds.json").read_text())),
            err_scale=cfg.get("err_scale", {}),
            err_scale_targets=cfg.get("err_scale_targets", {}),
            config=cfg.get("train", {}),
            metrics=json.loads((d / "metrics.json").read_text()),
            topk=cfg.get("topk", 3),  # artefacts written before it was saved used 3
            expected_classes=cfg.get("expected_classes"),  # before 2026-12-01: the catalogue's
        )
        return det

    # ------------------------------------------------------------------ logs
    def _lookup(self) -> LogMiner:
        if self._miner is None:
            self._miner = LogMiner(self._seed_templates)
        return self._miner

    def template_text(self, text: str) -> str:
        """The drain3 template this detector's miner gives a raw line or a template text."""
        with self._lock:
            return self._lookup().lookup(text)

    def template_index(self, text: str) -> int:
        """Text (raw line or mined template) -> index into the template table (cached)."""
        idx = self._text_index.get(text)
        if idx is not None:
            return idx
        with self._lock:
            idx = self.table.add(self._lookup().lookup(text))
            self._text_index[text] = idx
        return idx

    def template_indices(self, texts: list[str]) -> np.ndarray:
        """Bulk path for evaluation: like ``template_index`` without caching raw texts."""
        with self._lock:
            lookup, add = self._lookup().lookup, self.table.add
            return np.fromiter((add(lookup(t)) for t in texts), dtype=np.int64, count=len(texts))

    # ------------------------------------------------------------------ scoring
    def _scale(self, group: str, targets: list[str] | None = None) -> torch.Tensor | None:
        """Error scale [M], or [B, M] when the windows' targets have their own."""
        s = self.err_scale.get(group)
        per = self.err_scale_targets.get(group)
        if s is None:
            return None
        if targets is None or not per:
            return torch.tensor(s, dtype=torch.float32)
        return torch.tensor([per.get(t, s) for t in targets], dtype=torch.float32)

    def run_batch(self, batch: Batch) -> dict[str, np.ndarray]:
        """Raw score, anomaly probability and scenario distribution of one batch."""
        with torch.inference_mode():
            out = self.net(batch.group, batch.x, batch.time, batch.logs)
            raw = raw_scores(
                out,
                batch,
                self.mode,
                self.shape.patch_steps,
                self._scale(batch.group, batch.targets),
                self.topk,
            )
            res = {"raw": raw.numpy().astype(np.float64)}
            if self.mode == "supervised" and self.err_scale.get(batch.group) is not None:
                # The forecast branch's error, as in an unlabelled model: how unlike the
                # training windows the last patch is, whatever the labelled heads learnt;
                # and each metric's, which novelty judges against each metric's usual.
                err = scaled_forecast_errors(
                    out, batch, self.shape.patch_steps, self._scale(batch.group, batch.targets)
                )
                res["novelty"] = top_errors(err, self.topk).numpy().astype(np.float64)
                res["novelty_errors"] = err.numpy().astype(np.float64)
            if "scenario" in out:
                res["scenario"] = torch.softmax(out["scenario"], -1).numpy()
        return res

    def calibrate(self, group: str, raw: np.ndarray) -> np.ndarray:
        cal = self.calibrators.get(group)
        if cal is None:
            raise KeyError(f"no calibration for group {group!r}")
        return cal.transform(raw)

    def score_group(
        self,
        group: SeriesGroup,
        keys: np.ndarray,
        spec: FeatureSpec | None = None,
        batch_size: int = 1024,
    ) -> dict[str, np.ndarray]:
        """Evaluation path: windows (target, end) of a series group → raw, scenario probs."""
        spec = spec or self.specs.get(group.name)
        parts: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(keys), batch_size):
            batch = self._group_batch(group, keys[i : i + batch_size], spec)
            for name, arr in self.run_batch(batch).items():
                parts.setdefault(name, []).append(arr)
        return {name: np.concatenate(v) for name, v in parts.items()}

    def explain_group(
        self,
        group: SeriesGroup,
        keys: np.ndarray,
        spec: FeatureSpec | None = None,
        batch_size: int = 256,
        top: int = 5,
    ) -> list[tuple[list[tuple[str, float]], list[tuple[str, float]]]]:
        """Evaluation path: (metrics, templates) attribution of windows (target, end), as
        ``score`` computes it for anomalous windows (``top`` entries per list)."""
        spec = spec or self.specs.get(group.name)
        names = spec.metric_names if spec is not None else []
        out: list[tuple[list[tuple[str, float]], list[tuple[str, float]]]] = []
        for i in range(0, len(keys), batch_size):
            k = keys[i : i + batch_size]
            batch = self._group_batch(group, k, spec)
            scale = self._scale(group.name, [group.target_names[t] for t in k[:, 0]])
            out += attribute(
                self.net, batch, self.mode, names, self.table, scale, self.topk, top=top
            )
        return out

    def _group_batch(self, group: SeriesGroup, k: np.ndarray, spec: FeatureSpec | None) -> Batch:
        entries = None
        if group.logs is not None and self.table is not None:
            entries = group.logs.window_entries(k[:, 0], k[:, 1], self.window_steps)
        values = None
        if group.values.shape[-1]:
            values = group.window_values(k[:, 0], k[:, 1], self.window_steps)
        return assemble(
            group.name,
            values,
            group.window_end_ts(k[:, 1], k[:, 0]),
            entries,
            spec,
            self.table if entries is not None else None,
            self.shape,
            targets=[group.target_names[t] for t in k[:, 0]],
        )

    def _window_batch(self, level: str, windows: list[Window]) -> Batch:
        W, dt = self.window_steps, self.step_seconds
        spec = self.specs[level]
        values = np.full((len(windows), W, len(spec.metric_names)), np.nan, dtype=np.float32)
        win, step, tmpl = [], [], []
        for b, w in enumerate(windows):
            m = np.asarray(w.metrics, dtype=np.float32)
            if m.ndim != 2 or m.shape[1] != len(spec.metric_names):
                raise ValueError(
                    f"{w.target}: metrics must be [T, {len(spec.metric_names)}], got {m.shape}"
                )
            rows = min(W, m.shape[0])
            values[b, W - rows :] = m[-rows:]
            if self.table is None:
                continue
            start = float(w.end) - W * dt
            for ts, text in w.logs:
                s = int((float(ts) - start) // dt)
                if 0 <= s < W:
                    win.append(b)
                    step.append(s)
                    tmpl.append(self.template_index(text))
        entries = None
        if self.table is not None:
            entries = (
                np.asarray(win, dtype=np.int64),
                np.asarray(step, dtype=np.int64),
                np.asarray(tmpl, dtype=np.int64),
                np.ones(len(win), dtype=np.float32),
            )
        ends = np.array([float(w.end) for w in windows], dtype=np.int64)
        names = [w.target for w in windows]
        return assemble(level, values, ends, entries, spec, self.table, self.shape, targets=names)

    def score(
        self,
        windows: list[Window],
        explain: str = "anomalous",
        thresholds: Thresholds | None = None,
        batch_size: int = 512,
        novelty: dict[str, FleetNovelty] | None = None,
        novelty_levels: Thresholds | None = None,
    ) -> list[WindowScore]:
        """Score windows. With ``novelty`` (per level, fitted on the fleet's own windows) a
        window also alarms where its novelty reaches ``novelty_levels`` and the scenario
        head does not name an expected scenario: scenario ``NOVEL_SCENARIO``, explained by
        the forecast error."""
        thresholds = thresholds or self.thresholds
        novelty = novelty or {}
        novelty_levels = novelty_levels or Thresholds(default=NOVELTY_LEVEL)
        expected = np.isin(self.classes, self.expected_classes)
        out: list[WindowScore | None] = [None] * len(windows)
        by_level: dict[str, list[int]] = {}
        for i, w in enumerate(windows):
            if w.level not in self.specs:
                raise ValueError(f"unknown level {w.level!r}; model knows {sorted(self.specs)}")
            by_level.setdefault(w.level, []).append(i)
        for level, idx in by_level.items():
            names = self.specs[level].metric_names
            for lo in range(0, len(idx), batch_size):
                part = idx[lo : lo + batch_size]
                batch = self._window_batch(level, [windows[i] for i in part])
                res = self.run_batch(batch)
                cal = self.calibrate(level, res["raw"])
                flag = cal >= thresholds.for_group(level)
                scen = res.get("scenario")
                nov_raw = res.get("novelty")
                nov_err = res.get("novelty_errors")
                nov = [None] * len(part)
                novel = np.zeros(len(part), dtype=bool)
                fleet = novelty.get(level)
                if nov_raw is not None and fleet is not None:
                    nov = fleet.score_many([windows[i].target for i in part], nov_raw, nov_err)
                    at = novelty_levels.for_group(level)
                    novel = np.array([v is not None and v >= at for v in nov]) & ~flag
                    if scen is not None and expected.any():
                        novel &= scen[:, expected].sum(1) < 0.5
                attr = {}
                for mode, chosen in ((self.mode, flag), ("forecast", novel)):
                    explain_idx = [
                        j
                        for j in range(len(part))
                        if (explain == "all" and mode == self.mode)
                        or (explain != "none" and chosen[j])
                    ]
                    if not explain_idx:
                        continue
                    sub = _select(batch, explain_idx)
                    chosen_targets = [windows[part[j]].target for j in explain_idx]
                    scale = self._scale(level, chosen_targets)
                    if mode == "forecast" and fleet is not None and fleet.metric_scales:
                        # Rank what the target forecast worst against its own usual.
                        usual = fleet.usual(chosen_targets)
                        scale = torch.as_tensor(
                            np.nan_to_num(usual, nan=1.0), dtype=torch.float32
                        ) * (1.0 if scale is None else scale)
                    pairs = attribute(self.net, sub, mode, names, self.table, scale, self.topk)
                    attr.update(zip(explain_idx, pairs, strict=True))
                for j, i in enumerate(part):
                    c = int(np.argmax(scen[j])) if scen is not None else -1
                    m, t = attr.get(j, ([], []))
                    if novel[j]:
                        c = -1
                    out[i] = WindowScore(
                        target=windows[i].target,
                        level=level,
                        end=float(windows[i].end),
                        raw=float(res["raw"][j]),
                        score=float(cal[j]),
                        is_anomalous=bool(flag[j] or novel[j]),
                        scenario=self.classes[c]
                        if c >= 0
                        else (NOVEL_SCENARIO if novel[j] else "anomaly" if flag[j] else "normal"),
                        scenario_probability=float(scen[j, c]) if c >= 0 else 0.0,
                        metrics=m,
                        templates=t,
                        novelty_raw=None if nov_raw is None else float(nov_raw[j]),
                        novelty_errors=None if nov_err is None else tuple(nov_err[j].tolist()),
                        novelty=nov[j],
                        novel=bool(novel[j]),
                    )
        return out  # type: ignore[return-value]

    def events(
        self, scores: list[WindowScore], threshold: float | None = None, max_gap: int = 1
    ) -> list[Event]:
        """Flagged windows of one target (time-ordered or not) merged into events, each with
        the scenario most supported over its windows (score x probability) and attribution
        merged over its windows."""
        if not scores:
            return []
        level = scores[0].level
        level_threshold = self.thresholds.for_group(level) if threshold is None else threshold
        scores = sorted(scores, key=lambda s: s.end)
        times = np.array([s.end for s in scores])
        cal = np.array([s.score for s in scores])
        events = merge_events(scores[0].target, times, cal, level_threshold, max_gap)
        for e in events:
            inside = [s for s in scores if e.start <= s.end <= e.end and s.score >= level_threshold]
            weights = [s.score for s in inside]
            votes: dict[str, float] = {}
            for s in inside:  # evidence accumulates over the event's windows
                votes[s.scenario] = votes.get(s.scenario, 0.0) + s.score * s.scenario_probability
            e.scenario = max(votes, key=votes.get)
            share = [s for s in inside if s.scenario == e.scenario]
            e.scenario_probability = float(np.mean([s.scenario_probability for s in share]))
            e.metrics = merge_attributions([s.metrics for s in inside], weights)
            e.templates = merge_attributions([s.templates for s in inside], weights)
        return events


def _select(batch: Batch, idx: list[int]) -> Batch:
    """Sub-batch of windows ``idx`` (log entries re-indexed)."""
    sel = torch.as_tensor(idx, dtype=torch.long)
    logs = batch.logs
    if logs is not None:
        P = batch.time.shape[1]
        pos = torch.full((batch.size,), -1, dtype=torch.long)
        pos[sel] = torch.arange(len(idx))
        keep = pos[logs.bag // P] >= 0
        logs = replace(
            logs,
            bag=pos[logs.bag[keep] // P] * P + logs.bag[keep] % P,
            template=logs.template[keep],
            weight=logs.weight[keep],
        )
    return Batch(
        batch.group,
        None if batch.x is None else batch.x[sel],
        batch.time[sel],
        logs,
        batch.label[sel],
        batch.scenario[sel],
        batch.forecast_weight[sel],
        batch.sample_weight[sel],
    )


def _dump(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, default=float))
