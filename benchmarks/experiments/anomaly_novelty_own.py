"""Experiment: the novelty alarm as the app serves it, on simulated test fleets.

The app fits ``FleetNovelty`` on the fleet's own recent windows, unlabelled, each target
against its own usual forecast error. Here: the first ``--calibrate-hours`` of each test
fleet calibrate it (every window, labels unread), and the rest of the day is scored with
the served rule alone and with the novelty alarm added at each level.

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/experiments/anomaly_novelty_own.py \
        --artefact var/eval/novelty-artefact --seeds 7,21,22

The artefact is the default sim training (``TrainConfig``), trained there first when the
directory does not hold one (about three minutes). One JSON line per (fleet, rule).

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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artefact", default="var/eval/novelty-artefact")
    ap.add_argument("--seeds", default="7,21,22")
    ap.add_argument("--calibrate-hours", type=float, default=6.0)
    ap.add_argument("--levels", default="67,75,83,90,95,100")
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
        cut = conf.start + args.calibrate_hours * 3600
        parts, novelty, fleets = [], [], {}
        for g in (test.vm, test.host):
            keys = windows_of(g, mc.window_steps, mc.patch_steps, mc.window_steps)
            s = score(DetectorMethod(det), g, keys, det.specs[g.name], mc.patch_steps)
            nov = det.score_group(g, keys, det.specs[g.name])["novelty"]
            calib = s.times <= cut
            by_target = {}
            for k in np.unique(s.keys[calib, 0]):
                sel = calib & (s.keys[:, 0] == k)
                order = np.argsort(s.times[sel])
                by_target[s.targets[int(k)]] = nov[sel][order]
            fleets[g.name] = FleetNovelty.fit(by_target)
            later = ~calib
            p = _part(s, later)
            p.calibrated = det.calibrators[g.name].transform(p.raw)
            parts.append(p)
            novelty.append(nov[later])
        segments = [seg for seg in test.segments if seg.end > cut]
        base = evaluate(parts, segments, levels)
        print(json.dumps({"seed": seed, "rule": "served", **_short(base)}), flush=True)
        for level in [float(x) for x in args.levels.split(",")]:
            combined = []
            for p, nov in zip(parts, novelty, strict=True):
                fleet = fleets[p.group]
                nc = np.array(
                    [
                        fleet.score(p.targets[int(k)], r) or 0.0
                        for k, r in zip(p.keys[:, 0], nov, strict=True)
                    ]
                )
                extra = (nc >= level) & (p.scenario_probs[:, expected].sum(1) < 0.5)
                c = Scored(**{**p.__dict__})
                c.calibrated = np.where(
                    extra, np.maximum(p.calibrated, levels[p.group]), p.calibrated
                )
                combined.append(c)
            res = evaluate(combined, segments, levels)
            print(json.dumps({"seed": seed, "novelty_level": level, **_short(res)}), flush=True)
    return 0


def _short(res: dict) -> dict:
    keys = ("event_f1", "event_recall", "event_precision", "deceptive_fpr", "n_events")
    out = {k: (round(res[k], 4) if isinstance(res[k], float) else res[k]) for k in keys}
    out["false_alarms_per_day"] = round(res["false_alarms_per_day"], 4)
    return out


if __name__ == "__main__":
    sys.exit(main())
