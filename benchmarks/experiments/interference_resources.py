"""Dev-seed probe: does a per-resource head whose sensitivity net is *shared across resources*
carry over to unseen workloads better than an unstructured MLP on the same pooled inputs?

    python benchmarks/experiments/interference_resources.py --seed 7 --partitions 3

The idea: a workload is sensitive to contention on the resources it uses heavily. With the
sensitivity of resource r computed by one net g from the victim's own use of r (its z-scored
demand statistics and pressure), g learns from 7 workloads x 5 resources = 35 (use,
sensitivity) pairs instead of 7 sensitivity vectors. Contention c_r comes from the
neighbours' demand on r, node capacity and contention symptoms (steal, retransmits, iowait).
P = exp(-sum_r w_r s_r c_r - residual). Same partitions, validation workloads and seeds as
the evaluation. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
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
M = {n: i for i, n in enumerate(NAMES)}
C = {n: i for i, n in enumerate(CONTEXT_NAMES)}
S = {n: i for i, n in enumerate(TOKEN_STATS)}
V_STATS = [S[s] for s in ("v_mean", "v_std", "v_min", "v_max", "v_last", "v_delta")]
N_STATS = [S[s] for s in ("nmean_mean", "nmax_max", "nsum_mean", "nsum_std", "nsum_max")]
# resource: (victim demand metrics, contention symptom metrics, capacity, pressure key)
RESOURCES = {
    "cpu": (["vm_cpu_utilization_ratio"], ["vm_cpu_steal_ratio"], "cores", None),
    "llc": (["vm_llc_misses_per_second", "vm_ipc"], [], "llc_mb", None),
    "membw": (["vm_memory_bandwidth_bytes_per_second"], [], "membw", "membw"),
    "net": (
        ["vm_network_receive_bytes_per_second", "vm_network_transmit_bytes_per_second"],
        ["vm_tcp_retransmits_per_second"],
        "net",
        "net",
    ),
    "disk": (
        ["vm_disk_read_bytes_per_second", "vm_disk_write_bytes_per_second"],
        ["vm_cpu_iowait_ratio"],
        "disk",
        "disk",
    ),
}
WIDTH = 2  # demand metrics per resource, padded


def resource_views(enc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(use [N, 5, U], contention [N, 5, K], everything flattened [N, F])."""
    n = len(enc)
    tok, ctx = enc.tokens, enc.context
    use, cont = [], []
    for demand, symptoms, cap, key in RESOURCES.values():
        u = np.zeros((n, WIDTH * len(V_STATS) + 2), dtype=np.float32)
        for j, m in enumerate(demand):
            u[:, j * len(V_STATS) : (j + 1) * len(V_STATS)] = tok[:, M[m], V_STATS]
        if key:
            u[:, -2] = ctx[:, C[f"own_{key}_mean"]]
            u[:, -1] = ctx[:, C[f"own_{key}_max"]]
        use.append(u)
        k = np.zeros((n, WIDTH * len(N_STATS) + len(V_STATS) + 5), dtype=np.float32)
        for j, m in enumerate(demand):
            k[:, j * len(N_STATS) : (j + 1) * len(N_STATS)] = tok[:, M[m], N_STATS]
        o = WIDTH * len(N_STATS)
        for m in symptoms:
            k[:, o : o + len(V_STATS)] = tok[:, M[m], V_STATS]
        o += len(V_STATS)
        k[:, o] = ctx[:, C[f"log_{cap}"]]
        if key:
            k[:, o + 1] = ctx[:, C[f"nbr_{key}_mean"]]
            k[:, o + 2] = ctx[:, C[f"nbr_{key}_max"]]
        k[:, o + 3] = ctx[:, C["nbr_count_mean"]]
        k[:, o + 4] = ctx[:, C["nbr_count_max"]]
        cont.append(k)
    flat = np.c_[tok.reshape(n, -1), ctx].astype(np.float32)
    return np.stack(use, 1), np.stack(cont, 1), flat


def mlp(i: int, o: int, h: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Dropout(0.1), nn.Linear(h, h),
                         nn.GELU(), nn.Linear(h, o))  # fmt: skip


class PerResource(nn.Module):
    """P = exp(-sum_r w_r * s(use_r) * c_r(neighbours_r) - residual)."""

    def __init__(
        self, du: int, dk: int, df: int, shared: bool, residual: bool, sens_net: str = "mlp"
    ):
        super().__init__()
        r = len(RESOURCES)
        self.shared = shared
        if sens_net == "linear":
            self.sens = nn.Linear(du, 1)
        elif sens_net == "small":
            self.sens = nn.Sequential(nn.Linear(du, 8), nn.GELU(), nn.Linear(8, 1))
        else:
            self.sens = mlp(du, 1) if shared else nn.ModuleList(mlp(du, 1) for _ in range(r))
        self.cont = nn.ModuleList(mlp(dk, 1) for _ in range(r))
        self.weight = nn.Parameter(torch.zeros(r))
        self.residual = mlp(df, 1, 128) if residual else None

    def forward(self, use, cont, flat):
        if self.shared:
            s = nn.functional.softplus(self.sens(use)[..., 0])
        else:
            s = torch.stack(
                [nn.functional.softplus(f(use[:, i])[:, 0]) for i, f in enumerate(self.sens)], 1
            )
        c = torch.stack([torch.sigmoid(f(cont[:, i])[:, 0]) for i, f in enumerate(self.cont)], 1)
        load = (nn.functional.softplus(self.weight) * s * c).sum(-1)
        if self.residual is not None:
            load = load + nn.functional.softplus(self.residual(flat)[:, 0] - 3)
        return torch.exp(-load)


class Plain(nn.Module):
    def __init__(self, du: int, dk: int, df: int):
        super().__init__()
        self.net = mlp(df, 1, 256)

    def forward(self, use, cont, flat):
        return torch.sigmoid(self.net(flat)[:, 0])


def fit(model, train, val, seed: int, epochs: int = 40) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    tr = [torch.from_numpy(a) for a in train]
    va = [torch.from_numpy(a) for a in val]
    best, state, stale = float("inf"), None, 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(tr[-1])).split(256):
            loss = (model(*(a[idx] for a in tr[:-1])) - tr[-1][idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            mae = float((model(*va[:-1]) - va[-1]).abs().mean())
        if mae < best:
            best, state, stale = mae, {k: t.clone() for k, t in model.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= 6:
                break
    model.load_state_dict(state)
    return model


def partition_data(seed: int, k: int, rng_held: np.ndarray, cache: str) -> dict:
    path = os.path.join(cache, f"res-{seed}-{k}.npz")
    if os.path.exists(path):
        z = np.load(path, allow_pickle=True)
        return {name: tuple(z[f"{name}{i}"] for i in range(4)) for name in ("fit", "val", "test")}
    fleet = {"n_nodes": 50, "n_instances": 400, "hours": 24, "window": 20, "stride": 60}
    held = rng_held
    seen = np.setdiff1d(np.arange(len(ARCHETYPES)), held)
    val_groups = np.random.default_rng(seed + k).choice(seen, 2, replace=False)
    pool = simulated_windows([seed + 1_000_003 * (k + 1)], **fleet, exclude=held)
    pool = pool.take(~np.isnan(pool.p))
    is_val = np.isin(pool.group, val_groups)
    fit_w, val_w = pool.take(~is_val), pool.take(is_val)
    test_all = simulated_windows([seed], **fleet)
    test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
    scaler = FeatureScaler.fit(fit_w, NAMES)
    data = {}
    for name, w in (("fit", fit_w), ("val", val_w), ("test", test)):
        data[name] = (*resource_views(scaler.encode(w)), w.p.astype(np.float32))
    os.makedirs(cache, exist_ok=True)
    np.savez(path, **{f"{n}{i}": a for n, d in data.items() for i, a in enumerate(d)})
    return data


VARIANTS = {
    "plain": lambda du, dk, df: Plain(du, dk, df),
    "shared": lambda du, dk, df: PerResource(du, dk, df, shared=True, residual=False),
    "shared_res": lambda du, dk, df: PerResource(du, dk, df, shared=True, residual=True),
    "unshared": lambda du, dk, df: PerResource(du, dk, df, shared=False, residual=False),
    "shared_lin": lambda du, dk, df: PerResource(du, dk, df, True, False, "linear"),
    "shared_small": lambda du, dk, df: PerResource(du, dk, df, True, False, "small"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--model-seeds", default="0")
    parser.add_argument("--cache", default="var/exp/interference-probe-cache")
    parser.add_argument(
        "--artefacts", help="evaluate --keep DIR: also score each variant averaged with Telltale"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    began = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    variants = args.variants.split(",")
    parts = []
    test_all = None
    if args.artefacts:
        from models.interference.predictor import InterferencePredictor

        fleet = {"n_nodes": 50, "n_instances": 400, "hours": 24, "window": 20, "stride": 60}
        test_all = simulated_windows([args.seed], **fleet)
    for k in range(args.partitions):
        held = np.array(sorted(int(a) for a in rng.choice(len(ARCHETYPES), 3, False)))
        data = partition_data(args.seed, k, held, args.cache)
        row = {"unseen": [ARCHETYPES[a].name for a in held]}
        dims = (data["fit"][0].shape[-1], data["fit"][1].shape[-1], data["fit"][2].shape[-1])
        y = data["test"][-1]
        telltale = None
        if test_all is not None:
            test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
            assert np.allclose(test.p, y)
            model = InterferencePredictor.load(f"{args.artefacts}/partition{k + 1}")
            telltale = model.predict_windows(test)[:, 0]
            row["telltale"] = round(float(100 * np.abs(telltale - y).mean()), 2)
        for label in variants:
            maes, mixed = [], []
            for ms in (int(s) for s in args.model_seeds.split(",")):
                model = fit(VARIANTS[label](*dims), data["fit"], data["val"], seed=k + ms)
                with torch.no_grad():
                    pred = model(*(torch.from_numpy(a) for a in data["test"][:-1]))
                maes.append(float(100 * np.abs(pred.numpy() - y).mean()))
                if telltale is not None:
                    mixed.append(float(100 * np.abs((pred.numpy() + telltale) / 2 - y).mean()))
            row[label] = round(float(np.mean(maes)), 2)
            if mixed:
                row[f"{label}+telltale"] = round(float(np.mean(mixed)), 2)
        parts.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out = {"seed": args.seed, "partitions": parts, "seconds": round(time.perf_counter() - began)}
    for label in parts[0]:
        if label != "unseen":
            out[label] = round(float(np.mean([p[label] for p in parts])), 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
