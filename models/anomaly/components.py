"""nn.Modules of the context anomaly model (the network passed to the LightningModule).

``ContextEncoder`` turns one window into a token sequence

    [CLS] [FCST] m_1 … m_P l_1 … l_P

with one metric token per patch (all metrics of the patch, three channels each), one log
token per patch (a count-weighted bag of template embeddings) and time-of-day/day-of-week
plus patch position added to both. A single attention mask lets one pass serve two jobs:

- FCST forecasts the last metric patch m_P from the history and from *all* log tokens, so
  explaining lines ("backup started") inform the forecast but m_P itself cannot leak in:
  no token that FCST reads ever reads m_P.
- CLS reads everything, including m_P, and feeds the supervised heads (anomalous vs normal,
  scenario class).
"""

from __future__ import annotations

import torch
from torch import nn

from models.anomaly.features import N_SUMMARY, N_TIME, LogBatch


class TemplateBag(nn.Module):
    """Hashed template rows → one vector per (window, patch), weighted by log1p(count)."""

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.table = nn.EmbeddingBag(vocab_size, d_model, mode="sum")
        nn.init.normal_(self.table.weight, std=0.1)
        self.proj = nn.Linear(d_model, d_model)

    def forward(
        self, logs: LogBatch, n_bags: int, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        per_template = self.table(logs.rows, logs.offsets, per_sample_weights=logs.row_weights)
        w = logs.weight if weight is None else weight
        out = per_template.new_zeros(n_bags, per_template.shape[1])
        out.index_add_(0, logs.bag, w[:, None] * per_template[logs.template])
        return self.proj(out)


def context_mask(n_patches: int, metrics: bool, logs: bool) -> torch.Tensor:
    """Boolean [S, S] attention mask (True = may not attend) for the token layout above."""
    n_m = n_patches if metrics else 0
    n_l = n_patches if logs else 0
    size = 1 + int(metrics) + n_m + n_l
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[1:, 0] = True  # only CLS reads itself
    if metrics:
        current = 1 + 1 + n_m - 1
        mask[1:, current] = True
        mask[current, current] = False
    return mask


class ContextEncoder(nn.Module):
    def __init__(
        self,
        groups: dict[str, int],
        window_steps: int,
        patch_steps: int,
        vocab_size: int = 0,
        n_classes: int = 0,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        ff: int = 128,
        dropout: float = 0.1,
        use_time: bool = True,
        modality_dropout: float = 0.0,
        use_week: bool = False,
    ):
        super().__init__()
        if window_steps % patch_steps:
            raise ValueError("window_steps must be a multiple of patch_steps")
        # Kept so an artefact can rebuild the same network before loading its weights.
        self.init_args = {
            "groups": dict(groups),
            "window_steps": window_steps,
            "patch_steps": patch_steps,
            "vocab_size": vocab_size,
            "n_classes": n_classes,
            "d_model": d_model,
            "n_layers": n_layers,
            "n_heads": n_heads,
            "ff": ff,
            "dropout": dropout,
            "use_time": use_time,
            "modality_dropout": modality_dropout,
            "use_week": use_week,
        }
        self.use_week = use_week
        self.modality_dropout = modality_dropout
        self.n_heads = n_heads
        self.groups = dict(groups)
        self.n_patches = window_steps // patch_steps
        self.patch_steps = patch_steps
        self.has_metrics = any(m > 0 for m in groups.values())
        self.has_logs = vocab_size > 0
        self.use_time = use_time
        self.metric_in = nn.ModuleDict(
            {g: nn.Linear(m * N_SUMMARY, d_model) for g, m in groups.items() if m}
        )
        self.forecast_out = nn.ModuleDict(
            {g: nn.Linear(d_model, 2 * m) for g, m in groups.items() if m}
        )
        self.logs = TemplateBag(vocab_size, d_model) if self.has_logs else None
        self.time_in = nn.Linear(N_TIME, d_model)
        self.group_emb = nn.Embedding(max(len(groups), 1), d_model)
        self.pos = nn.Parameter(torch.randn(self.n_patches, d_model) * 0.02)
        self.kind = nn.Parameter(torch.randn(4, d_model) * 0.02)  # CLS, FCST, metric, log
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, ff, dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.anomaly_head = nn.Linear(d_model, 1)
        self.scenario_head = nn.Linear(d_model, n_classes) if n_classes else None
        self.register_buffer(
            "attn_mask",
            context_mask(self.n_patches, self.has_metrics, self.has_logs),
            persistent=False,
        )
        self._group_index = {g: i for i, g in enumerate(groups)}

    def _dropout_mask(self, B: int, device: torch.device) -> torch.Tensor:
        """Per-window masks that hide one modality from the classifier (CLS) for a share of
        training windows, so neither metrics nor logs alone can carry every decision and a
        window with one modality missing still scores sensibly. The forecast path (FCST and
        the metric tokens it reads) keeps its metrics; a logs-off window forecasts without
        log context."""
        P = self.n_patches
        base = self.attn_mask.to(device).expand(B, -1, -1).clone()
        metric_tokens = slice(1, 2 + P)  # FCST and m_1..m_P
        log_tokens = slice(2 + P, 2 + 2 * P)
        u = torch.rand(B, device=device)
        no_metrics = u < self.modality_dropout
        no_logs = (u >= self.modality_dropout) & (u < 2 * self.modality_dropout)
        # CLS and the log tokens stop reading metric tokens.
        rows = torch.zeros(base.shape[1], dtype=torch.bool, device=device)
        rows[0] = True
        rows[log_tokens] = True
        cols = torch.zeros_like(rows)
        cols[metric_tokens] = True
        base[no_metrics] |= rows[:, None] & cols[None, :]
        # Nobody reads log tokens (they still read each other, keeping rows non-empty).
        lcols = torch.zeros_like(rows)
        lcols[log_tokens] = True
        lrows = ~lcols
        base[no_logs] |= lrows[:, None] & lcols[None, :]
        return base.repeat_interleave(self.n_heads, dim=0)

    def forward(
        self,
        group: str,
        x: torch.Tensor | None,
        time: torch.Tensor,
        logs: LogBatch | None,
        log_weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """x [B, P, M, 5] patch summaries; time [B, P, 4]. Returns forecast [B, M, 2] (mean
        and spread of the last patch's normalised metrics; metrics only), anomaly [B] logits
        and scenario [B, C] logits (when the model has classes)."""
        B, P = time.shape[0], self.n_patches
        if not self.use_time:
            time = torch.zeros_like(time)
        elif not self.use_week:  # day of week is only learnable from weeks of data
            time = torch.cat([time[..., :2], torch.zeros_like(time[..., 2:])], -1)
        t = self.time_in(time)
        g = self.group_emb.weight[self._group_index[group]]
        tokens = [(self.kind[0] + g).expand(B, 1, -1)]
        if self.has_metrics:
            tokens.append((self.kind[1] + g + t[:, -1]).unsqueeze(1))
            patches = x.reshape(B, P, -1)
            tokens.append(self.metric_in[group](patches) + self.pos + t + self.kind[2])
        if self.has_logs:
            if logs is None:  # no lines at all: every bag is empty
                bags = self.logs.proj.bias.expand(B, P, -1)
            else:
                bags = self.logs(logs, B * P, log_weight).reshape(B, P, -1)
            tokens.append(bags + self.pos + t + self.kind[3])
        mask = self.attn_mask
        if self.training and self.modality_dropout > 0 and self.has_metrics and self.has_logs:
            mask = self._dropout_mask(B, time.device)
        h = self.norm(self.encoder(torch.cat(tokens, dim=1), mask=mask))
        out = {"anomaly": self.anomaly_head(h[:, 0]).squeeze(-1)}
        if self.scenario_head is not None:
            out["scenario"] = self.scenario_head(h[:, 0])
        if self.has_metrics:
            m = self.groups[group]
            out["forecast"] = self.forecast_out[group](h[:, 1]).reshape(B, m, 2)
        return out
