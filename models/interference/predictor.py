"""Serving API of the interference model (stable; the app's detection services call it).

    from models.interference.predictor import (
        InterferencePredictor, VictimInput, NeighbourInput, WhatIfError)

    model = InterferencePredictor.load("var/models/interference")
    model.metric_names    # vm_* metric names, the column order every matrix must use
    model.window_steps    # steps the model looks at (longer matrices: the last ones are used)
    model.capacity_keys   # ("cores", "mem_gb", "llc_mb", "membw", "net", "disk")

    victim = VictimInput(
        instance_id="vm-1",
        matrix=m,                                   # float32 [T, M]; NaN = missing sample
        neighbours=[NeighbourInput("vm-2", m2)],    # instances on the same node; may be []
        capacity={"cores": 64, "mem_gb": 384, "llc_mb": 38.5,
                  "membw": 110e9, "net": 3.125e9, "disk": 1.2e9},  # bytes/s for the last 3
    )
    model.predict([victim, ...])   -> [Prediction(instance_id, p, p_low, p_high), ...]
    model.attribute(victim)        -> [(neighbour_id, gain_in_p), ...] largest gain first
    model.attribute_many(victims)  -> one such list per victim, in one batched forward
    model.what_if(moved_matrix, target_neighbours, target_capacity, moved_id="vm-9")
                                   -> WhatIf(moved=Prediction, existing=[Prediction, ...],
                                             absent=[target instances without samples])
    model.what_if_placement(instance_id, target_node, metrics, node_of, capacities)
                                   -> the same, from id lookups (unknown ids raise WhatIfError)
    model.unfamiliar_many(victims) -> per victim, why its input is unlike the training
                                      windows (capacity, missing metrics); [] when it is not

P = performance alone / performance co-located, in [0, 1] (1 = no interference). p_low and
p_high bound a conformal interval with the coverage stored in ``calibration.json``
(``model.coverage``), calibrated on workloads held out of training. Matrices may have any
number of steps T (shorter ones are masked, longer ones cut to the most recent
``window_steps``) and neighbours may have their own T; they are aligned at the most recent
step. Counters (``*_total``) are differenced inside, pass raw values. A victim without any
sample raises ValueError; a neighbour without any sample in the window counts as absent
(it is not running there now), as it does in the training windows.

Attribution is leave-one-out through the model: for each neighbour, P predicted with that
neighbour removed minus P predicted with everyone; a positive gain means the neighbour hurts.
It answers "what does the model think would change", not a causal guarantee.

A victim without any neighbour in its window is not slowed by neighbours: P = 1 with the
interval [1 - margin, 1] (``calibration.serve_lone``), by definition rather than from the
nets, which never see a lone instance in the dense fleets they train on and predicted one
slowed by about 14 % (a sparse simulated fleet: 0.86 where P was 0.99; docs/interference.md,
"Instances alone on a node"). So moving an instance onto an empty node answers 1, and the
last neighbour's leave-one-out gain is everything the victim lost.

What-if moves an instance onto a target node: P of the moved instance next to the target's
instances, and P of each of those with the moved one added. The moved instance's own matrix
was measured where it runs now, contention symptoms included; the model reads it as the
instance's behaviour (see docs/interference.md, limitations). A move is answered less
accurately than an in-place question, so the moved instance's interval is widened by
``what_if_extra_margin`` (``calibration.json``; 0 for artefacts without it), calibrated on
simulated moves of held-out workloads against the simulator's counterfactual placements
(``models/interference/counterfactual.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.interference.calibration import (
    CALIBRATION_FILE,
    apply_margin,
    interval_metrics,
    read_calibration,
    serve_lone,
)
from models.interference.components import build_member
from models.interference.encoding import FeatureScaler
from models.interference.features import (
    CAPACITY_KEYS,
    CAPACITY_UNITS,
    TOKEN_STATS,
    Windows,
    aggregate,
    counter_columns,
    counters_to_increments,
    fit_window,
    leave_one_out,
    without_neighbours,
)
from models.interference.module import ensemble_mean, predict_array
from models.interference.train import MEMBER_FILES


class WhatIfError(ValueError):
    """A what-if question that cannot be answered as asked (the message says why)."""


@dataclass
class NeighbourInput:
    instance_id: str
    matrix: np.ndarray  # [T, M]


@dataclass
class VictimInput:
    instance_id: str
    matrix: np.ndarray  # [T, M]
    neighbours: list[NeighbourInput] = field(default_factory=list)
    capacity: Mapping[str, float] = field(default_factory=dict)


UNFAMILIAR_Z = 3.0  # log-capacity standard deviations from the training nodes' mean


def _stated(key: str, value: float) -> str:
    """A capacity figure in the model's unit as a number in the unit people state it in."""
    x = value / CAPACITY_UNITS[key].factor
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _figure(key: str, value: float) -> str:
    """ "Memory 8 GB": what the capacity figure is, its number and unit."""
    unit = CAPACITY_UNITS[key]
    return f"{unit.label} {_stated(key, value)} {unit.unit}".rstrip()


@dataclass(frozen=True)
class Prediction:
    instance_id: str
    p: float
    p_low: float
    p_high: float


@dataclass
class WhatIf:
    moved: Prediction
    existing: list[Prediction]
    # Instances placed on the target without any sample in the window: not running there
    # now, so neither a neighbour of the moved instance nor predicted themselves.
    absent: list[str] = field(default_factory=list)


class InterferencePredictor:
    def __init__(
        self,
        nets: Mapping[str, torch.nn.Module],
        scaler: FeatureScaler,
        margin: float,
        meta: dict,
    ):
        self.nets = {name: net.eval() for name, net in nets.items()}
        self.scaler = scaler
        self.margin = margin
        self.meta = meta
        self.metric_names: list[str] = list(scaler.metric_names)
        self.window_steps: int = scaler.window
        self.capacity_keys: tuple[str, ...] = CAPACITY_KEYS
        self.coverage: float = float(meta.get("coverage_target", float("nan")))
        self._counters = counter_columns(self.metric_names)
        self.what_if_extra_margin = 0.0  # the moved instance's interval: this much wider

    @classmethod
    def load(cls, artefact_dir: str | Path) -> InterferencePredictor:
        d = Path(artefact_dir)
        missing = [
            n for n in ("scaler.json", CALIBRATION_FILE, "config.json") if not (d / n).exists()
        ]
        if missing:
            raise FileNotFoundError(f"{d} is not an interference artefact (missing {missing})")
        config = json.loads((d / "config.json").read_text())
        calibration = read_calibration(d)
        scaler = FeatureScaler.from_dict(json.loads((d / "scaler.json").read_text()))
        # Version 1 artefacts hold the transformer alone.
        nets: dict[str, torch.nn.Module] = {}
        hidden = config.get("lstm", {}).get("hidden", 0)
        for name in config.get("members", ["transformer"]):
            net = build_member(name, config["dims"], config["architecture"], hidden)
            path = d / MEMBER_FILES[name]
            if not path.exists():
                raise FileNotFoundError(f"{d} is not a complete artefact (missing {path.name})")
            net.load_state_dict(torch.load(path, weights_only=True))
            nets[name] = net
        meta = {**config, "coverage_target": calibration["coverage_target"]}
        model = cls(nets, scaler, float(calibration["margin"]), meta)
        # Artefacts calibrated before what-if margins existed widen a move as in place.
        model.what_if_extra_margin = float(calibration.get("what_if_extra_margin", 0.0))
        return model

    # ------------------------------------------------------------------ predictions
    def predict(self, victims: Sequence[VictimInput]) -> list[Prediction]:
        if not victims:
            return []
        out = self.predict_windows(self._windows(victims))
        return [
            Prediction(v.instance_id, float(o[0]), float(o[1]), float(o[2]))
            for v, o in zip(victims, out, strict=True)
        ]

    def predict_windows(self, w: Windows) -> np.ndarray:
        """Calibrated [N, 3] (P, low, high) for raw windows (evaluation and batch scoring)."""
        if not len(w):
            return np.zeros((0, 3))
        return self.served(w, self.member_predictions(w))

    def score_windows(self, w: Windows, metric_names: Sequence[str]) -> dict[str, float]:
        """MAE (pp), interval coverage and width (pp) of the served P on labelled windows
        whose columns are ``metric_names``, so two versions can be compared on the same
        held-out data. ValueError when this version reads other metrics or window lengths."""
        if list(metric_names) != self.metric_names or w.victim.shape[1] != self.window_steps:
            raise ValueError(
                f"the windows have {w.victim.shape[1]} steps of {len(metric_names)} metrics; "
                f"this version reads {self.window_steps} steps of {len(self.metric_names)}"
            )
        out = self.predict_windows(w)
        return {"mae_pp": float(100 * np.abs(out[:, 0] - w.p).mean()), **interval_metrics(out, w.p)}

    def member_predictions(self, w: Windows) -> dict[str, np.ndarray]:
        """Each ensemble member's raw [N, 3] (P, low, high), before averaging and calibration."""
        enc = self.scaler.encode(w)
        return {name: predict_array(net, enc) for name, net in self.nets.items()}

    def served(self, w: Windows, members: Mapping[str, np.ndarray]) -> np.ndarray:
        """The served [N, 3] from ``member_predictions(w)`` (for callers that need both
        without forwarding the windows twice): the members' mean widened by the margin, and
        exactly 1 for a victim without neighbours (``calibration.serve_lone``)."""
        out = apply_margin(ensemble_mean(list(members.values())), self.margin)
        return serve_lone(out, without_neighbours(w), self.margin)

    def unfamiliar_many(self, victims: Sequence[VictimInput]) -> list[list[str]]:
        """Why each victim's P is extrapolation, in words ([] when its input looks like the
        training windows): node capacity outside what the model learnt from (beyond
        UNFAMILIAR_Z standard deviations of the training nodes' log capacity), and metrics
        present in at least 95 % of the training windows that the victim does not send in
        this window (request metrics, which only services send, are not among them). On the
        lab host (2 cores, /proc metrics only) a simulator-trained model predicted the
        simulated fleets' typical slowdown for everyone (docs/interference.md), so such
        predictions are flagged rather than trusted."""
        log_mean = self.scaler.context_mean[: len(CAPACITY_KEYS)]
        log_std = self.scaler.context_std[: len(CAPACITY_KEYS)]
        always = self.scaler.token_mean[:, TOKEN_STATS.index("v_missing")] < 0.05
        lo, hi = np.exp(log_mean + np.array([[-2.0], [2.0]]) * log_std)  # the range to quote
        out = []
        for v in victims:
            reasons = []
            cap = self._capacity(v.capacity)
            z = (np.log(cap) - log_mean) / log_std
            far = [
                f"{_figure(key, cap[k])} (it learnt from about "
                f"{_stated(key, lo[k])}–{_stated(key, hi[k])})"
                for k, key in enumerate(CAPACITY_KEYS)
                if abs(z[k]) > UNFAMILIAR_Z
            ]
            if far:
                reasons.append(f"node capacity unlike the training nodes: {', '.join(far)}")
            window = self._prepared(v.matrix, f"instance {v.instance_id!r}")
            seen = (~np.isnan(window)).any(axis=0)
            absent = [
                n for n, s, a in zip(self.metric_names, seen, always, strict=True) if a and not s
            ]
            if absent:
                reasons.append(
                    f"sends no {', '.join(absent)} ({len(absent)} of the {int(always.sum())} "
                    "metrics every training instance sent)"
                )
            out.append(reasons)
        return out

    def attribute(self, victim: VictimInput) -> list[tuple[str, float]]:
        return self.attribute_many([victim])[0]

    def attribute_many(self, victims: Sequence[VictimInput]) -> list[list[tuple[str, float]]]:
        """Leave-one-out gains for every neighbour of every victim, in one batched forward."""
        rows: list[Windows] = []
        spans = []
        for v in victims:
            full = self._windows([v])
            rows.append(full)
            k = len(v.neighbours)
            if k:
                rows.append(self._loo_windows(v))
            spans.append(k)
        if not rows:
            return []
        p = self.predict_windows(Windows.concat(rows))[:, 0]
        out, pos = [], 0
        for v, k in zip(victims, spans, strict=True):
            base, without = p[pos], p[pos + 1 : pos + 1 + k]
            pos += 1 + k
            gains = [
                (n.instance_id, float(g - base)) for n, g in zip(v.neighbours, without, strict=True)
            ]
            out.append(sorted(gains, key=lambda x: -x[1]))
        return out

    # ------------------------------------------------------------------ what-if
    def what_if(
        self,
        moved: np.ndarray | VictimInput | None,
        target_neighbours: Sequence[NeighbourInput | None] | None,
        target_capacity: Mapping[str, float] | None,
        moved_id: str = "moved",
    ) -> WhatIf:
        if moved is None:
            raise WhatIfError("unknown instance: there is nothing to move")
        if isinstance(moved, VictimInput):
            moved_id, matrix = moved.instance_id, moved.matrix
        else:
            matrix = moved
        if not self._has_samples(matrix, f"instance {moved_id!r}", WhatIfError):
            raise WhatIfError(f"instance {moved_id!r} has no metric samples in the window")
        if target_neighbours is None:
            raise WhatIfError("unknown target node: no list of the instances placed on it")
        if any(n is None for n in target_neighbours):
            raise WhatIfError("unknown instance among the target node's instances")
        nbrs = list(target_neighbours)
        ids = [n.instance_id for n in nbrs]
        if moved_id in ids:
            raise WhatIfError(f"instance {moved_id!r} is already on the target node")
        if len(set(ids)) != len(ids):
            raise WhatIfError("the target node lists an instance twice")
        if not target_capacity:
            raise WhatIfError("the target node has no capacity recorded; cannot predict there")
        self._capacity(target_capacity, WhatIfError)
        running = [
            self._has_samples(n.matrix, f"neighbour {n.instance_id!r}", WhatIfError) for n in nbrs
        ]
        absent = [n.instance_id for n, r in zip(nbrs, running, strict=True) if not r]
        nbrs = [n for n, r in zip(nbrs, running, strict=True) if r]
        as_nbr = NeighbourInput(moved_id, matrix)
        victims = [VictimInput(moved_id, matrix, nbrs, target_capacity)]
        for i, n in enumerate(nbrs):
            others = nbrs[:i] + nbrs[i + 1 :] + [as_nbr]
            victims.append(VictimInput(n.instance_id, n.matrix, others, target_capacity))
        preds = self.predict(victims)
        m = preds[0]
        wide = apply_margin(np.array([[m.p, m.p_low, m.p_high]]), self.what_if_extra_margin)[0]
        moved = Prediction(m.instance_id, m.p, float(wide[1]), float(wide[2]))
        return WhatIf(moved=moved, existing=preds[1:], absent=absent)

    def what_if_placement(
        self,
        instance_id: str,
        target_node: str,
        metrics: Mapping[str, np.ndarray],
        node_of: Mapping[str, str],
        capacities: Mapping[str, Mapping[str, float] | None],
    ) -> WhatIf:
        """What-if by ids: ``metrics`` per instance, ``node_of`` its current node,
        ``capacities`` per node. Unknown ids and nodes without capacity raise WhatIfError."""
        if instance_id not in metrics:
            raise WhatIfError(f"unknown instance {instance_id!r}")
        if target_node not in capacities:
            raise WhatIfError(f"unknown node {target_node!r}")
        if node_of.get(instance_id) == target_node:
            raise WhatIfError(f"instance {instance_id!r} already runs on node {target_node!r}")
        here = [i for i, n in node_of.items() if n == target_node and i != instance_id]
        absent = [i for i in here if i not in metrics]
        if absent:
            raise WhatIfError(f"no metrics for {absent} on node {target_node!r}")
        nbrs = [NeighbourInput(i, metrics[i]) for i in here]
        cap = capacities[target_node]
        if not cap:
            raise WhatIfError(f"node {target_node!r} has no capacity recorded")
        return self.what_if(metrics[instance_id], nbrs, cap, moved_id=instance_id)

    # ------------------------------------------------------------------ inputs → windows
    def _check_matrix(
        self,
        matrix: np.ndarray,
        what: str,
        error: type[Exception] = ValueError,
        allow_empty: bool = False,
    ) -> np.ndarray:
        m = np.asarray(matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[1] != len(self.metric_names):
            raise error(
                f"{what}: expected a [T, {len(self.metric_names)}] matrix in the order of "
                f"metric_names, got shape {m.shape}"
            )
        if not allow_empty and (not len(m) or np.all(np.isnan(m))):
            raise error(f"{what} has no metric samples")
        return m

    def _has_samples(self, matrix: np.ndarray, what: str, error: type[Exception]) -> bool:
        """Whether the window the model reads (the last ``window_steps``) has any sample."""
        m = fit_window(self._check_matrix(matrix, what, error, allow_empty=True), self.window_steps)
        return bool(np.any(~np.isnan(m)))

    def _capacity(
        self, capacity: Mapping[str, float] | None, error: type[Exception] = ValueError
    ) -> np.ndarray:
        missing = [k for k in CAPACITY_KEYS if not capacity or capacity.get(k) is None]
        if missing:
            raise error(f"node capacity is missing {missing}")
        values = np.array([float(capacity[k]) for k in CAPACITY_KEYS])  # type: ignore[index]
        if not np.all(np.isfinite(values) & (values > 0)):
            raise error(f"node capacity must be positive numbers, got {dict(capacity)}")  # type: ignore[arg-type]
        return values

    def _prepared(self, matrix: np.ndarray, what: str, allow_empty: bool = False) -> np.ndarray:
        m = fit_window(self._check_matrix(matrix, what, allow_empty=allow_empty), self.window_steps)
        return counters_to_increments(m, self._counters)

    def _windows(self, victims: Sequence[VictimInput]) -> Windows:
        W, M, n = self.window_steps, len(self.metric_names), len(victims)
        w = Windows(
            victim=np.empty((n, W, M), np.float32),
            valid=np.empty((n, W), bool),
            nbr_mean=np.empty((n, W, M), np.float32),
            nbr_max=np.empty((n, W, M), np.float32),
            nbr_sum=np.empty((n, W, M), np.float32),
            nbr_count=np.empty((n, W), np.float32),
            capacity=np.empty((n, len(CAPACITY_KEYS)), np.float32),
            p=np.full(n, np.nan, np.float32),
            group=np.full(n, -1, np.int32),
            start=np.zeros(n, np.int64),
        )
        for r, v in enumerate(victims):
            x = self._prepared(v.matrix, f"instance {v.instance_id!r}")
            w.victim[r], w.valid[r] = x, ~np.all(np.isnan(x), axis=1)
            w.capacity[r] = self._capacity(v.capacity)
            stack, present = self._stack(v.neighbours)
            mean, mx, total, count = aggregate(stack, present)
            w.nbr_mean[r], w.nbr_max[r], w.nbr_sum[r], w.nbr_count[r] = mean, mx, total, count
        return w

    def _stack(self, neighbours: Sequence[NeighbourInput]) -> tuple[np.ndarray, np.ndarray]:
        W, M = self.window_steps, len(self.metric_names)
        if not neighbours:
            return np.full((W, 0, M), np.nan), np.zeros((W, 0), bool)
        # A neighbour without samples in the window is not running there now: it counts as
        # absent, exactly as in training windows (present = placed and reporting).
        stack = np.stack(
            [
                self._prepared(n.matrix, f"neighbour {n.instance_id!r}", allow_empty=True)
                for n in neighbours
            ],
            axis=1,
        )
        return stack, ~np.all(np.isnan(stack), axis=2)

    def _loo_windows(self, v: VictimInput) -> Windows:
        """The victim's window once per neighbour, with that neighbour left out."""
        base = self._windows([VictimInput(v.instance_id, v.matrix, [], v.capacity)])
        k = len(v.neighbours)
        stack, present = self._stack(v.neighbours)
        mean, mx, total, count = leave_one_out(stack, present)
        w = base.take(np.zeros(k, dtype=np.int64))
        w.nbr_mean, w.nbr_max = mean.astype(np.float32), mx.astype(np.float32)
        w.nbr_sum, w.nbr_count = total.astype(np.float32), count.astype(np.float32)
        return w
