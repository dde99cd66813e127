"""Experiment: does the served (supervised) model's forecast error, calibrated on a fleet's
own windows, add alarms that are faults rather than deceptive normals?

The supervised head only knows the simulator's scenarios, so on a real host a generic
saturation scores nothing (docs/anomaly.md, "A real host"). This probe measures, on
simulated test fleets, what an extra "novelty" alarm would cost: the served alarms OR the
forecast error's calibrated score at a level, unless the scenario head names an expected
(deceptive-normal) scenario. The novelty calibration is fitted on the validation fleet's
windows, all of them as a live fleet's would be (unlabelled), or only the normal ones.

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/experiments/anomaly_novelty.py \
        --seeds 7,21,22 [--artefact DIR]

Prints one JSON line per (test fleet, calibration, level, veto).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.anomaly.datasets import sim as simdata
from models.anomaly.detector import AnomalyDetector
from models.anomaly.features import windows_of
from models.anomaly.pipeline import Scored, evaluate, fit_calibrator, score
from models.anomaly.train import DetectorMethod, TrainConfig, train


class NoveltyMethod:
    name = "novelty"

    def __init__(self, detector: AnomalyDetector):
        self.detector = detector

    def raw(self, group, keys, spec):
        res = self.detector.score_group(group, keys, spec)
        return {"raw": res["novelty"], "scenario": res.get("scenario")}


def scored_fleet(det, sim, mc, specs, method) -> list[Scored]:
    out = []
    for g in (sim.vm, sim.host):
        keys = windows_of(g, mc.window_steps, mc.patch_steps, mc.window_steps)
        out.append(score(method, g, keys, specs[g.name], mc.patch_steps))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="7,21,22")
    ap.add_argument("--artefact", default="var/eval/novelty-artefact")
    ap.add_argument("--levels", default="67,75,83,92,100")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg = TrainConfig(out_dir=args.artefact, test_seed=seeds[0])
    t0 = time.perf_counter()
    trained = train(cfg)
    det, data = trained.detector, trained.data
    mc, specs = cfg.model, data["specs"]
    print(json.dumps({"trained_s": round(time.perf_counter() - t0, 1)}), flush=True)
    expected = np.array([c in simdata.DECEPTIVE_NAMES for c in det.classes])
    val = data["val"]
    val_nov = scored_fleet(det, val, mc, specs, NoveltyMethod(det))
    cals = {
        "all_windows": {s.group: fit_calibrator([s], normal_only=False) for s in val_nov},
        "normal_windows": {s.group: fit_calibrator([s], normal_only=True) for s in val_nov},
    }
    levels = det.thresholds.groups
    patch_s = mc.patch_steps * mc.step_seconds
    for seed in seeds:
        conf = simdata.fleet_config(seed, 30, 24.0, 2, simdata.TEST_RATES, "heldout")
        test = simdata.simulate(conf, det.template_indices, None, patch_s)
        sup = scored_fleet(det, test, mc, specs, DetectorMethod(det))
        nov = scored_fleet(det, test, mc, specs, NoveltyMethod(det))
        for s in sup:
            s.calibrated = det.calibrators[s.group].transform(s.raw)
        base = evaluate(sup, test.segments, levels)
        print(json.dumps({"seed": seed, "rule": "served", **_short(base)}), flush=True)
        for cal_name, cal in cals.items():
            for level in [float(x) for x in args.levels.split(",")]:
                for veto in (False, True):
                    combined = []
                    for s, n in zip(sup, nov, strict=True):
                        nc = cal[n.group].transform(n.raw)
                        extra = nc >= level
                        if veto and s.scenario_probs is not None:
                            extra &= s.scenario_probs[:, expected].sum(1) < 0.5
                        c = Scored(**{**s.__dict__})
                        c.calibrated = np.where(
                            extra, np.maximum(s.calibrated, levels[s.group]), s.calibrated
                        )
                        combined.append(c)
                    res = evaluate(combined, test.segments, levels)
                    print(
                        json.dumps(
                            {
                                "seed": seed,
                                "calibration": cal_name,
                                "novelty_level": level,
                                "veto_expected": veto,
                                **_short(res),
                            }
                        ),
                        flush=True,
                    )
    return 0


def _short(res: dict) -> dict:
    keys = ("event_f1", "event_recall", "event_precision", "deceptive_fpr", "n_events")
    out = {k: (round(res[k], 4) if isinstance(res[k], float) else res[k]) for k in keys}
    out["false_alarms_per_day"] = round(res["false_alarms_per_day"], 4)
    return out


if __name__ == "__main__":
    Path("var/eval").mkdir(parents=True, exist_ok=True)
    sys.exit(main())
