"""Dev-seed probe: does how unfamiliar a window looks predict the error on unseen workloads,
and does an interval scaled by it cover them better?

    PYTHONPATH=. python benchmarks/experiments/interference_familiarity.py --seed S \
        --artefacts DIR     # DIR = evaluate --keep DIR of `--seed S --partitions 3`

Rebuilds each partition's fitting, validation and test windows as the evaluation draws them,
loads the kept artefact, and scores unfamiliarity as the mean distance to the 10 nearest
fitting windows (5,000 drawn) in two spaces: the fusion head's input (the two branches' CLS
outputs and the context) and the pooled input statistics, both z-scored with the fitting
windows' statistics. Prints JSON lines: per workload MAE and mean unfamiliarity, rank
correlations, and the coverage and width of the default interval against one whose margin is
scaled by unfamiliarity (normalised conformal, the same largest-per-workload rule).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from ingest.simulator import ARCHETYPES
from models.interference.calibration import apply_margin, group_margin, interval_metrics
from models.interference.data import simulated_windows, subsample
from models.interference.module import predict_array
from models.interference.predictor import InterferencePredictor
from models.interference.train import split_by_group

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=7)
parser.add_argument("--partitions", type=int, default=3)
parser.add_argument("--artefacts", required=True)
parser.add_argument("--reference", type=int, default=5000)
ARGS = parser.parse_args()
FLEET = {"n_nodes": 50, "n_instances": 400, "hours": 24.0, "window": 20, "stride": 60}


@torch.no_grad()
def embed(net, enc, batch=1024) -> np.ndarray:
    out = []
    for i in range(0, len(enc), batch):
        sl = slice(i, i + batch)
        t = net.temporal(torch.from_numpy(enc.steps[sl]), torch.from_numpy(enc.pad[sl]))
        s = net.system(torch.from_numpy(enc.tokens[sl]), torch.from_numpy(enc.context[sl]))
        out.append(torch.cat([t, s, torch.from_numpy(enc.context[sl])], 1).numpy())
    return np.concatenate(out)


def knn_distance(ref: np.ndarray, x: np.ndarray, k: int = 10) -> np.ndarray:
    mu, sd = ref.mean(0), ref.std(0) + 1e-6
    r = torch.from_numpy((ref - mu) / sd).float()
    out = []
    for i in range(0, len(x), 2048):
        q = torch.from_numpy((x[i : i + 2048] - mu) / sd).float()
        out.append(torch.cdist(q, r).topk(k, largest=False).values.mean(1).numpy())
    return np.concatenate(out) / np.sqrt(ref.shape[1])


def scaled_interval(raw, y, groups, sigma_val, sigma, coverage=0.9):
    """Normalised CQR: the margin is q * sigma(x), q the largest per-workload quantile."""
    score = np.maximum(raw[:, 1] - y, y - raw[:, 2]) / sigma_val
    qs = []
    for g in np.unique(groups):
        s = score[groups == g]
        n = len(s)
        qs.append(np.quantile(s, min(np.ceil((n + 1) * coverage) / n, 1.0), method="higher"))
    return max(qs)


def main() -> None:
    test_all = simulated_windows([ARGS.seed], **FLEET)
    rng = np.random.default_rng(ARGS.seed)
    for k in range(ARGS.partitions):
        held = sorted(int(a) for a in rng.choice(len(ARCHETYPES), 3, False))
        pool = simulated_windows([ARGS.seed + 1_000_003 * (k + 1)], **FLEET, exclude=held)
        pool = pool.take(~np.isnan(pool.p))
        fit, val, _ = split_by_group(pool, 2, ARGS.seed + k)
        test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
        model = InterferencePredictor.load(Path(ARGS.artefacts) / f"partition{k + 1}")
        cfg = json.loads((Path(ARGS.artefacts) / f"partition{k + 1}" / "config.json").read_text())
        val = subsample(val, cfg["train"]["max_val_windows"], cfg["train"]["seed"] + 1)
        ref = subsample(fit, ARGS.reference, 12345)
        enc = {n: model.scaler.encode(w) for n, w in (("ref", ref), ("val", val), ("test", test))}
        raw = {n: predict_array(model.net, enc[n]) for n in ("val", "test")}
        emb = {n: embed(model.net, e) for n, e in enc.items()}
        pooled = {n: e.pooled() for n, e in enc.items()}
        row = {"partition": k + 1, "unseen": [ARCHETYPES[a].name for a in held]}
        for space, feats in (("embedding", emb), ("inputs", pooled)):
            d = {n: knn_distance(feats["ref"], feats[n]) for n in ("val", "test")}
            err = np.abs(raw["test"][:, 0] - test.p)
            per = {
                ARCHETYPES[g].name: [
                    round(float(100 * err[test.group == g].mean()), 2),
                    round(float(d["test"][test.group == g].mean()), 3),
                ]
                for g in held
            }
            per_val = {
                ARCHETYPES[g].name: [
                    round(
                        float(
                            100
                            * np.abs(raw["val"][val.group == g, 0] - val.p[val.group == g]).mean()
                        ),
                        2,
                    ),
                    round(float(d["val"][val.group == g].mean()), 3),
                ]
                for g in np.unique(val.group)
            }
            base_q = group_margin(raw["val"], val.p, val.group, 0.9)
            base = interval_metrics(apply_margin(raw["test"], base_q), test.p)
            res = {"space": space, "test": per, "val": per_val,
                   "rho_window": round(float(spearmanr(d["test"], err)[0]), 3),
                   "default": {k2: round(v, 3) for k2, v in base.items()}}  # fmt: skip
            for floor in (0.5, 1.0):
                sig_v = floor + d["val"] / np.median(d["val"])
                sig_t = floor + d["test"] / np.median(d["val"])
                q = scaled_interval(raw["val"], val.p, val.group, sig_v, sig_t)
                out = raw["test"].copy()
                out[:, 1] = np.clip(np.minimum(raw["test"][:, 1] - q * sig_t, out[:, 0]), 0, 1)
                out[:, 2] = np.clip(np.maximum(raw["test"][:, 2] + q * sig_t, out[:, 0]), 0, 1)
                res[f"scaled_floor{floor}"] = {
                    k2: round(v, 3) for k2, v in interval_metrics(out, test.p).items()
                }
            print(json.dumps({**row, **res}), flush=True)


if __name__ == "__main__":
    main()
