"""Dev-seed probe: does a factorised head P = exp(-sum_r s_r(victim) * c_r(neighbours)) carry
over to unseen workloads better than an unstructured MLP on the same pooled inputs?

    python benchmarks/experiments/interference_structured.py --seed 7 --partitions 3

Victim-side inputs: the victim's per-metric statistics and its own resource pressures.
Neighbour-side inputs: the neighbours' per-metric statistics, their pressures, node capacity
and neighbour counts. Same partitions, validation workloads and seeds as the evaluation.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn

from ingest.simulator import ARCHETYPES, VM_METRIC_NAMES
from models.interference.data import simulated_windows
from models.interference.encoding import CONTEXT_NAMES, FeatureScaler
from models.interference.features import TOKEN_STATS

NAMES = list(VM_METRIC_NAMES)
V_STATS = [i for i, s in enumerate(TOKEN_STATS) if s.startswith("v_")]
N_STATS = [i for i, s in enumerate(TOKEN_STATS) if not s.startswith("v_")]
OWN = [i for i, c in enumerate(CONTEXT_NAMES) if c.startswith("own_")]
REST = [i for i, c in enumerate(CONTEXT_NAMES) if not c.startswith("own_")]


def sides(enc) -> tuple[np.ndarray, np.ndarray]:
    n = len(enc)
    victim = np.c_[enc.tokens[:, :, V_STATS].reshape(n, -1), enc.context[:, OWN]]
    nbrs = np.c_[enc.tokens[:, :, N_STATS].reshape(n, -1), enc.context[:, REST]]
    return victim.astype(np.float32), nbrs.astype(np.float32)


def mlp(i: int, o: int, h: int = 128) -> nn.Module:
    return nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Dropout(0.1), nn.Linear(h, h),
                         nn.GELU(), nn.Linear(h, o))  # fmt: skip


class Structured(nn.Module):
    def __init__(self, dv: int, dn: int, r: int = 8):
        super().__init__()
        self.sens, self.cont = mlp(dv, r), mlp(dn, r)

    def forward(self, v, n):
        s = nn.functional.softplus(self.sens(v))
        c = torch.sigmoid(self.cont(n))
        return torch.exp(-(s * c).sum(-1))


class Plain(nn.Module):
    def __init__(self, dv: int, dn: int):
        super().__init__()
        self.net = mlp(dv + dn, 1, 256)

    def forward(self, v, n):
        return torch.sigmoid(self.net(torch.cat([v, n], -1))[:, 0])


def fit(model, train, val, seed: int, epochs: int = 30) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    tv, tn, ty = (torch.from_numpy(a) for a in train)
    vv, vn, vy = (torch.from_numpy(a) for a in val)
    best, state, stale = float("inf"), None, 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(ty)).split(256):
            loss = (model(tv[idx], tn[idx]) - ty[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            mae = float((model(vv, vn) - vy).abs().mean())
        if mae < best:
            best, state, stale = mae, {k: t.clone() for k, t in model.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= 5:
                break
    model.load_state_dict(state)
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    began = time.perf_counter()
    fleet = {"n_nodes": 50, "n_instances": 400, "hours": 24, "window": 20, "stride": 60}
    test_all = simulated_windows([args.seed], **fleet)
    rng = np.random.default_rng(args.seed)
    parts = []
    for k in range(args.partitions):
        held = sorted(int(a) for a in rng.choice(len(ARCHETYPES), 3, False))
        seen = np.setdiff1d(np.arange(len(ARCHETYPES)), held)
        # As split_by_group draws them in the evaluation (its pool holds every seen workload).
        val_groups = np.random.default_rng(args.seed + k).choice(seen, 2, replace=False)
        pool = simulated_windows([args.seed + 1_000_003 * (k + 1)], **fleet, exclude=held)
        pool = pool.take(~np.isnan(pool.p))
        is_val = np.isin(pool.group, val_groups)
        fit_w, val_w = pool.take(~is_val), pool.take(is_val)
        test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
        scaler = FeatureScaler.fit(fit_w, NAMES)
        data = {}
        for name, w in (("fit", fit_w), ("val", val_w), ("test", test)):
            v, n = sides(scaler.encode(w))
            data[name] = (v, n, w.p.astype(np.float32))
        row = {"unseen": [ARCHETYPES[a].name for a in held]}
        for label, cls in (("structured", Structured), ("plain", Plain)):
            model = fit(cls(data["fit"][0].shape[1], data["fit"][1].shape[1]), data["fit"],
                        data["val"], seed=k)  # fmt: skip
            with torch.no_grad():
                pred = model(torch.from_numpy(data["test"][0]), torch.from_numpy(data["test"][1]))
            row[label] = round(float(100 * np.abs(pred.numpy() - data["test"][2]).mean()), 2)
        parts.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out = {"seed": args.seed, "partitions": parts, "seconds": round(time.perf_counter() - began)}
    for label in ("structured", "plain"):
        out[label] = round(float(np.mean([p[label] for p in parts])), 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
