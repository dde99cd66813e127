"""Branches and fusion on tiny inputs."""

from __future__ import annotations

import torch

from models.interference.components import (
    FusionHead,
    SystemBranch,
    TemporalBranch,
    build_net,
)
from models.interference.module import InterferenceModule, log_cosh, pinball, warmup_cosine

DIMS = {"step_features": 7, "n_metrics": 5, "token_features": 4, "context_features": 3}


def test_temporal_branch_ignores_padded_steps():
    torch.manual_seed(0)
    branch = TemporalBranch(7, d_model=16, n_heads=2, n_layers=1, dim_ff=32).eval()
    x = torch.randn(2, 6, 7)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[0, :3] = True
    out = branch(x, pad)
    assert out.shape == (2, 16)
    changed = x.clone()
    changed[0, :3] = 100.0  # garbage where the window is padded
    assert torch.allclose(branch(changed, pad), out, atol=1e-5)


def test_temporal_branch_handles_fully_padded_and_long_windows():
    branch = TemporalBranch(7, d_model=16, n_heads=2, n_layers=1, dim_ff=32).eval()
    out = branch(torch.randn(1, 50, 7), torch.ones(1, 50, dtype=torch.bool))
    assert torch.isfinite(out).all()


def test_system_branch_reads_tokens_and_node():
    torch.manual_seed(0)
    branch = SystemBranch(5, 4, 3, d_model=16, n_heads=2, n_layers=1, dim_ff=32).eval()
    tokens, ctx = torch.randn(3, 5, 4), torch.randn(3, 3)
    out = branch(tokens, ctx)
    assert out.shape == (3, 16)
    assert not torch.allclose(branch(tokens, ctx + 1), out)  # capacity matters


def test_fusion_orders_interval_and_stays_in_unit_range():
    head = FusionHead(10, hidden=16)
    out = head(torch.randn(64, 10) * 10)
    assert out.shape == (64, 3)
    assert ((out >= 0) & (out <= 1)).all()
    assert (out[:, 1] <= out[:, 0]).all() and (out[:, 0] <= out[:, 2]).all()


def test_full_net_backpropagates_through_both_branches():
    net = build_net(DIMS, d_model=16, n_heads=2, n_layers=1, dim_ff=32, hidden=16)
    steps, pad = torch.randn(4, 5, 7), torch.zeros(4, 5, dtype=torch.bool)
    out = net(steps, pad, torch.randn(4, 5, 4), torch.randn(4, 3))
    out.sum().backward()
    assert net.temporal.proj[0].weight.grad.abs().sum() > 0
    assert net.system.proj[0].weight.grad.abs().sum() > 0


def test_losses_and_schedule():
    e = torch.tensor([0.0, 0.01, 1.0])
    lc = log_cosh(e, 20.0)
    assert lc[0] == 0 and lc[1] < lc[2]
    assert torch.isclose(lc[2], torch.tensor((20 - 0.6931) / 400), atol=1e-3)  # linear tail
    assert pinball(torch.tensor(0.5), torch.tensor(1.0), 0.9) > pinball(
        torch.tensor(1.0), torch.tensor(0.5), 0.9
    )
    assert warmup_cosine(0, 10, 100) == 0.1
    assert warmup_cosine(10, 10, 100) == 1.0
    assert warmup_cosine(100, 10, 100) < 1e-9


def test_module_takes_any_net():
    net = build_net(DIMS, d_model=16, n_heads=2, n_layers=1, dim_ff=32, hidden=16)
    module = InterferenceModule(net)
    batch = {
        "steps": torch.randn(2, 5, 7),
        "pad": torch.zeros(2, 5, dtype=torch.bool),
        "tokens": torch.randn(2, 5, 4),
        "context": torch.randn(2, 3),
        "p": torch.tensor([0.5, 0.9]),
    }
    assert module(batch).shape == (2, 3)
