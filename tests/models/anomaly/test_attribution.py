"""Attribution: ranked metric and template shares that point at the cause."""

import numpy as np
import pytest
import torch

from models.anomaly.attribution import attribute
from models.anomaly.components import ContextEncoder
from models.anomaly.datamodule import assemble
from tests.models.anomaly.conftest import SHAPE, make_batch


def _net(**kw):
    args = {
        "groups": {"vm": 3},
        "window_steps": 12,
        "patch_steps": 4,
        "vocab_size": 512,
        "n_classes": 0,
        "d_model": 16,
        "n_layers": 1,
        "n_heads": 2,
        "ff": 32,
        "dropout": 0.0,
    }
    return ContextEncoder(**{**args, **kw})


def test_forecast_attribution_names_the_metric_that_broke(spec, table):
    batch = make_batch(spec, table, B=2)
    batch.x[1, -1, 2, 0] += 8.0  # metric c's mean jumps in the last patch
    pairs = attribute(_net().eval(), batch, "forecast", ["a", "b", "c"], table, torch.ones(3))
    metrics, templates = pairs[1]
    assert metrics[0][0] == "c" and metrics[0][1] > 0.5
    assert abs(sum(s for _, s in metrics) - 1) < 1e-6  # three metrics: all listed
    assert templates and abs(sum(s for _, s in templates) - 1) < 1e-6
    assert {t for t, _ in templates} <= set(table.texts)


def _toy_batch(spec, table, n, rng):
    """Label 1 when metric b's last patch is high or 'disk ... failed' is logged."""
    values = rng.normal(1.0, 0.2, (n, 12, 3)).astype(np.float32)
    high = rng.random(n) < 0.3
    disk = rng.random(n) < 0.3
    values[high, -4:, 1] += 3.0
    win, step, tmpl = [], [], []
    for i in range(n):
        win += [i, i]
        step += [2, 10]
        tmpl += [2, 1 if disk[i] else 0]
    entries = (np.array(win), np.array(step), np.array(tmpl), np.ones(len(win), np.float32))
    label = (high | disk).astype(np.float32)
    batch = assemble("vm", values, np.full(n, 1_736_121_600), entries, spec, table, SHAPE, label)
    return batch, high, disk


def test_gradient_attribution_after_supervised_training(spec, table):
    rng = np.random.default_rng(1)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        batch, _, _ = _toy_batch(spec, table, 64, rng)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            net("vm", batch.x, batch.time, batch.logs)["anomaly"], batch.label
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    batch, high, disk = _toy_batch(spec, table, 200, rng)
    pairs = attribute(net, batch, "supervised", ["a", "b", "c"], table)
    only_metric = np.flatnonzero(high & ~disk)
    assert np.mean([pairs[i][0][0][0] == "b" for i in only_metric]) > 0.8
    only_log = np.flatnonzero(disk & ~high)
    top = [pairs[i][1][0][0] for i in only_log]
    assert np.mean([t == table.texts[1] for t in top]) > 0.8


def test_the_supervised_reference_is_each_inputs_own_history():
    """A summary that sits at the same large value all window long gives nothing to explain
    (against zero it would take the largest share); the one that changed gives it all."""
    from models.anomaly.attribution import history_reference

    x = torch.zeros(1, 4, 3, 5)
    x[0, :, 0, 0] = 9.0  # always high: its usual level
    x[0, -1, 1, 0] = 2.0  # changed in the last patch
    delta = x - history_reference(x)
    assert torch.all(delta[0, :, 0] == 0)
    assert delta[0, -1, 1, 0] == 2.0 and torch.count_nonzero(delta) == 1
    assert torch.equal(history_reference(x[:, :1]), torch.zeros_like(x[:, :1]))


def test_metric_shares_weigh_the_models_view_against_what_changed():
    from models.anomaly.attribution import blend_with_change, last_patch_change

    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (1, 6, 3, 5)).astype(np.float32)
    x[0, -1, 2, 0] = 12.0  # metric c's level leaves its history in the last patch
    change = last_patch_change(x)
    assert change.argmax() == 2 and change[0, 2] > 5
    model = np.array([[6.0, 3.0, 1.0]])  # the model leaned on a, which did not move
    shares = blend_with_change(model, x)
    assert shares.sum() == pytest.approx(1.0)
    assert shares[0].argmax() == 2  # c: a tenth of the model's view, most of the change
    assert shares[0, 0] > shares[0, 1]  # a still outranks b, which neither pointed at
    one_patch = blend_with_change(model, x[:, -1:])  # no history: the model's view alone
    np.testing.assert_allclose(one_patch, model / model.sum())
