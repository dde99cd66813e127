"""Probe: gradient x input against gradient x (input - the window's history median) for the
supervised score's metric attribution, scored on the *validation* fleet of the sim protocol
(attribution_eval figures). Prints JSON."""

import json
import sys

import torch

from models.anomaly import attribution
from models.anomaly.attribution_eval import evaluate_attribution
from models.anomaly.evalsets import _sim_scored
from models.anomaly.train import DetectorMethod, TrainConfig, calibrate_and_select, train

torch.set_num_threads(2)
cfg = TrainConfig(out_dir=sys.argv[1] if len(sys.argv) > 1 else None, test_seed=7)
trained = train(cfg)
det, data = trained.detector, trained.data
val = data["val"]
scored = _sim_scored(DetectorMethod(det), val, cfg.model, data["specs"])
_, levels = calibrate_and_select(scored, val.segments, cfg.max_deceptive_fpr)
out = {"levels": levels, "fit_seconds": trained.metrics["seconds"]["fit"]}
for ref in ("zero", "history"):
    attribution.SUPERVISED_REFERENCE = ref
    out[ref] = evaluate_attribution(
        det,
        {"vm": val.vm, "host": val.host},
        data["specs"],
        scored,
        val.segments,
        levels,
        val.case_templates,
    )
print(json.dumps(out, indent=1))
