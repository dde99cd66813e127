"""Experiment: the novelty alarm as the app serves it, on simulated test fleets.

The app fits ``FleetNovelty`` on the fleet's own recent windows, unlabelled, each target
against its own usual forecast error. Here: the first ``--calibrate-hours`` of each test
fleet calibrate it (every window, labels unread), and the rest of the day is scored with
the served rule alone and with the novelty alarm added at each level.

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/experiments/anomaly_novelty_own.py \
        --artefact var/eval/novelty-artefact --seeds 7,21,22

The artefact is the default sim training (``TrainConfig``), trained there first when the
directory does not hold one (about three minutes). One JSON line per (fleet, usual, rule).

``--usual target,metric`` compares the two ways of judging a target against its usual:
one usual error per target (``FleetNovelty.fit`` on each window's error) and one per
target and metric (on each metric's error, as the app fits since 2026-12-01).
``--odd-vms N`` sends 0 bytes/s on the network metrics of N VMs of each test fleet for the
whole day, as a VM whose NICs are all virtual does (the lab VM of docs/anomaly.md,
"Novelty"); rules named ``novelty_alone`` then count novelty's alarms without the
supervised score's, over all targets and over the odd VMs (``odd_``) only.

An earlier variant calibrated novelty on the validation fleet's windows instead, pooled
without the per-target division (commit ``3d201bc``, ``anomaly_novelty.py``, removed since).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from models.anomaly.datasets import sim as simdata
from models.anomaly.detector import AnomalyDetector
from models.anomaly.features import windows_of
from models.anomaly.novelty import EXPECTED_CLASSES, FleetNovelty
from models.anomaly.pipeline import Scored, evaluate, score
from models.anomaly.train import DetectorMethod, TrainConfig, train


def _part(s: Scored, keep: np.ndarray) -> Scored:
    return Scored(
        s.group,
        s.keys[keep],
        s.targets,
        s.times[keep],
        s.raw[keep],
        s.label[keep],
        None if s.scenario_true is None else s.scenario_true[keep],
        None if s.scenario_probs is None else s.scenario_probs[keep],
    )


NETWORK = ("vm_network_receive_bytes_per_second", "vm_network_transmit_bytes_per_second")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artefact", default="var/eval/novelty-artefact")
    ap.add_argument("--seeds", default="7,21,22")
    ap.add_argument("--calibrate-hours", type=float, default=6.0)
    ap.add_argument("--levels", default="67,75,83,90,95,100")
    ap.add_argument("--usual", default="target,metric")
    ap.add_argument("--odd-vms", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not (Path(args.artefact) / "model.pt").exists():
        train(TrainConfig(out_dir=args.artefact, test_seed=int(args.seeds.split(",")[0])))
    det = AnomalyDetector.load(args.artefact)
    mc = det.shape
    patch_s = mc.patch_steps * mc.step_seconds
    levels = det.thresholds.groups
    expected = np.array([c in EXPECTED_CLASSES for c in det.classes])
    for seed in [int(x) for x in args.seeds.split(",")]:
        conf = simdata.fleet_config(seed, 30, 24.0, 2, simdata.TEST_RATES, "heldout")
        test = simdata.simulate(conf, det.template_indices, None, patch_s)
        odd = _make_odd(test.vm, args.odd_vms)
        cut = conf.start + args.calibrate_hours * 3600
        parts, errors = [], []
        fleets: dict[str, dict[str, FleetNovelty]] = {u: {} for u in args.usual.split(",")}
        for g in (test.vm, test.host):
            keys = windows_of(g, mc.window_steps, mc.patch_steps, mc.window_steps)
            s = score(DetectorMethod(det), g, keys, det.specs[g.name], mc.patch_steps)
            err = det.score_group(g, keys, det.specs[g.name])["novelty_errors"]
            calib = s.times <= cut
            by_target = {}
            for k in np.unique(s.keys[calib, 0]):
                sel = calib & (s.keys[:, 0] == k)
                by_target[s.targets[int(k)]] = err[sel][np.argsort(s.times[sel])]
            one_each = {t: e.max(axis=1) for t, e in by_target.items()}
            for usual, fitted in fleets.items():
                fitted[g.name] = FleetNovelty.fit(by_target if usual == "metric" else one_each)
            p = _part(s, ~calib)
            p.calibrated = det.calibrators[g.name].transform(p.raw)
            parts.append(p)
            errors.append(err[~calib])
        segments = [seg for seg in test.segments if seg.end > cut]
        base = evaluate(parts, segments, levels)
        print(json.dumps({"seed": seed, "odd_vms": len(odd), "rule": "served", **_short(base)}))
        for usual, fitted in fleets.items():
            novelty = [
                np.array(
                    [
                        v or 0.0
                        for v in fitted[p.group].score_many(
                            [p.targets[int(k)] for k in p.keys[:, 0]], e.max(axis=1), e
                        )
                    ]
                )
                for p, e in zip(parts, errors, strict=True)
            ]
            if odd:
                for name, inside in (("other", False), ("odd", True)):
                    sep = _separation(parts[0], novelty[0], odd, inside)  # parts[0]: VMs
                    print(json.dumps({"seed": seed, "usual": usual, "vms": name, **sep}))
            for level in [float(x) for x in args.levels.split(",")]:
                combined, alone = [], []
                for p, nc in zip(parts, novelty, strict=True):
                    extra = (nc >= level) & (p.scenario_probs[:, expected].sum(1) < 0.5)
                    c = Scored(**{**p.__dict__})
                    c.calibrated = np.where(
                        extra, np.maximum(p.calibrated, levels[p.group]), p.calibrated
                    )
                    combined.append(c)
                    a = Scored(**{**p.__dict__})
                    a.calibrated = np.where(extra, levels[p.group], 0.0)
                    alone.append(a)
                row = {"seed": seed, "odd_vms": len(odd), "usual": usual, "novelty_level": level}
                res = evaluate(combined, segments, levels)
                print(json.dumps({**row, "rule": "served+novelty", **_short(res)}), flush=True)
                if odd:
                    res = evaluate(alone, segments, levels)
                    print(json.dumps({**row, "rule": "novelty_alone", **_short(res)}))
                    mine = [seg for seg in segments if seg.targets & odd]
                    odd_parts = [x for x in (_only(a, odd) for a in alone) if len(x.raw)]
                    res = evaluate(odd_parts, mine, levels)
                    print(json.dumps({**row, "rule": "odd_novelty_alone", **_short(res)}))
    return 0


def _make_odd(vms, n: int) -> set[str]:
    """The first ``n`` VMs send 0 bytes/s on their network metrics all day."""
    cols = [vms.metric_names.index(m) for m in NETWORK]
    for k in range(min(n, vms.n_targets)):
        for c in cols:
            vms.values[:, k, c] = np.where(np.isnan(vms.values[:, k, c]), np.nan, 0.0)
    return set(vms.target_names[: min(n, vms.n_targets)])


def _separation(s: Scored, novelty: np.ndarray, odd: set[str], inside: bool) -> dict:
    """How well novelty alone tells the labelled anomalous windows of the VMs in ``odd``
    (``inside``) or the others from their normal ones: ROC AUC, and the median novelty of
    each kind."""
    from sklearn.metrics import roc_auc_score

    keep = _of(s, odd) == inside
    label, nov = s.label[keep], novelty[keep]
    known = label >= 0
    label, nov = label[known], nov[known]
    both = 0 < label.sum() < len(label)
    return {
        "anomalous_windows": int(label.sum()),
        "normal_windows": int((label == 0).sum()),
        "auc": round(float(roc_auc_score(label, nov)), 4) if both else None,
        "median_anomalous": round(float(np.median(nov[label == 1])), 2) if both else None,
        "median_normal": round(float(np.median(nov[label == 0])), 2) if both else None,
    }


def _of(s: Scored, targets: set[str]) -> np.ndarray:
    """Which windows of ``s`` are of ``targets``."""
    return np.array([s.targets[int(k)] in targets for k in s.keys[:, 0]], dtype=bool)


def _only(s: Scored, targets: set[str]) -> Scored:
    """``s`` restricted to the windows of ``targets`` (none of a group without them)."""
    keep = _of(s, targets)
    out = _part(s, keep)
    out.calibrated = s.calibrated[keep]
    return out


def _short(res: dict) -> dict:
    keys = ("event_f1", "event_recall", "event_precision", "deceptive_fpr", "n_events")
    out = {k: (round(res[k], 4) if isinstance(res[k], float) else res[k]) for k in keys}
    out["false_alarms"] = res["false_alarms"]
    out["false_alarms_per_day"] = round(res["false_alarms_per_day"], 4)
    return out


if __name__ == "__main__":
    sys.exit(main())
