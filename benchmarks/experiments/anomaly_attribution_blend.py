"""Probe: blend Telltale's metric attribution with the deviation ranking, scored on the
*validation* fleet of the sim protocol (top metric / top three changed metrics). Prints JSON."""

import json
import sys

import torch

from models.anomaly.attribution_eval import (
    changed_metrics,
    deviation_metrics,
    explained_cases,
    hits,
)
from models.anomaly.evalsets import _sim_scored
from models.anomaly.postprocess import merge_attributions
from models.anomaly.train import DetectorMethod, TrainConfig, calibrate_and_select, train

torch.set_num_threads(2)
cfg = TrainConfig(out_dir=sys.argv[1] if len(sys.argv) > 1 else None, test_seed=7)


def blend(a, b, how):
    da, db = dict(a), dict(b)
    names = set(da) | set(db)
    if how == "mean":
        v = {n: (da.get(n, 0) + db.get(n, 0)) / 2 for n in names}
    else:  # product: both must point at it (a small floor keeps a one-sided name ranked)
        v = {n: (da.get(n, 0) + 0.01) * (db.get(n, 0) + 0.01) for n in names}
    total = sum(v.values())
    return sorted(((n, x / total) for n, x in v.items()), key=lambda kv: -kv[1])


def main(det, data):
    val, specs = data["val"], data["specs"]
    scored = _sim_scored(DetectorMethod(det), val, cfg.model, specs)
    _, levels = calibrate_and_select(scored, val.segments, cfg.max_deceptive_fpr)
    groups = {"vm": val.vm, "host": val.host}
    W, P = det.window_steps, det.shape.patch_steps
    tally = {k: [0, 0] for k in ("telltale", "deviation", "mean", "product")}
    cases = explained_cases(scored, val.segments, levels)
    for seg, s, idx, weights in cases:
        g, spec = groups[s.group], specs[s.group]
        keys = s.keys[idx]
        w = [float(x) for x in weights]
        tt = merge_attributions([m for m, _ in det.explain_group(g, keys, spec)], w)
        name = g.target_names[int(keys[0, 0])]
        dev = merge_attributions(
            [
                deviation_metrics(v, spec, name, P)
                for v in g.window_values(keys[:, 0], keys[:, 1], W)
            ],
            w,
        )
        truth = changed_metrics(seg.scenario, s.group)
        for k, r in (
            ("telltale", tt),
            ("deviation", dev),
            ("mean", blend(tt, dev, "mean")),
            ("product", blend(tt, dev, "product")),
        ):
            tally[k][0] += hits(r, truth, 1)
            tally[k][1] += hits(r, truth, 3)
    n = len(cases)
    print(
        json.dumps(
            {"cases": n, **{k: [round(a / n, 3), round(b / n, 3)] for k, (a, b) in tally.items()}}
        )
    )


if __name__ == "__main__":
    result = train(cfg)
    main(result.detector, result.data)
