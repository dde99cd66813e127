"""The per-resource contention head: a structural prior that carries over to new workloads.

A workload is slowed by contention on the resources it leans on: a cache-bound key-value
store by a neighbour that thrashes the LLC, a database by one that saturates the disk. The
head writes the slowdown as a contention load

    load = sum_r w_r * s(use_r) * c_r(neighbours_r)

over the shared resources r (cpu, llc, membw, net, disk), where

- ``s`` is the victim's sensitivity to r, computed by **one net shared by all resources**
  from the victim's own use of r (time-pooled statistics of its demand metrics for r and
  its own pressure on r). Sharing is the point: a model trained on seven workloads sees
  seven sensitivity vectors, too few to interpolate to an eighth, but 7 x 5 (use,
  sensitivity) pairs for one mapping "uses r heavily -> sensitive to r";
- ``c_r`` is the contention on r, in [0, 1], from the neighbours' demand on r (their pooled
  statistics and pressure), the node's capacity, the neighbour count and the victim's
  contention symptoms (steal time for cpu, retransmits for net, iowait for disk), one small
  net per resource;
- ``w_r`` is how much r can hurt at most, learned.

The fusion head multiplies exp(-load) by what the two transformer branches add. On
development seed 7 a pooled-statistics probe (``benchmarks/experiments/
interference_resources.py``) gave 6.12 pp with the shared sensitivity net against 7.71 for an
unstructured MLP and 7.77 for one sensitivity net per resource (docs/interference.md).
Metrics are found by name; a resource whose metrics a dataset lacks gets zero inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.interference.encoding import CONTEXT_NAMES
from models.interference.features import TOKEN_STATS

# resource: (demand metrics, contention symptom metrics, capacity key, pressure key or None)
RESOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str, str | None]] = {
    "cpu": (("vm_cpu_utilization_ratio",), ("vm_cpu_steal_ratio",), "cores", None),
    "llc": (("vm_llc_misses_per_second", "vm_ipc"), (), "llc_mb", None),
    "membw": (("vm_memory_bandwidth_bytes_per_second",), (), "membw", "membw"),
    "net": (
        ("vm_network_receive_bytes_per_second", "vm_network_transmit_bytes_per_second"),
        ("vm_tcp_retransmits_per_second",),
        "net",
        "net",
    ),
    "disk": (
        ("vm_disk_read_bytes_per_second", "vm_disk_write_bytes_per_second"),
        ("vm_cpu_iowait_ratio",),
        "disk",
        "disk",
    ),
}
DEMAND_WIDTH = 2  # demand metrics per resource (padded)
SYMPTOM_WIDTH = 1
VICTIM_STATS = ("v_mean", "v_std", "v_min", "v_max", "v_last", "v_delta")
NEIGHBOUR_STATS = ("nmean_mean", "nmax_max", "nsum_mean", "nsum_std", "nsum_max")


def resource_layout(metric_names: Sequence[str]) -> dict[str, list]:
    """Index lists into the encoded tokens and context (-1 where a dataset lacks a metric)."""
    index = {n: i for i, n in enumerate(metric_names)}
    ctx = {n: i for i, n in enumerate(CONTEXT_NAMES)}

    def metric_row(names: Sequence[str], width: int) -> list[int]:
        row = [index.get(n, -1) for n in names]
        return row + [-1] * (width - len(row))

    demand, symptom, own, node = [], [], [], []
    for demand_metrics, symptoms, cap, key in RESOURCES.values():
        demand.append(metric_row(demand_metrics, DEMAND_WIDTH))
        symptom.append(metric_row(symptoms, SYMPTOM_WIDTH))
        own.append([ctx[f"own_{key}_mean"], ctx[f"own_{key}_max"]] if key else [-1, -1])
        pressure = [ctx[f"nbr_{key}_mean"], ctx[f"nbr_{key}_max"]] if key else [-1, -1]
        node.append([ctx[f"log_{cap}"], *pressure, ctx["nbr_count_mean"], ctx["nbr_count_max"]])
    return {
        "demand": demand,
        "symptom": symptom,
        "own": own,
        "node": node,
        "victim_stats": [TOKEN_STATS.index(s) for s in VICTIM_STATS],
        "neighbour_stats": [TOKEN_STATS.index(s) for s in NEIGHBOUR_STATS],
    }


def _mlp(inputs: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, 1),
    )


class ResourceHead(nn.Module):
    """forward(tokens [B, M, S], context [B, C]) → contention load [B] ≥ 0."""

    def __init__(self, layout: dict[str, list], dropout: float = 0.1, hidden: int = 64):
        super().__init__()
        for name in ("demand", "symptom", "own", "node", "victim_stats", "neighbour_stats"):
            idx = torch.tensor(layout[name], dtype=torch.long)
            self.register_buffer(f"{name}_idx", idx.clamp(min=0), persistent=False)
            self.register_buffer(f"{name}_mask", (idx >= 0).float(), persistent=False)
        n_res = len(layout["demand"])
        n_v, n_n = len(layout["victim_stats"]), len(layout["neighbour_stats"])
        use_features = DEMAND_WIDTH * n_v + 2
        contention_features = DEMAND_WIDTH * n_n + SYMPTOM_WIDTH * n_v + 5
        self.sensitivity = _mlp(use_features, hidden, dropout)
        self.contention = nn.ModuleList(
            _mlp(contention_features, hidden, dropout) for _ in range(n_res)
        )
        # Start light (exp(-load) ≈ 0.8) so the fusion MLP is not fighting a heavy prior early.
        self.weight = nn.Parameter(torch.full((n_res,), -2.0))

    def _metric_stats(self, tokens: torch.Tensor, which: str, stats: str) -> torch.Tensor:
        """[B, R, width * len(stats)] of the named metrics' statistics, zeros for padding."""
        idx, mask = getattr(self, f"{which}_idx"), getattr(self, f"{which}_mask")
        picked = tokens[:, idx][..., getattr(self, f"{stats}_idx")]  # [B, R, W, S]
        picked = picked * mask[None, :, :, None]
        return picked.flatten(2)

    def _context(self, context: torch.Tensor, which: str) -> torch.Tensor:
        return context[:, getattr(self, f"{which}_idx")] * getattr(self, f"{which}_mask")

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        use = torch.cat(
            [self._metric_stats(tokens, "demand", "victim_stats"), self._context(context, "own")],
            dim=-1,
        )
        cont = torch.cat(
            [
                self._metric_stats(tokens, "demand", "neighbour_stats"),
                self._metric_stats(tokens, "symptom", "victim_stats"),
                self._context(context, "node"),
            ],
            dim=-1,
        )
        sens = nn.functional.softplus(self.sensitivity(use)[..., 0])  # [B, R]
        contention = torch.stack(
            [torch.sigmoid(net(cont[:, r])[:, 0]) for r, net in enumerate(self.contention)], dim=1
        )
        return (nn.functional.softplus(self.weight) * sens * contention).sum(dim=1)
