"""nn.Modules of the interference model: a temporal branch, a system branch and their fusion.

The temporal branch reads the window step by step (victim and neighbour metrics together,
so attention can relate a dip in the victim's IPC to a burst next door). The system branch
reads one token per metric built from time-pooled statistics plus one token for the node
(capacity and pressure), and attends across metrics, which is where "this workload uses a
lot of memory bandwidth and the neighbours saturate it" is expressed. Each branch ends in a
CLS token; the fusion MLP maps both CLS outputs and the node context to P and a quantile
interval around it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model))
    out = torch.zeros(length, d_model)
    out[:, 0::2] = torch.sin(pos * div)
    out[:, 1::2] = torch.cos(pos * div[: d_model // 2])
    return out


def _encoder(d_model: int, n_heads: int, n_layers: int, dim_ff: int, dropout: float) -> nn.Module:
    layer = nn.TransformerEncoderLayer(
        d_model, n_heads, dim_ff, dropout, activation="gelu", batch_first=True, norm_first=True
    )
    # Nested tensors would skip padded steps faster, but only in eval mode and with a
    # warning per call; windows are short, plain masking is simpler and deterministic.
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class TemporalBranch(nn.Module):
    """Per-step projection, CLS token, positions, transformer over time (padding masked)."""

    def __init__(
        self,
        in_features: int,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_ff: int = 128,
        dropout: float = 0.1,
        max_len: int = 512,
    ):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_features, d_model), nn.LayerNorm(d_model))
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.register_buffer("pos", sinusoidal_positions(max_len + 1, d_model), persistent=False)
        self.encoder = _encoder(d_model, n_heads, n_layers, dim_ff, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.out_features = d_model

    def forward(self, steps: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """steps [B, T, F], pad [B, T] (True = ignore) → [B, d_model]."""
        b, t, _ = steps.shape
        h = torch.cat([self.cls.expand(b, 1, -1), self.proj(steps)], dim=1)
        h = h + self.pos[: t + 1]
        # The CLS position is never masked, so a window with no valid step still attends.
        mask = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=pad.device), pad], dim=1)
        return self.norm(self.encoder(h, src_key_padding_mask=mask)[:, 0])


class SystemBranch(nn.Module):
    """One token per metric (pooled statistics + a learned metric identity) and one for the
    node, a CLS token, and a transformer across them."""

    def __init__(
        self,
        n_metrics: int,
        token_features: int,
        context_features: int,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_ff: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(token_features, d_model), nn.LayerNorm(d_model))
        self.metric_embedding = nn.Parameter(torch.randn(n_metrics, d_model) * 0.02)
        self.node = nn.Sequential(nn.Linear(context_features, d_model), nn.LayerNorm(d_model))
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.encoder = _encoder(d_model, n_heads, n_layers, dim_ff, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.out_features = d_model

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """tokens [B, M, S], context [B, C] → [B, d_model]."""
        b = tokens.shape[0]
        metric_tokens = self.proj(tokens) + self.metric_embedding
        h = torch.cat([self.cls.expand(b, 1, -1), self.node(context)[:, None], metric_tokens], 1)
        return self.norm(self.encoder(h)[:, 0])


class FusionHead(nn.Module):
    """MLP over [temporal CLS, system CLS, node context] → (P, low, high) in [0, 1].

    The interval is built in logit space as point ∓ softplus(·), so low ≤ P ≤ high always
    holds and no quantile crossing needs repairing afterwards.
    """

    def __init__(self, in_features: int, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden // 2),
            nn.GELU(),
            nn.Linear(hidden // 2, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.mlp(x)
        centre = z[:, 0]
        low = centre - nn.functional.softplus(z[:, 1])
        high = centre + nn.functional.softplus(z[:, 2])
        return torch.sigmoid(torch.stack([centre, low, high], dim=1))


class InterferenceNet(nn.Module):
    """The dual-branch model: forward(steps, pad, tokens, context) → [B, 3] (P, low, high)."""

    def __init__(self, temporal: TemporalBranch, system: SystemBranch, fusion: FusionHead):
        super().__init__()
        self.temporal, self.system, self.fusion = temporal, system, fusion

    def forward(
        self, steps: torch.Tensor, pad: torch.Tensor, tokens: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        t = self.temporal(steps, pad)
        s = self.system(tokens, context)
        return self.fusion(torch.cat([t, s, context], dim=1))


class LSTMNet(nn.Module):
    """Same forward signature as ``InterferenceNet``; reads only the step sequence.

    The recurrent member of the ensemble (``train.TrainConfig.members``) and the evaluation's
    ``lstm`` baseline.
    """

    def __init__(self, in_features: int, hidden: int = 64):
        super().__init__()
        self.lstm = nn.LSTM(in_features, hidden, batch_first=True)
        self.head = FusionHead(hidden, hidden=hidden)

    def forward(
        self, steps: torch.Tensor, pad: torch.Tensor, tokens: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        out, _ = self.lstm(steps * (~pad)[..., None])
        # The state after the last valid step (windows are padded at either end).
        t = steps.shape[1]
        idx = torch.arange(t, device=pad.device).expand_as(pad)
        last = torch.where(~pad, idx, torch.zeros_like(idx)).max(dim=1).values
        return self.head(out[torch.arange(len(out)), last])


def build_net(
    dims: dict[str, int],
    d_model: int = 64,
    n_heads: int = 4,
    n_layers: int = 2,
    dim_ff: int = 128,
    dropout: float = 0.1,
    hidden: int = 128,
) -> InterferenceNet:
    """The default architecture for feature dimensions ``dims`` (``FeatureScaler.dims``)."""
    temporal = TemporalBranch(dims["step_features"], d_model, n_heads, n_layers, dim_ff, dropout)
    system = SystemBranch(
        dims["n_metrics"],
        dims["token_features"],
        dims["context_features"],
        d_model,
        n_heads,
        n_layers,
        dim_ff,
        dropout,
    )
    fusion = FusionHead(2 * d_model + dims["context_features"], hidden, dropout)
    return InterferenceNet(temporal, system, fusion)


def build_member(
    name: str, dims: dict[str, int], architecture: dict, lstm_hidden: int
) -> nn.Module:
    """One ensemble member by name: "transformer" (``build_net``) or "lstm" (``LSTMNet``)."""
    if name == "transformer":
        return build_net(dims, **architecture)
    if name == "lstm":
        return LSTMNet(dims["step_features"], lstm_hidden)
    raise ValueError(f"unknown ensemble member {name!r}")
