"""Probe: the served attribution (attribution_eval figures) on the sim *validation* fleet."""

import json
import sys

import torch

from models.anomaly.attribution_eval import evaluate_attribution
from models.anomaly.evalsets import _sim_scored
from models.anomaly.train import DetectorMethod, TrainConfig, calibrate_and_select, train

torch.set_num_threads(2)
cfg = TrainConfig(out_dir=sys.argv[1] if len(sys.argv) > 1 else None, test_seed=7)
result = train(cfg)
det, data = result.detector, result.data
val = data["val"]
scored = _sim_scored(DetectorMethod(det), val, cfg.model, data["specs"])
_, levels = calibrate_and_select(scored, val.segments, cfg.max_deceptive_fpr)
figures = evaluate_attribution(
    det, {"vm": val.vm, "host": val.host}, data["specs"], scored, val.segments, levels,
    val.case_templates,
)  # fmt: skip
print(json.dumps(figures, indent=1))
