"""Probe: how a training size for the demo's anomaly model does on a fresh simulated fleet
(the demo's own 'train' scenario variants), scored with the model's own calibrators and
thresholds, as the app scores. One JSON line.

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/experiments/anomaly_demo_profile.py \
        NAME '{"nodes": 20, "instances": 160, "hours": 24.0, "val_nodes": 12, "val_hours": 12}' S
"""

import json
import sys
import time
from dataclasses import asdict

from models.anomaly import evalsets
from models.anomaly import train as T
from models.anomaly.datasets import sim as simdata
from models.anomaly.pipeline import evaluate

name, opts, seed = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
base = T.TrainConfig()
skip = ("model", "extra_windows", "out_dir", "test_seed")
cfg = T.TrainConfig(
    **{**{k: v for k, v in asdict(base).items() if k not in skip}, **opts},
    model=T.ModelConfig(**asdict(base.model)),
    out_dir=None,
    test_seed=seed,
)
t0 = time.perf_counter()
trained = T.train(cfg)
secs = time.perf_counter() - t0
det, data, mc = trained.detector, trained.data, cfg.model
conf = simdata.fleet_config(seed, 12, 12.0, 2, simdata.TEST_RATES, "train")
test = simdata.simulate(conf, det.template_indices, None, mc.patch_steps * mc.step_seconds)
scored = evalsets._sim_scored(T.DetectorMethod(det), test, mc, data["specs"])
levels = {s.group: det.thresholds.for_group(s.group) for s in scored}
for s in scored:
    s.calibrated = det.calibrators[s.group].transform(s.raw)
res = evaluate(scored, test.segments, levels)
keys = ("event_recall", "event_precision", "event_f1", "deceptive_fpr", "false_alarms_per_day")
val = trained.metrics["validation"]
print(
    json.dumps(
        {
            "profile": name,
            "seed": seed,
            "train_seconds": round(secs, 1),
            "levels": levels,
            "val": {k: round(val[k], 3) for k in ("event_recall", "event_f1", "deceptive_fpr")},
            "test": {k: round(float(res[k]), 3) for k in keys},
        }
    )
)
